"""One emulated call: the POST/reply loop the platform runs against an app.

Invariants (spec §5-§7), each tested:

* one outstanding POST per call; the next one only after the command completes;
* every answered call ends with exactly one HANGUP POST and nothing after it; its reply
  is ignored; an unanswered outbound call gets at most one POST (BUSY, NOANSWER...);
* ``command_id`` and ``variables`` are echoed exactly as received;
* a reply is never accepted silently: malformed or invalid ones are handled per settings;
* an external hang-up or break can land at any time; a hang-up that lands while the app
  is being asked is applied once its reply arrives (the POST cannot be recalled): the
  replied command never runs, the HANGUP POST carries the variables of that reply when it
  is valid (``variables`` are always those of the last valid reply) and repeats the last
  report unless ``hangup_repeats_report`` is off;
* a call cancelled while ringing sends nothing, or one HANGUP POST when
  ``post_cancelled_outbound`` is on;
* any command is breakable while it runs (UNKNOWN for the near-instant ones, which in
  practice finish before a break can land); a break is never queued.

A callee may take part of this over through two hooks (:class:`CalleeHooks`; a live
callee, the softphone, has both, a scripted :class:`Callee` neither): ``ring`` decides
when and how an outbound call's ringing ends, ``executor`` runs a command in place of the
platform's own executor. Everything else (the timeout, cancels, POSTs, hang-ups, breaks)
stays the call's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol, runtime_checkable

import httpx

from rtcontrol.commands import Command
from rtcontrol.errors import CallEnded

from .apps import App, format_datetime
from .callee import Answer, Callee, Script
from .execute import EXECUTORS, Executor
from .runtime import CommandContext, EndCall, Services
from .transcript import Event, EventKind, Transcript
from .webhook import Failure, Webhook
from .wire import Refused

__all__ = ["CalleeHooks", "EmulatedCall"]


@runtime_checkable
class CalleeHooks(Protocol):
    """What a callee may take over from the platform (both or neither: a live callee)."""

    async def ring(self) -> Answer:
        """Ring an outbound call until the callee answers (``"answer"``) or declines.

        The call owns the time: it races this against the ring timeout (NOANSWER; the hook
        is cancelled) and against a cancel (``calls.hangup`` while ringing).
        """
        ...

    def executor(self, name: str) -> Executor | None:
        """The executor of command ``name`` for this callee; None: the platform's own."""
        ...


@dataclass(frozen=True)
class _Report:
    """What the next POST reports: the last command and its outcome."""

    command: str = ""
    command_id: int | str = 0
    result: str = ""
    error: str = ""


@dataclass(frozen=True)
class _Outcome:
    result: str
    error: str
    ended: str = ""


class EmulatedCall:
    """A live call; also the handle tests use to watch and steer it.

    Use :meth:`wait` for the final :class:`Transcript`, :meth:`wait_command` to act while
    a given command runs (``await call.wait_command("play")`` then break it).
    """

    def __init__(
        self,
        services: Services,
        client: httpx.AsyncClient,
        *,
        app: App,
        callid: int,
        direction: Literal["inbound", "outbound"],
        callee: Callee,
        number: str,
        cli_number: str = "",
        cli_name: str = "",
        cdr_field: str = "",
        request_hash: str | None = None,
        ring_timeout: float = 30.0,
        on_answer: Callable[[EmulatedCall], None] | None = None,
    ) -> None:
        """``on_answer`` is called when an outbound call is answered, before its first POST."""
        self._services = services
        self._settings = services.settings
        self._clock = services.clock
        self._webhook = Webhook(client, services.settings, app, self._log)
        self.app = app
        self.callid = callid
        self.direction = direction
        self.callee = callee
        self._hooks = callee if isinstance(callee, CalleeHooks) else None
        self._on_answer = on_answer
        self.request_hash = request_hash
        self._number = number
        self._cli_number = cli_number
        self._cli_name = cli_name
        self._cdr_field = cdr_field
        self._ring_timeout = ring_timeout
        self.transcript = Transcript(
            callid=callid,
            app=app.hash,
            direction=direction,
            number=number,
            cli_number=cli_number,
            request_hash=request_hash,
        )
        self.start = self._clock.now()
        self._date_started = format_datetime(self._clock.wall())
        self._script = Script(callee)
        self._variables: dict[str, Any] = {}
        self._commands = 0
        self._running: str | None = None
        self._stop: asyncio.Future[str] | None = None
        self._hangup_reason: str | None = None
        self._ending = False
        self._callee_deadline = float("inf")
        self._answered_at = self.start
        self._ringing = direction == "outbound"
        self._done = asyncio.Event()
        self._changed = asyncio.Event()
        #: An emulator bug that ended the call; :meth:`wait` re-raises it.
        self.failure: BaseException | None = None

    # --- public handle -------------------------------------------------------------------
    @property
    def running(self) -> str | None:
        """Name of the command executing now (``None`` while the app is being asked)."""
        return self._running

    @property
    def ringing(self) -> bool:
        """True while an outbound call rings (nobody answered, declined or cancelled yet)."""
        return self._ringing and not self.ended

    @property
    def ended(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> Transcript:
        """Wait for the call to end; return its transcript."""
        await self._done.wait()
        if self.failure is not None:
            raise self.failure
        return self.transcript

    async def wait_until(self, predicate: Callable[[Transcript], bool]) -> None:
        """Wait until ``predicate(transcript)`` holds; raise ``CallEnded`` if it never can."""
        while not predicate(self.transcript):
            if self.ended:
                raise CallEnded(f"call {self.callid} ended first", callid=self.callid)
            changed = self._changed
            await changed.wait()

    async def wait_command(self, name: str | None = None, nth: int = 1) -> None:
        """Wait until the ``nth`` command named ``name`` (any name: None) starts running."""
        await self.wait_until(
            lambda t: sum(1 for c in t.executed if name in (None, c)) >= nth,
        )

    def request_break(self) -> bool:
        """``calls.realtime_break``: stop the running command; False when none runs."""
        stop = self._stop
        if self._running is None or stop is None or stop.done():
            return self._settings.break_when_idle
        stop.set_result("break")
        self._log("platform", f"calls.realtime_break interrupts {self._running}")
        return True

    def request_hangup(self, reason: str = "api") -> bool:
        """Hang the call up (``calls.hangup``, ``hangup_callid``); False once it is over."""
        if self._ending or self.ended:
            return self._settings.hangup_ended_call
        if self._hangup_reason is None:
            self._hangup_reason = reason
            self._log("platform", f"hang-up requested ({reason})")
        if self._stop is not None and not self._stop.done():
            self._stop.set_result("hangup")
        return True

    # --- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        try:
            await self._run()
        except asyncio.CancelledError:
            self._end("shutdown")
            raise
        except Exception as exc:
            self.failure = exc
            self._log("error", f"emulator failure: {exc!r}")
            self._end("emulator_error")
        finally:
            self._end("shutdown")

    async def _run(self) -> None:
        if self.direction == "outbound" and not await self._ring():
            return
        self._callee_deadline = self._answered_at + (
            self.callee.hangup_after if self.callee.hangup_after is not None else float("inf")
        )
        status = self._settings.inbound_first_status if self.direction == "inbound" else "UP"
        report = _Report()
        while True:
            verdict = await self._webhook.ask(self._request(report, status), self._variables)
            if isinstance(verdict, Failure):
                await self._final(self._repeat(report, verdict.token), "webhook")
                return
            # The reply is valid: its variables are the call's from now on, even when a
            # hang-up landed while it was in flight (the HANGUP POST echoes the last reply).
            self._variables = verdict.variables
            if reason := self._pending_end():
                await self._final(self._repeat(report), reason)
                return
            if isinstance(verdict, Refused):
                report = _Report(verdict.name, verdict.command_id, "", verdict.error)
                if self._settings.on_invalid_command == "hangup":
                    await self._final(report, "invalid_command")
                    return
                continue
            command, command_id = verdict.command, verdict.command_id
            self._commands += 1
            if self._commands > self._settings.max_commands:
                self._log("error", f"more than {self._settings.max_commands} commands: hanging up")
                await self._final(_Report(command.name, command_id), "max_commands")
                return
            self._log("platform", f"run {command.name} #{command_id}", data=command.name)
            if command.name == "hangup":
                await self._final(_Report("hangup", command_id), "app")
                return
            status = "UP"
            outcome = await self._execute(command)
            report = _Report(command.name, command_id, outcome.result, outcome.error)
            reason = outcome.ended or self._pending_end()
            if reason:
                await self._final(report, reason)
                return

    def _pending_end(self) -> str:
        if self._hangup_reason:
            return self._hangup_reason
        now = self._clock.now()
        if now >= self._callee_deadline:
            self._log("callee", "hangs up")
            return "callee"
        if now >= self.start + self._settings.max_call_duration:
            self._log("error", "max_call_duration reached: the emulator hangs up")
            return "max_duration"
        return ""

    async def _ring(self) -> bool:
        timeout = self._ring_timeout
        self._log("platform", f"dialing {self._number} (timeout {timeout:g}s)")
        stop = self._stop = asyncio.get_running_loop().create_future()
        try:
            behaviour = await self._ringing_ends(stop, seconds=timeout)
        finally:
            self._stop = None
            self._ringing = False
        if behaviour is None:
            self._log("platform", "cancelled while ringing")
            if self._settings.post_cancelled_outbound:
                self._ending = True
                await self._webhook.tell(self._request(_Report(), "HANGUP"))
            self._end("cancel")
            return False
        if behaviour == "answer":
            self._log("callee", "answers")
            self._answered_at = self._clock.now()
            if self._on_answer is not None:
                self._on_answer(self)
            return True
        status = self._settings.unanswered_status[behaviour]
        self._log("callee", f"does not answer: {status}")
        if self._settings.post_unanswered_outbound:
            self._ending = True
            await self._webhook.tell(self._request(_Report(), status))
        self._end("unanswered")
        return False

    async def _ringing_ends(self, stop: asyncio.Future[str], *, seconds: float) -> Answer | None:
        """How ``seconds`` of ringing end: the callee's answer (``noanswer`` when it rang
        them all), or None when the call is cancelled first."""
        if self._hooks is None:
            callee = self.callee
            answers = callee.answer == "answer" and callee.answer_delay < seconds
            behaviour = "noanswer" if callee.answer == "answer" else callee.answer
            delay = callee.answer_delay if answers or behaviour != "noanswer" else seconds
            try:
                await asyncio.wait_for(stop, self._clock.real_seconds(min(delay, seconds)))
            except TimeoutError:
                return "answer" if answers else behaviour
            return None
        person = asyncio.create_task(self._hooks.ring())
        either: set[asyncio.Future[Any]] = {person, stop}
        try:
            await asyncio.wait(
                either,
                timeout=self._clock.real_seconds(seconds),
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            if not person.done():
                person.cancel()
                await asyncio.gather(person, return_exceptions=True)
        if stop.done():
            return None
        if person.cancelled():
            return "noanswer"
        return person.result()

    async def _execute(self, command: Command) -> _Outcome:
        ctx = self._context(command.name)
        own = self._hooks.executor(command.name) if self._hooks is not None else None
        executor = own or EXECUTORS[command.name]
        self._running = command.name
        stop = self._stop = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(executor(ctx, command.wire_params()))
        try:
            done, _ = await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            self._running = None
            self._stop = None
        if task in done:
            try:
                result, error = task.result()
            except EndCall as end:
                if end.reason == "callee":
                    self._log("callee", f"hangs up during {command.name}")
                elif end.reason == "max_duration":
                    self._log("error", "max_call_duration reached: the emulator hangs up")
                return _Outcome(ctx.hangup_result, "", ended=end.reason)
            return _Outcome(result, error)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if stop.result() == "break":
            return _Outcome(self._settings.break_result, self._settings.break_error)
        return _Outcome(ctx.hangup_result, "", ended=self._hangup_reason or "api")

    def _context(self, name: str) -> CommandContext:
        deadlines = [
            (self._callee_deadline, "callee"),
            (self.start + self._settings.max_call_duration, "max_duration"),
        ]
        during = self.callee.hangup_during
        if during == name or (isinstance(during, int) and during == self._commands):
            deadlines.append((self._clock.now() + self.callee.hangup_delay, "callee"))
        deadline, reason = min(deadlines)
        return CommandContext(
            services=self._services,
            callid=self.callid,
            script=self._script,
            log=self._log,
            deadline=deadline,
            reason=reason,
        )

    # --- HTTP ----------------------------------------------------------------------------
    def _request(self, report: _Report, status: str) -> dict[str, Any]:
        return {
            "app": self.app.hash,
            "callid": self.callid,
            "request_hash": self.request_hash,
            "cli_name": self._cli_name,
            "cli_number": self._cli_number,
            "date_started": self._date_started,
            "number": self._number,
            "command": report.command,
            "command_id": report.command_id,
            "command_result": report.result,
            "command_error": report.error,
            "call_status": status,
            "cdr_field": self._cdr_field,
            "variables": self._variables,
        }

    def _repeat(self, report: _Report, error: str | None = None) -> _Report:
        """The report of a HANGUP POST that has no new command outcome to tell.

        ``hangup_repeats_report`` (UNKNOWN, spec §6.4): repeat the previous POST's command
        and command_id (its result replaced by a webhook failure's ``error``), or report
        nothing (command ``""``, command_id 0; ``error`` kept).
        """
        if not self._settings.hangup_repeats_report:
            return _Report(error=error or "")
        return report if error is None else replace(report, result="", error=error)

    async def _final(self, report: _Report, reason: str) -> None:
        self._ending = True
        await self._webhook.tell(self._request(report, "HANGUP"))
        self._end(reason)

    # --- bookkeeping ---------------------------------------------------------------------------
    def _log(
        self,
        kind: EventKind,
        text: str,
        *,
        data: Any = None,
        status: int | None = None,
        latency: float | None = None,
        ignored: bool = False,
    ) -> None:
        at = self._clock.now() - self.start
        event = Event(at, kind, text, data, status, latency, ignored)
        self.transcript.add(event)
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _end(self, reason: str) -> None:
        if self._done.is_set():
            return
        self._ending = True
        self.transcript.ended_by = reason
        self.transcript.duration = self._clock.now() - self.start
        self._done.set()
        self._notify()
