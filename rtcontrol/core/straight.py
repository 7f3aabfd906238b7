"""Straight-line flows: a call written as one ``async`` function, answered by any worker.

::

    @app.inbound_call
    async def support(call: LiveCall) -> None:
        digits = await call.read(tts("Enter your customer number"), max_digits=8)
        customer = await call.once(crm.find, digits)  # runs once per call, ever
        await call.play(tts(f"Hello {customer['name']}"))

How a callback is answered (:class:`ScriptRunner`, the flow's only step, ``run``):

1. the report of the call's last command is added to the journal (:mod:`.journal`);
2. **resume**: a worker holding the call's suspended coroutine (its
   :class:`SessionCache`) hands it the report; the flow runs to its next ``await``;
3. **replay**: any other worker runs the flow again from the top; each ``await`` is
   answered from the journal (the flow sees exactly the values the first run saw)
   until the flow asks for a command past the journal's end;
4. that command is the reply. The engine sends it, checks it, keeps the deadline
   (slow code between two awaits puts the caller on hold as for any step) and
   writes the journal with the record, in the same round trip.

A replay that asks for another command, other parameters or another ``once`` than
the journal recorded raises :class:`~rtcontrol.errors.DeterminismError` in the
runner, never in the flow (it cannot be swallowed by mistake): the call gets the
fallback, and the log names the flow, the position and both commands.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from .. import commands
from ..commands import Command
from ..errors import (
    CallHungUp,
    CommandFailedError,
    DeterminismError,
    FlowError,
    Interrupted,
    JournalFull,
    OutputError,
    RegistrationError,
)
from ..protocol import CallStatus, RTRequest
from ..results import (
    Completed,
    DialFailed,
    Digits,
    Outcome,
    Recording,
    parse_outcome,
)
from ..validate import encode_json
from .actions import Action, ActionKind
from .journal import Journal, Once, Patch, Report, Sent, describe, same_params

if TYPE_CHECKING:
    from .call import Call

__all__ = [
    "RUN_STEP",
    "LiveCall",
    "ScriptRunner",
    "SessionCache",
    "current_live",
    "script_action",
]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

flow_log = logging.getLogger("rtcontrol.handler")

#: The one step of a straight-line flow: every command it sends reports to it.
RUN_STEP = "run"

#: A straight-line flow: ``async def flow(call: LiveCall) -> None | Command``.
ScriptFn = Callable[["LiveCall"], Awaitable[Any]]


#: The call whose straight-line flow runs in this task (set in the flow's own task).
current_live: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "rtcontrol_live_call", default=None
)

# --------------------------------------------------------------------------- signals


@dataclass(frozen=True, slots=True)
class _Next:
    """The flow awaits this command past the journal's end: it is the reply."""

    command: Command


@dataclass(frozen=True, slots=True)
class _Finished:
    """The flow returned (a final command, or None for a hang-up)."""

    command: Command | None


@dataclass(frozen=True, slots=True)
class _Failed:
    """The flow raised, or its replay broke a rule (``FlowError``)."""

    error: BaseException


@dataclass(frozen=True, slots=True)
class _Restart:
    """``call.restart()``: a new journal, the flow from the top."""


_Signal = _Next | _Finished | _Failed | _Restart


class _Restarting(BaseException):
    """Raised by ``call.restart()``; a BaseException so ``except Exception`` in the
    flow does not stop it."""


class _Discarded(BaseException):
    """A dropped copy of the coroutine may not act on the call any more."""


# --------------------------------------------------------------------------- session


class Session:
    """One coroutine of one call, on this worker."""

    __slots__ = (
        "callid",
        "discarded",
        "ending",
        "journal",
        "live",
        "outbox",
        "position",
        "runner",
        "suspended",
        "task",
        "touched",
        "waiting",
    )

    def __init__(self, runner: ScriptRunner, callid: int, journal: Journal) -> None:
        self.runner = runner
        self.callid = callid
        self.journal = journal
        #: Index of the next journal entry the flow will reach.
        self.position = 0
        self.live: LiveCall | None = None
        self.task: asyncio.Task[None] | None = None
        self.outbox: asyncio.Future[_Signal] | None = None
        #: Resolved with the report of the command the flow awaits.
        self.waiting: asyncio.Future[Report] | None = None
        self.suspended = False
        #: The call ended: an await past the journal raises CallHungUp.
        self.ending = False
        self.discarded = False
        self.touched = time.monotonic()

    def post(self, signal: _Signal) -> None:
        outbox = self.outbox
        if outbox is not None and not outbox.done():
            outbox.set_result(signal)

    def fail(self, error: BaseException) -> None:
        self.post(_Failed(error))

    def discard(self) -> None:
        """Drop this copy: its ``finally`` blocks run; it can no longer act on the call."""
        if self.discarded:
            return
        self.discarded = True
        task = self.task
        if task is not None and not task.done():
            task.cancel()


class SessionCache:
    """The suspended coroutines this worker keeps, least recently used first.

    Bounded by ``RTCONTROL_FLOW_CACHE``: past it the oldest copy is dropped (its
    call's next callback replays the journal). A copy idle for ``RTCONTROL_CALL_TTL``
    is dropped too (its call ended on another worker, or was forgotten)."""

    def __init__(self, size: int, idle: float) -> None:
        self.size = size
        self.idle = idle
        self._sessions: OrderedDict[int, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, callid: int) -> Session | None:
        return self._sessions.get(callid)

    def pop(self, callid: int) -> Session | None:
        return self._sessions.pop(callid, None)

    def put(self, session: Session) -> None:
        sessions = self._sessions
        session.touched = time.monotonic()
        sessions[session.callid] = session
        sessions.move_to_end(session.callid)
        stale = session.touched - self.idle
        while sessions:
            oldest = next(iter(sessions.values()))
            if len(sessions) <= self.size and oldest.touched > stale:
                break
            del sessions[oldest.callid]
            oldest.discard()

    def drop(self, callid: int) -> None:
        session = self._sessions.pop(callid, None)
        if session is not None:
            session.discard()

    def clear(self) -> None:
        for session in self._sessions.values():
            session.discard()
        self._sessions.clear()


# --------------------------------------------------------------------------- the call


def _command_method(
    builder: Callable[P, Command], convert: Callable[[LiveCall, Command, Report], R]
) -> Callable[Concatenate[LiveCall, P], Coroutine[Any, Any, R]]:
    """``await call.<command>(...)``: same parameters and checks as the builder."""

    async def method(self: LiveCall, /, *args: P.args, **kwargs: P.kwargs) -> R:
        command = builder(*args, **kwargs)
        report = await self._send(command)
        return convert(self, command, report)

    method.__name__ = builder.__name__
    method.__qualname__ = f"LiveCall.{builder.__name__}"
    method.__doc__ = (
        f"Send ``{builder.__name__}`` (parameters as :func:`rtcontrol.{builder.__name__}`) "
        "and wait for its result.\n\n" + (builder.__doc__ or "")
    )
    return method


def _checked(call: LiveCall, command: Command, report: Report) -> Outcome:
    if report.error:
        raise CommandFailedError(command.name, report.error, callid=call.id)
    return parse_outcome(command.name, report.result, report.error)


def _outcome(call: LiveCall, command: Command, report: Report) -> Outcome:
    return _checked(call, command, report)


def _digits(call: LiveCall, command: Command, report: Report) -> str | None:
    outcome = _checked(call, command, report)
    return outcome.value if isinstance(outcome, Digits) else None


def _recording(call: LiveCall, command: Command, report: Report) -> str | None:
    outcome = _checked(call, command, report)
    return outcome.file if isinstance(outcome, Recording) else None


def _dial(call: LiveCall, command: Command, report: Report) -> Completed | DialFailed:
    outcome = _checked(call, command, report)
    return outcome if isinstance(outcome, DialFailed) else Completed(report.result)


def _raw(call: LiveCall, command: Command, report: Report) -> str:
    _checked(call, command, report)
    return report.result


class LiveCall:
    """What a straight-line flow sees of its call.

    Every REALTIME10 command is an awaitable method with the builder's parameters
    (``await call.read(prompt, max_digits=4)``). Results, as the step style reads them:

    * ``read`` -> the digits (``str``), or ``None`` when nothing was typed;
    * ``record`` -> the recording's file name (for ``play_record``), or ``None``;
    * ``dialout`` -> ``Completed`` (someone answered, the bridge ended) or
      ``DialFailed(status)`` (NOANSWER, BUSY...);
    * ``play_talk_detect`` -> the raw result (``str``);
    * the others -> an :data:`~rtcontrol.results.Outcome` (``Completed``).

    A command the platform reports with an error raises ``CommandFailedError``; the
    call ending raises ``CallHungUp`` at the pending await (``finally`` runs);
    ``App.interrupt(callid, then=...)`` raises ``Interrupted`` there once ``then`` ran.

    ``state`` starts as the ``start_call(data=...)`` data and is kept with the call
    (JSON only); ``variables`` travel with each command (JSON, small). Code between
    awaits may run again when another worker replays the call: put side effects in
    :meth:`once`.
    """

    __slots__ = ("_request", "_session", "state", "variables")

    def __init__(self, session: Session, request: RTRequest, state: dict[str, Any]) -> None:
        self._session = session
        self._request = request
        self.state = state
        self.variables: dict[str, Any] = {}

    # --- who and where ------------------------------------------------------------

    @property
    def id(self) -> int:
        """The platform's call id."""
        return self._request.callid

    @property
    def app_hash(self) -> str:
        return self._request.app

    @property
    def number(self) -> str:
        """Inbound: the number that was called. Outbound: the number we called."""
        return self._request.number

    @property
    def cli_number(self) -> str:
        """The caller's number ("" when hidden)."""
        return self._request.cli_number

    @property
    def cli_name(self) -> str:
        return self._request.cli_name

    @property
    def is_outbound(self) -> bool:
        return self._request.is_outbound

    @property
    def status(self) -> CallStatus | str:
        """The call status of the callback that resumed the flow last."""
        return self._request.call_status

    @property
    def version(self) -> str:
        """The flow version this call runs (``version=`` at registration)."""
        return self._session.journal.version

    @property
    def position(self) -> int:
        """How many journal entries the flow has reached (commands, ``once``, patches)."""
        return self._session.position

    @property
    def replaying(self) -> bool:
        """True while the flow re-runs journaled steps (on a worker that did not hold it)."""
        return self._session.position < len(self._session.journal.entries)

    # --- the 16 commands ----------------------------------------------------------

    play = _command_method(commands.play, _outcome)
    play_record = _command_method(commands.play_record, _outcome)
    play_wav_data = _command_method(commands.play_wav_data, _outcome)
    play_talk_detect = _command_method(commands.play_talk_detect, _raw)
    read = _command_method(commands.read, _digits)
    record = _command_method(commands.record, _recording)
    send_dtmf = _command_method(commands.send_dtmf, _outcome)
    wait = _command_method(commands.wait, _outcome)
    wait_for_silence = _command_method(commands.wait_for_silence, _outcome)
    dialout = _command_method(commands.dialout, _dial)
    conference = _command_method(commands.conference, _outcome)
    simple_conference = _command_method(commands.simple_conference, _outcome)
    hangup = _command_method(commands.hangup, _outcome)
    hangup_callid = _command_method(commands.hangup_callid, _outcome)
    start_call_recording = _command_method(commands.start_call_recording, _outcome)
    stop_call_recording = _command_method(commands.stop_call_recording, _outcome)

    async def send(self, command: Command) -> Outcome:
        """Send a command built with the builders (``rtcontrol.read(...)``...) and wait
        for its parsed outcome. ``CommandFailedError`` on a platform error."""
        if not isinstance(command, Command):
            raise TypeError(f"send() takes a command, not {type(command).__name__}")
        return _checked(self, command, await self._send(command))

    # --- side effects and versions ------------------------------------------------

    async def once(self, fn: Callable[..., T | Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` once per call, ever: its result is journaled and
        a replay gets it back without calling ``fn``. A coroutine function is awaited;
        a plain function runs in a worker thread. The result must be JSON (it comes
        back as JSON would: tuples as lists); ``OutputError`` otherwise.

        If the worker dies after ``fn`` ran and before the reply was saved, the next
        worker runs it again: give the external system an idempotency key, e.g.
        ``f"{call.id}:{call.position}"``.
        """
        session = self._live_session()
        what = _name_of(fn)
        i = session.position
        entries = session.journal.entries
        if i < len(entries):
            entry = entries[i]
            if not isinstance(entry, Once) or entry.what != what:
                await self._violation(i, entry, f"once({what})")
            assert isinstance(entry, Once)
            session.position = i + 1
            return entry.value  # type: ignore[no-any-return]
        if session.ending:
            raise CallHungUp("the call has ended", callid=self.id)
        self._room(i)
        if inspect.iscoroutinefunction(fn):
            value = await fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
            if inspect.isawaitable(value):
                value = await value
        session = self._live_session()
        text = encode_json(value, f"the result of once({what})")
        stored = json.loads(text)
        if session.position != i:  # pragma: no cover - two once() at the same time
            raise RuntimeError("call.once() calls of one call must not run concurrently")
        session.journal.entries.append(Once(what, stored))
        session.position = i + 1
        return stored  # type: ignore[no-any-return]

    def patched(self, name: str) -> bool:
        """True when this call takes the patched branch ``name``: every call that reaches
        it after the deploy; False on the replay of a call that passed this point before
        it (it keeps the old branch). See the README, "Deploying mid-call"."""
        session = self._live_session()
        i = session.position
        entries = session.journal.entries
        if i < len(entries):
            entry = entries[i]
            if isinstance(entry, Patch) and entry.name == name:
                session.position = i + 1
                return True
            return False
        self._room(i)
        entries.append(Patch(name))
        session.position = i + 1
        return True

    def restart(self) -> None:
        """Start the flow again from the top with an empty journal (``call.state`` is
        kept and becomes its start data). For flows that loop for hours: the journal
        stays under ``RTCONTROL_JOURNAL_LIMIT``. Never returns."""
        self._live_session()
        raise _Restarting()

    # --- internals ----------------------------------------------------------------

    def _live_session(self) -> Session:
        session = self._session
        if session.discarded:
            raise _Discarded()
        return session

    def _room(self, i: int) -> None:
        limit = self._session.runner.limit
        if i >= limit:
            self._session.fail(
                JournalFull(
                    f"flow {self._session.runner.name}: call {self.id} reached {limit} journal "
                    "entries (RTCONTROL_JOURNAL_LIMIT); use call.restart() in long loops"
                )
            )
            raise _Discarded()

    async def _violation(self, i: int, entry: Any, asked: str) -> None:
        session = self._session
        recorded = entry.describe() if isinstance(entry, Sent) else _describe_entry(entry)
        session.fail(
            DeterminismError(
                f"flow {session.runner.name} (version {session.journal.version}), call "
                f"{self.id}: at journal position {i} the replay asked for {asked}, but the "
                f"journal recorded {recorded}. The flow's code changed mid-call (register "
                "the old version, or use call.patched()) or it branched on the clock, "
                "randomness or I/O outside call.once()"
            )
        )
        raise _Discarded()

    async def _send(self, command: Command) -> Report:
        session = self._live_session()
        i = session.position
        entries = session.journal.entries
        if i < len(entries):
            entry = entries[i]
            if (
                not isinstance(entry, Sent)
                or entry.name != command.name
                or not same_params(entry.params, command.wire_params())
            ):
                await self._violation(i, entry, describe(command.name, command.wire_params()))
            assert isinstance(entry, Sent)
            session.position = i + 1
            report = entry.report
            if report is None:  # the command this callback (or the hang-up) answers
                report = await self._suspend(None)
        else:
            if session.ending:
                raise CallHungUp("the call has ended", callid=self.id)
            self._room(i)
            entries.append(Sent(command.name, command.wire_params()))
            session.position = i + 1
            report = await self._suspend(command)
        if report.action is not None:
            await self._interrupted(command, report)
        return report

    async def _suspend(self, command: Command | None) -> Report:
        """Hand ``command`` to the runner (None: it was sent already) and wait for its
        report, which a later callback brings."""
        session = self._session
        if session.ending:
            raise CallHungUp("the call has ended", callid=self.id)
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[Report] = loop.create_future()
        session.waiting = waiting
        session.suspended = True
        if command is not None:
            session.post(_Next(command))
        try:
            return await waiting
        finally:
            session.suspended = False
            session.waiting = None

    async def _interrupted(self, command: Command, report: Report) -> None:
        action = report.action
        assert action is not None
        outcome = parse_outcome(command.name, report.result, report.error)
        if action.kind is ActionKind.COMMAND and action.command is not None:
            await self._send(action.command)
        elif action.kind is ActionKind.STEP and action.step is not None:
            subflow = resolve_subflow(action.step)
            await subflow(self)
        raise Interrupted(
            f"call {self.id}: {command.name} was interrupted", callid=self.id, outcome=outcome
        )

    def __repr__(self) -> str:
        return f"<LiveCall {self.id} {self._session.runner.name} at {self.position}>"


def _name_of(fn: Any) -> str:
    fn = getattr(fn, "__func__", fn)
    return str(getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn))


def _describe_entry(entry: Any) -> str:
    if isinstance(entry, Once):
        return f"once({entry.what})"
    if isinstance(entry, Patch):
        return f"patched({entry.name!r})"
    return "nothing"


# --------------------------------------------------------------------------- sub-flows


def subflow_ref(fn: Any) -> str:
    """``module:qualname`` of an ``async def`` sub-flow, checked to resolve back."""
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if (
        not inspect.iscoroutinefunction(fn)
        or not module
        or not qualname
        or "<locals>" in qualname
        or resolve_subflow(f"{module}:{qualname}", strict=False) is not fn
    ):
        raise RegistrationError(
            "interrupt(then=...) of a straight-line call takes a command or a module-level "
            "`async def subflow(call)` (any worker must find it by name)"
        )
    return f"{module}:{qualname}"


def resolve_subflow(ref: str, *, strict: bool = True) -> ScriptFn:
    import importlib

    module_name, _, qualname = ref.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError):
        if not strict:
            return _missing
        raise FlowError(f"sub-flow {ref} cannot be found on this worker") from None
    return target  # type: ignore[no-any-return]


async def _missing(call: LiveCall) -> None:  # pragma: no cover - a sentinel
    return None


def script_action(then: Any) -> Action:
    """The interrupt action for a straight-line call: break, a command, or a sub-flow."""
    from ..validate import check_command

    if then is None:
        return Action(ActionKind.BREAK)
    if isinstance(then, Command):
        return Action(ActionKind.COMMAND, command=check_command(then))
    return Action(ActionKind.STEP, step=subflow_ref(then))


# --------------------------------------------------------------------------- the runner


class ScriptRunner:
    """The ``run`` step of a straight-line flow (see the module docstring).

    ``versions``: version -> flow function; ``current``: the version new calls start
    on. ``cache``: this worker's suspended coroutines (shared by every flow).
    """

    def __init__(
        self, name: str, cache: SessionCache, limit: Callable[[], int] | int = 1000
    ) -> None:
        self.name = name
        self.cache = cache
        self.versions: dict[str, ScriptFn] = {}
        self.current: str | None = None
        self._limit = limit

    @property
    def limit(self) -> int:
        return self._limit() if callable(self._limit) else self._limit

    def add(self, fn: ScriptFn, version: str, *, retired: bool) -> None:
        if version in self.versions:
            raise RegistrationError(f"flow {self.name} version {version!r} is already registered")
        if not retired:
            if self.current is not None:
                raise RegistrationError(
                    f"flow {self.name} already has a current version ({self.current!r}); "
                    "register older ones with retired=True"
                )
            self.current = version
        self.versions[version] = fn

    @property
    def functions(self) -> list[ScriptFn]:
        return list(self.versions.values())

    # -- one callback ------------------------------------------------------------

    async def __call__(self, call: Call) -> Command:
        """Answer one callback of the call: the flow's next command."""
        stored: Journal | None = call._journal
        req = call.request
        if stored is None:
            if not req.is_first:
                raise FlowError(
                    f"flow {self.name}: call {req.callid} has no journal (its record was lost): "
                    "it cannot be resumed"
                )
            if self.current is None:
                raise FlowError(f"flow {self.name} has only retired versions")
            journal = Journal(self.current, secrets.token_hex(4), _json_copy(call.state))
        else:
            if stored.done:
                call._journal_next = stored
                return commands.hangup()
            journal = stored.copy()
            waiting = journal.waiting
            if waiting is None:
                raise FlowError(
                    f"flow {self.name}: call {req.callid} reported a command its journal does "
                    "not wait for"
                )
            report = Report(req.command_result, req.command_error, call._action)
            journal.entries[-1] = replace(waiting, report=report)
        while True:
            session = self._resume(req.callid, journal) or self._replay(req, journal)
            signal = await self._outcome(session)
            if isinstance(signal, _Restart):
                self.cache.drop(req.callid)
                assert session.live is not None
                data = _json_copy(session.live.state)
                journal = Journal(journal.version, secrets.token_hex(4), data)
                continue
            break
        live = session.live
        assert live is not None
        if isinstance(signal, _Failed):
            self.cache.drop(req.callid)
            raise signal.error
        call._journal_next = journal
        call.state.clear()
        call.state.update(live.state)
        call.variables = live.variables
        if isinstance(signal, _Finished):
            self.cache.drop(req.callid)
            journal.done = True
            return (signal.command or commands.hangup()).then(RUN_STEP)
        self.cache.put(session)
        return signal.command.then(RUN_STEP)

    def _resume(self, callid: int, journal: Journal) -> Session | None:
        """The suspended coroutine this worker holds, if it is at the journal's pending
        command or behind it on the same run (it then replays the rest)."""
        session = self.cache.pop(callid)
        if session is None:
            return None
        i = session.position - 1
        old = session.journal
        if (
            session.suspended
            and not session.discarded
            and session.waiting is not None
            and old.epoch == journal.epoch
            and 0 <= i < len(journal.entries)
            and i < len(old.entries)
            and isinstance(journal.entries[i], Sent)
            and isinstance(old.entries[i], Sent)
            and _same_sent(old.entries[i], journal.entries[i])
        ):
            entry = journal.entries[i]
            assert isinstance(entry, Sent)
            assert entry.report is not None
            session.journal = journal
            session.outbox = asyncio.get_running_loop().create_future()
            session.waiting.set_result(entry.report)
            return session
        session.discard()
        return None

    def _replay(self, req: RTRequest, journal: Journal) -> Session:
        fn = self.versions.get(journal.version)
        if fn is None:
            raise FlowError(
                f"flow {self.name}: call {req.callid} runs version {journal.version!r}, which "
                "is not registered on this worker (keep old versions registered with "
                "retired=True until their calls end)"
            )
        session = Session(self, req.callid, journal)
        session.outbox = asyncio.get_running_loop().create_future()
        live = LiveCall(session, req, _json_copy(journal.data))
        session.live = live
        # The flow runs in a task of its own, outside the callback's context (its
        # scope, its deadline): it outlives this callback.
        session.task = asyncio.get_running_loop().create_task(
            _drive(session, fn), context=contextvars.Context()
        )
        return session

    async def _outcome(self, session: Session) -> _Signal:
        outbox = session.outbox
        assert outbox is not None
        try:
            return await asyncio.shield(outbox)
        except asyncio.CancelledError:
            # This callback was given up (the call ended behind a hold): the copy
            # stays for the hang-up to end.
            self.cache.put(session)
            raise

    # -- the end of a call -----------------------------------------------------------

    async def end(self, req: RTRequest, journal: Journal | None, budget: float) -> None:
        """The call ended: raise ``CallHungUp`` at the flow's pending await (its ``finally``
        blocks run), replaying the journal first on a worker that does not hold it."""
        session = self.cache.pop(req.callid)
        if journal is None or journal.done:
            if session is not None:
                session.discard()
            return
        if session is not None and session.journal.epoch != journal.epoch:
            session.discard()
            session = None
        if session is None:
            try:
                session = self._replay(req, journal)
            except FlowError as exc:
                flow_log.error("callid=%s: %s", req.callid, exc)
                return
        session.ending = True
        if session.suspended and session.waiting is not None and not session.waiting.done():
            session.waiting.set_exception(CallHungUp("the call has ended", callid=req.callid))
        task = session.task
        if task is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=budget)
        except TimeoutError:
            flow_log.error(
                "callid=%s: flow %s still running %.0fs after the hang-up: cancelled",
                req.callid,
                self.name,
                budget,
            )
            session.discard()


def _same_sent(a: object, b: object) -> bool:
    return (
        isinstance(a, Sent)
        and isinstance(b, Sent)
        and a.name == b.name
        and same_params(a.params, b.params)
    )


async def _drive(session: Session, fn: ScriptFn) -> None:
    live = session.live
    assert live is not None
    current_live.set(session.callid)
    try:
        result = await fn(live)
    except _Restarting:
        session.post(_Restart())
    except (_Discarded, asyncio.CancelledError):
        if not session.discarded:  # cancelled from outside while the runner waits
            session.fail(FlowError(f"flow {session.runner.name} was cancelled"))
        return
    except (Interrupted, CallHungUp):
        session.post(_Finished(None))  # let escape: the flow ends quietly
    except Exception as exc:  # the flow's own error: the call gets the fallback
        session.fail(exc)
    else:
        if result is not None and not isinstance(result, Command):
            session.fail(
                OutputError(
                    f"flow {session.runner.name} returned {type(result).__name__}: return "
                    "None (hang up) or a final command"
                )
            )
        else:
            session.post(_Finished(result))


def _json_copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(value)) if value else {}
    return copied
