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
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from .. import commands, prompts
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
from ..media import Media
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
from .cancel import drives_flow
from .journal import Journal, Once, Patch, Report, Sent, describe, digest

if TYPE_CHECKING:
    from .call import Call, CallServices

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

#: ``call.restart()`` calls in one callback before the flow is stopped (a flow that
#: restarts without sending a command would never answer).
MAX_RESTARTS = 10

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


class _Suspend:
    """What a flow awaits to hand a command to its runner: the driver (``_advance``)
    receives it from ``coro.send()``, and the command's report is what the next
    ``send()`` brings back."""

    __slots__ = ("command",)

    def __init__(self, command: Command) -> None:
        self.command = command

    def __await__(self) -> Generator[_Suspend, Report, Report]:
        report = yield self
        return report


class _Flag:
    """A set/clear flag that can be awaited; cheaper than ``asyncio.Event`` when nobody
    waits (the common case: only a hang-up waits for a flow to settle)."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] = []

    def is_set(self) -> bool:
        return self._set

    def clear(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True
        if self._waiters:
            for waiter in self._waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._waiters.clear()

    async def wait(self) -> None:
        if not self._set:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            await waiter


class Session:
    """One coroutine of one call, on this worker.

    The coroutine runs in no task of its own: the callback that resumes it drives it
    (``coro.send``) until its next command, so resuming costs no extra trip through
    the event loop. Futures it awaits in between (I/O, ``once``) are awaited by the
    driver, as a task would.
    """

    __slots__ = (
        "callid",
        "coro",
        "discarded",
        "ending",
        "failure",
        "finished",
        "hung_up",
        "journal",
        "live",
        "position",
        "runner",
        "sent",
        "settled",
        "suspended",
        "touched",
    )

    def __init__(self, runner: ScriptRunner, callid: int, journal: Journal) -> None:
        self.runner = runner
        self.callid = callid
        self.journal = journal
        #: Index of the next journal entry the flow will reach.
        self.position = 0
        self.live: LiveCall | None = None
        self.coro: Coroutine[Any, Report, _Signal] | None = None
        #: The flow waits at a command for its report.
        self.suspended = False
        #: The command the flow waits at (its report not come yet).
        self.sent: Command | None = None
        #: The call ended: an await past the journal raises CallHungUp.
        self.ending = False
        self.discarded = False
        self.finished = False
        #: CallHungUp was raised in the flow: its cleanup runs now.
        self.hung_up = False
        #: Why the runner must give up (a determinism error, the journal limit).
        self.failure: FlowError | None = None
        #: Set while nothing drives the flow (it waits at a command, or it ended).
        self.settled = _Flag()
        self.touched = time.monotonic()

    def hang_up(self) -> BaseException:
        """What to raise in the ending flow: CallHungUp the first time (then ``once()``
        runs for cleanup); a flow that swallowed it and sends again is stopped."""
        if self.hung_up:
            return _Discarded()
        self.hung_up = True
        return CallHungUp("the call has ended", callid=self.callid)

    def fail(self, error: FlowError) -> None:
        if self.failure is None:
            self.failure = error

    def discard(self) -> None:
        """Drop this copy: ``_Discarded`` is raised at its await (its ``finally`` blocks
        run, in the background); it can no longer act on the call."""
        if self.discarded:
            return
        self.discarded = True
        if self.suspended and not self.finished and self.coro is not None:
            _background(_advance(self, throw=_Discarded()))


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _background(coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
    task = asyncio.ensure_future(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)
    return task


async def _advance(
    session: Session, send: Report | None = None, throw: BaseException | None = None
) -> _Signal:
    """Drive the flow from where it waits until its next command or its end."""
    coro = session.coro
    assert coro is not None
    session.suspended = False
    session.settled.clear()
    if not session.discarded:  # a hang-up meanwhile ends this very copy
        session.runner.driving[session.callid] = session
    drives_flow()  # the framework never cancels this task: its cancellations are the flow's
    token = current_live.set(session.callid)
    try:
        while True:
            try:
                if throw is not None:
                    error, throw = throw, None
                    yielded = coro.throw(error)
                else:
                    yielded = coro.send(send)  # type: ignore[arg-type]
            except StopIteration as stop:
                session.finished = True
                signal: _Signal = stop.value
                return signal
            send = None
            if isinstance(yielded, _Suspend):
                session.suspended = True
                session.sent = yielded.command
                return _Next(yielded.command)
            if yielded is None:  # a bare yield (asyncio.sleep(0))
                try:
                    await asyncio.sleep(0)
                except asyncio.CancelledError as exc:  # the flow's own: it gets it
                    throw = exc
                continue
            if not hasattr(yielded, "_asyncio_future_blocking"):  # as a Task says it
                throw = RuntimeError(f"bad yield in a straight-line flow: {yielded!r}")
                continue
            future: asyncio.Future[Any] = yielded
            future._asyncio_future_blocking = False  # as a Task does
            while True:
                try:
                    await _done(future)
                    break
                except asyncio.CancelledError as exc:
                    # The flow's own (asyncio.timeout, a task group): as a task does,
                    # cancel what it awaits; its await then raises CancelledError.
                    if not future.cancel():
                        throw = exc
                        break
    finally:
        current_live.reset(token)
        _settle(session)


def _settle(session: Session) -> None:
    """Nothing drives ``session`` any more (it waits at a command, or it ended)."""
    driving = session.runner.driving
    if driving.get(session.callid) is session:
        del driving[session.callid]
    session.settled.set()


async def _done(future: asyncio.Future[Any]) -> None:
    """Wait until ``future`` is done, without taking its result or its exception."""
    if future.done():
        return
    waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def wake(_: object) -> None:
        if not waiter.done():
            waiter.set_result(None)

    future.add_done_callback(wake)
    try:
        await waiter
    finally:
        future.remove_done_callback(wake)


class SessionCache:
    """The suspended coroutines this worker keeps, least recently used first.

    Bounded by ``RTCONTROL_FLOW_CACHE``: past it the oldest copy is dropped (its
    call's next callback replays the journal). A copy idle for ``RTCONTROL_CALL_TTL``
    is dropped too (its call ended on another worker, or was forgotten)."""

    def __init__(self, size: int, idle: float) -> None:
        self.size = size
        self.idle = idle
        self._sessions: OrderedDict[int, Session] = OrderedDict()
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._sessions)

    def get(self, callid: int) -> Session | None:
        return self._sessions.get(callid)

    def pop(self, callid: int) -> Session | None:
        return self._sessions.pop(callid, None)

    def put(self, session: Session) -> None:
        sessions = self._sessions
        session.touched = now = time.monotonic()
        sessions[session.callid] = session
        sessions.move_to_end(session.callid)
        if len(sessions) <= self.size and now < self._next_sweep:
            return
        self._next_sweep = now + 1.0  # idle copies are looked for once a second at most
        stale = now - self.idle
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
    builder: Callable[P, Command],
    convert: Callable[[LiveCall, Command, Report], R],
    returns: str = "its ``Outcome`` (``Completed``)",
) -> Callable[Concatenate[LiveCall, P], Coroutine[Any, Any, R]]:
    """``await call.<command>(...)``: same parameters and checks as the builder."""

    async def method(self: LiveCall, /, *args: P.args, **kwargs: P.kwargs) -> R:
        command = builder(*args, **kwargs)
        report = await self._send(command)
        return convert(self, command, report)

    method.__name__ = builder.__name__
    method.__qualname__ = f"LiveCall.{builder.__name__}"
    method.__doc__ = (
        f"Send ``{builder.__name__}`` and return {returns}. Raises ``CommandFailedError`` "
        "when the platform reports an error, ``CallHungUp`` when the call ends, "
        "``Interrupted`` after ``App.interrupt``.\n\n"
        f"Parameters and checks as :func:`rtcontrol.{builder.__name__}`."
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

    __slots__ = ("_request", "_session", "app", "state", "variables")

    def __init__(
        self,
        session: Session,
        request: RTRequest,
        state: dict[str, Any],
        app: CallServices | None = None,
    ) -> None:
        self._session = session
        self._request = request
        #: The ``App`` serving the call: ``call.app.state`` holds its dependencies.
        self.app = app
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
    def dropped(self) -> bool:
        """True in a copy of the flow this worker drops (the call goes on, or ended,
        elsewhere): its ``finally`` blocks run, but it can no longer act on the call.
        Once-per-call cleanup belongs in ``except CallHungUp`` or ``on_hangup``."""
        return self._session.discarded

    @property
    def replaying(self) -> bool:
        """True while the flow re-runs journaled steps (on a worker that did not hold it)."""
        return self._session.position < len(self._session.journal)

    # --- the 16 commands ----------------------------------------------------------

    play = _command_method(commands.play, _outcome)
    play_record = _command_method(commands.play_record, _outcome)
    play_wav_data = _command_method(commands.play_wav_data, _outcome)
    play_talk_detect = _command_method(
        commands.play_talk_detect, _raw, "the raw detection result (``str``)"
    )
    read = _command_method(
        commands.read, _digits, "the digits typed (``str``), or ``None`` when none were"
    )
    record = _command_method(
        commands.record, _recording, "the recording's file name (``str``), or ``None``"
    )
    send_dtmf = _command_method(commands.send_dtmf, _outcome)
    wait = _command_method(commands.wait, _outcome)
    wait_for_silence = _command_method(commands.wait_for_silence, _outcome)
    dialout = _command_method(
        commands.dialout, _dial, "``Completed`` (bridged) or ``DialFailed(status)``"
    )
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

    async def ask(
        self,
        prompt: Media,
        *,
        choices: Mapping[str, T],
        tries: int = 3,
        invalid: Media | None = None,
        silence: Media | None = None,
        timeout_ms: int = 5000,
    ) -> T | None:
        """Ask ``prompt`` until a key of ``choices`` is pressed, at most ``tries`` times
        (1-10); return that key's value, or None after the last try.

        ``choices``: keys (1-20 of ``0-9*#``) to values (anything but None).
        ``invalid`` / ``silence``: media said before the next try after a key that is
        not a choice / nothing typed (default: the prompt alone again); joined to the
        prompt's ``read`` when both are TTS of one voice, else a ``play`` first.
        ``timeout_ms``: how long each try waits for a key (100..30000). Each try is a
        ``read`` with ``attempts=1``. Raises CommandError for a bad part,
        CommandFailedError when the platform reports a command's error.
        """
        question = prompts.question(
            prompt,
            choices,
            tries=tries,
            invalid=invalid,
            silence=silence,
            timeout_ms=timeout_ms,
            stored=False,
        )
        batch = question.first()
        digits: str | None = None
        for n in range(question.tries):
            if n:
                batch = question.retry(digits)
            for command in batch[:-1]:
                await self.send(command)
            outcome = await self.send(batch[-1])
            digits = outcome.value if isinstance(outcome, Digits) and outcome.value else None
            if digits is not None and digits in choices:
                return choices[digits]
        return None

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
        args_digest = _args_digest(args, kwargs)
        if args_digest:
            what = f"{what}#{args_digest}"
        i = session.position
        journal = session.journal
        if i < len(journal):
            entry = journal[i]
            if not isinstance(entry, Once) or entry.what != what:
                await self._violation(i, entry, f"once({what})")
            assert isinstance(entry, Once)
            session.position = i + 1
            return entry.value  # type: ignore[no-any-return]
        ending = session.ending
        if ending and not session.hung_up:  # the call ended before the flow got here
            raise session.hang_up()
        if not ending:
            self._room(i)  # else: cleanup after CallHungUp, which runs and journals nothing
        if inspect.iscoroutinefunction(fn):
            value = await fn(*args, **kwargs)
        else:
            value = await asyncio.to_thread(functools.partial(fn, *args, **kwargs))
            if inspect.isawaitable(value):
                value = await value
        session = self._live_session()
        text = encode_json(value, f"the result of once({what})")
        stored = json.loads(text)
        if ending:
            return stored  # type: ignore[no-any-return]
        if session.position != i:  # pragma: no cover - two once() at the same time
            raise RuntimeError("call.once() calls of one call must not run concurrently")
        session.journal.append(Once(what, stored))
        session.position = i + 1
        return stored  # type: ignore[no-any-return]

    def patched(self, name: str) -> bool:
        """True when this call takes the patched branch ``name``: every call that reaches
        it after the deploy; False on the replay of a call that passed this point before
        it (it keeps the old branch). See the README, "Deploying mid-call"."""
        session = self._live_session()
        i = session.position
        journal = session.journal
        if i < len(journal):
            entry = journal[i]
            if isinstance(entry, Patch) and entry.name == name:
                session.position = i + 1
                return True
            return False
        self._room(i)
        journal.append(Patch(name))
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
        journal = session.journal
        if i < len(journal):
            entry = journal[i]
            if (
                not isinstance(entry, Sent)
                or entry.name != command.name
                or entry.digest != digest(command.params)
            ):
                await self._violation(i, entry, describe(command.name, command.wire_params()))
            assert isinstance(entry, Sent)
            session.position = i + 1
            report = entry.report
            if report is None:  # the command this callback (or the hang-up) answers
                report = await self._suspend(None)
        else:
            if session.ending:
                raise session.hang_up()
            self._room(i)
            journal.append(Sent(command.name, digest(command.params)))
            session.position = i + 1
            report = await self._suspend(command)
        if report.action is not None:
            await self._interrupted(command, report)
        return report

    async def _suspend(self, command: Command | None) -> Report:
        """Hand ``command`` to the runner and wait for its report, which a later
        callback brings. None: the command was sent already (its report is what the
        call's end is waiting for)."""
        session = self._session
        if session.ending or command is None:
            raise session.hang_up()
        return await _Suspend(command)

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
    """A name for ``fn`` that is the same in every process (never an address)."""
    if isinstance(fn, functools.partial):
        return f"partial({_name_of(fn.func)})"
    fn = getattr(fn, "__func__", fn)
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None)
    if not isinstance(name, str):  # a callable object: its type names it
        name = type(fn).__qualname__
    return name


def _args_digest(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The arguments of a ``once()``, when they are JSON (else not checked: an object's
    default repr differs from one process to the next)."""
    try:
        text = _CANONICAL_ARGS.encode([list(args), kwargs])
    except (TypeError, ValueError):
        return ""
    return digest({"a": text})


_CANONICAL_ARGS = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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


#: The version of a run that is an interrupt's sub-flow (after the flow returned).
SUBFLOW = "@sub:"


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
        self,
        name: str,
        cache: SessionCache,
        limit: Callable[[], int] | int = 1000,
        services: Callable[[], CallServices | None] | None = None,
    ) -> None:
        self.name = name
        self.cache = cache
        #: callid -> the copy being driven now on this worker (between two commands,
        #: maybe behind a hold): not in the cache until it reaches its next command.
        self.driving: dict[int, Session] = {}
        self.versions: dict[str, ScriptFn] = {}
        self.current: str | None = None
        self._limit = limit
        self._services = services

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
            if stored.done:  # the flow returned: its last command reported
                call._journal_next = stored
                action = call._action
                if action is not None and action.command is not None:
                    return action.command.then(RUN_STEP)  # an interrupt's command, then bye
                if action is not None and action.step is not None:
                    # An interrupt's sub-flow after the flow returned: a run of its own
                    # (any worker replays it by name), then the call hangs up.
                    data = _json_copy(call.state)
                    sub = Journal(SUBFLOW + action.step, secrets.token_hex(4), data)
                    return await self._run(call, req, sub)
                return commands.hangup()
            held = self.cache.get(req.callid)
            if held is not None and _holds(held, stored):
                # The common case: this worker's flow waits at the stored journal's last
                # command. Its own copy of the journal goes on (the stored one stays as
                # it was, for a hold written meanwhile). While it runs it is out of the
                # cache (no other call's put evicts it); it is put back at its next
                # command.
                self.cache.pop(req.callid)
                journal = held.journal
                if held.live is not None:
                    held.live._request = req  # call.status: the callback that resumed it
                entry = journal.report_last(
                    Report(req.command_result, req.command_error, call._action)
                )
                assert entry.report is not None
                signal = await _advance(held, send=entry.report)
                if not isinstance(signal, _Restart):
                    return self._reply(call, held, journal, signal)
                session = held
                journal = self._restarted(session, journal)
                return await self._run(call, req, journal)
            held = self.cache.get(req.callid)
            if held is not None and _ran_ahead(held, stored, req):
                # This worker answered this very report before, but the record could
                # not be saved (the store failed the write): the flow waits at the
                # command it sent then, never run. Answer it again; what it journaled
                # meanwhile (a once()) is not run a second time.
                self.cache.pop(req.callid)
                assert held.sent is not None
                return self._reply(call, held, held.journal, _Next(held.sent))
            journal = stored.copy()
            last = len(journal) - 1
            if (
                held is not None
                and last < len(held.journal)
                and journal.same_line(last, held.journal)
            ):
                journal.adopt(last, held.journal)  # decoded already by the flow that sent it
            if journal.waiting is None:
                raise FlowError(
                    f"flow {self.name}: call {req.callid} reported a command its journal does "
                    "not wait for"
                )
            journal.report_last(Report(req.command_result, req.command_error, call._action))
        return await self._run(call, req, journal)

    async def _run(self, call: Call, req: RTRequest, journal: Journal) -> Command:
        """Resume (or catch up) this worker's copy of the flow, or replay it."""
        restarts = 0
        while True:
            resumed = self._resumable(req.callid, journal)
            if resumed is not None:
                session, report_ = resumed
                if session.live is not None:
                    session.live._request = req
                signal = await _advance(session, send=report_)
            else:
                session = self._replay(req, journal)
                signal = await _advance(session)
            if isinstance(signal, _Restart):
                restarts += 1
                if restarts > MAX_RESTARTS:
                    raise FlowError(
                        f"flow {self.name}: call.restart() {restarts} times in one callback "
                        "without sending a command"
                    )
                journal = self._restarted(session, journal)
                continue
            break
        return self._reply(call, session, journal, signal)

    @staticmethod
    def _restarted(session: Session, journal: Journal) -> Journal:
        """``call.restart()``: a new run, starting from the state the flow left."""
        assert session.live is not None
        data = _json_copy(session.live.state)
        return Journal(journal.version, secrets.token_hex(4), data)

    def _reply(self, call: Call, session: Session, journal: Journal, signal: _Signal) -> Command:
        """The flow's next command (or its end) as this callback's reply."""
        live = session.live
        assert live is not None
        if isinstance(signal, _Failed):
            if not isinstance(signal.error, Exception):  # CancelledError or another base
                raise FlowError(
                    f"flow {self.name} raised {type(signal.error).__name__}: {signal.error}"
                ) from signal.error
            raise signal.error
        if isinstance(signal, _Restart):  # pragma: no cover - handled by the caller
            raise FlowError("restart outside the runner loop")
        call._journal_next = journal
        call.state.clear()
        call.state.update(live.state)
        call.variables = live.variables
        if isinstance(signal, _Finished):
            journal.done = True
            return (signal.command or commands.hangup()).then(RUN_STEP)
        self.cache.put(session)
        return signal.command.then(RUN_STEP)

    def _resumable(self, callid: int, journal: Journal) -> tuple[Session, Report] | None:
        """The suspended coroutine this worker holds and the report to resume it with,
        if it waits at the journal's last command, or behind it on the same run (it
        then replays the rest). Any other copy is dropped."""
        session = self.cache.get(callid)
        if session is None:
            return None
        i = session.position - 1
        old = session.journal
        if (
            session.suspended
            and not session.discarded
            and not session.finished
            and old.epoch == journal.epoch
            and 0 <= i < len(journal)
            and i < len(old)
            and _same_sent(old[i], journal[i])
        ):
            entry = journal[i]
            assert isinstance(entry, Sent)
            assert entry.report is not None
            session.journal = journal
            self.cache.pop(callid)  # out of the cache while it runs
            return session, entry.report
        self.cache.drop(callid)
        return None

    def _replay(self, req: RTRequest, journal: Journal) -> Session:
        fn = self.versions.get(journal.version)
        if fn is None and journal.version.startswith(SUBFLOW):
            fn = resolve_subflow(journal.version.removeprefix(SUBFLOW))
        if fn is None:
            raise FlowError(
                f"flow {self.name}: call {req.callid} runs version {journal.version!r}, which "
                "is not registered on this worker (keep old versions registered with "
                "retired=True until their calls end)"
            )
        session = Session(self, req.callid, journal)
        services = self._services() if self._services is not None else None
        live = LiveCall(session, req, _json_copy(journal.data), services)
        session.live = live
        session.coro = _body(session, fn)
        return session

    # -- the end of a call -----------------------------------------------------------

    async def end(
        self, req: RTRequest, journal: Journal | None, budget: float
    ) -> dict[str, Any] | None:
        """The call ended: raise ``CallHungUp`` at the flow's pending await (its ``finally``
        blocks run), replaying the journal first on a worker that does not hold it.
        Returns the flow's ``call.state`` once it ended (what ``on_hangup`` sees), or
        None when no flow ran here."""
        session = self.cache.pop(req.callid)
        running = self.driving.get(req.callid)
        if running is not None and running is not session and not running.discarded:
            # A copy is running between two commands here (behind a hold): the hang-up
            # reaches its next await; a second copy would run the flow twice.
            if session is not None:
                session.discard()
            session = running
        if journal is None or journal.done:
            if session is not None:
                session.discard()
            return None
        catch_up: Report | None = None
        if session is not None and session.suspended and session.position < len(journal):
            # This copy is behind (the call moved on on another worker): it replays the
            # rest of the journal first, so the hang-up reaches the call's pending await.
            i = session.position - 1
            entry = journal[i] if i >= 0 else None
            if (
                isinstance(entry, Sent)
                and entry.report is not None
                and _same_sent(session.journal[i], entry)
                and session.journal.epoch == journal.epoch
            ):
                session.journal = journal
                catch_up = entry.report
            else:
                session.discard()
                session = None
        if session is not None and (
            session.journal.epoch != journal.epoch or session.discarded or session.finished
        ):
            session.discard()
            session = None
        if session is None:
            try:
                session = self._replay(req, journal)
            except FlowError as exc:  # logged when its callback got the fallback
                flow_log.info("callid=%s: the flow is not ended here: %s", req.callid, exc)
                return None
        session.ending = True  # the flow's next command raises CallHungUp instead
        # Its own task, never cancelled (cancel.py): past the budget the flow is dropped
        # and keeps running there until its next await.
        ender = _background(_end(session, req.callid, catch_up))
        try:
            await asyncio.wait_for(asyncio.shield(ender), timeout=budget)
        except TimeoutError:
            flow_log.error(
                "callid=%s: flow %s still running %.0fs after the hang-up: dropped",
                req.callid,
                self.name,
                budget,
            )
            session.discard()
        live = session.live
        if live is None:
            return None
        try:
            return _json_copy(live.state)
        except (TypeError, ValueError):  # not JSON: on_hangup sees the state last saved
            return None


async def _end(session: Session, callid: int, catch_up: Report | None) -> None:
    """Drive the ending flow until it has finished, wherever it waits."""
    if catch_up is not None:
        await _advance(session, send=catch_up)
    while not session.finished:
        fresh = session.position == 0  # a replay not started yet
        if fresh and session.settled.is_set() and not session.suspended:
            await _advance(session)
        elif session.suspended:
            await _advance(session, throw=session.hang_up())
        elif not session.settled.is_set():  # driven by its callback's task: the end waits
            await session.settled.wait()
        else:
            return  # dropped: nothing left to end


def _holds(session: Session, stored: Journal) -> bool:
    """``session`` waits at the last command of ``stored`` (same run, same length)."""
    own = session.journal
    return (
        session.suspended
        and not session.discarded
        and not session.finished
        and own.epoch == stored.epoch
        and len(own) == len(stored) == session.position
        and len(own) > 0
        and own.same_line(-1, stored)
    )


def _ran_ahead(session: Session, stored: Journal, req: RTRequest) -> bool:
    """``session`` got the report ``stored`` waits for (this very one) and went on to
    a command of its own, which the store never saved."""
    own = session.journal
    n = len(stored)
    if not (
        session.suspended
        and session.sent is not None
        and not session.discarded
        and not session.finished
        and own.epoch == stored.epoch
        and 0 < n < len(own)
        and stored.waiting is not None
    ):
        return False
    entry = own[n - 1]
    return (
        isinstance(entry, Sent)
        and entry.report is not None
        and entry.report.action is None
        and _same_sent(entry, stored[n - 1])
        and entry.report.result == req.command_result
        and entry.report.error == req.command_error
        and all(own.same_line(i, stored) for i in range(n - 1))
    )


def _same_sent(a: object, b: object) -> bool:
    return isinstance(a, Sent) and isinstance(b, Sent) and a.name == b.name and a.digest == b.digest


async def _body(session: Session, fn: ScriptFn) -> _Signal:
    """The flow, with its end turned into a signal for the runner."""
    live = session.live
    assert live is not None
    try:
        result = await fn(live)
    except _Restarting:
        return _Restart()
    except _Discarded:
        return _Failed(session.failure or FlowError(f"flow {session.runner.name} was dropped"))
    except (Interrupted, CallHungUp):
        return _Finished(None)  # let escape: the flow ends quietly
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # the flow's own error: the call gets the fallback
        return _Failed(exc)
    if session.failure is not None:  # it swallowed the _Discarded of a broken rule
        return _Failed(session.failure)
    if result is not None and not isinstance(result, Command):
        return _Failed(
            OutputError(
                f"flow {session.runner.name} returned {type(result).__name__}: return "
                "None (hang up) or a final command"
            )
        )
    return _Finished(result)


def _json_copy(value: dict[str, Any]) -> dict[str, Any]:
    copied: dict[str, Any] = json.loads(json.dumps(value)) if value else {}
    return copied
