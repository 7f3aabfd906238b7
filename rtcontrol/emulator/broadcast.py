"""``calls.broadcast_1``: ring one target and play it a list of messages; no webhook.

Its status for ``calls.get_status_1`` moves through the phases of the
``broadcast_status`` table: pending -> ringing -> up -> done, or a failure phase
(noanswer, busy, congestion, rejected, cancel). ``broadcast_status_answered`` picks the
vocabulary of the answered phases: a dial status (ANSWER throughout) or the real-time
call_status (UP while playing, HANGUP after).
"""

from __future__ import annotations

import asyncio
from typing import Any

from rtcontrol.media import Media, Target

from .callee import Callee, Script
from .runtime import CommandContext, EndCall, Services
from .transcript import Event, EventKind, Transcript

__all__ = ["Broadcast"]

#: Phase -> ``broadcast_status`` key when ``broadcast_status_answered`` is ``call_status``.
_CALL_STATUS_PHASE = {"up": "playing", "done": "ended"}


class Broadcast:
    """One broadcast call and its transcript (direction ``broadcast``)."""

    def __init__(
        self,
        services: Services,
        *,
        request_hash: str,
        callid: int,
        target: Target,
        messages: list[Media],
        options: dict[str, Any],
        callee: Callee,
    ) -> None:
        self._services = services
        self.request_hash = request_hash
        self.callid = callid
        self.callee = callee
        self._target = target
        self._messages = messages
        self._loop_count: int = options.get("loop", 1)
        cli = options.get("cli", "BLOCKED")
        self.transcript = Transcript(
            callid=callid,
            app="",
            direction="broadcast",
            number=target.number,
            cli_number="" if cli == "BLOCKED" else cli,
            request_hash=request_hash,
        )
        self.phase = "pending"
        self.start = services.clock.now()
        self._stop: asyncio.Future[str] | None = None
        self._done = asyncio.Event()

    @property
    def status(self) -> str:
        """The ``calls.get_status_1`` value for the current phase."""
        settings = self._services.settings
        phase = self.phase
        if settings.broadcast_status_answered == "call_status":
            phase = _CALL_STATUS_PHASE.get(phase, phase)
        return settings.broadcast_status.get(phase, phase.upper())

    @property
    def ended(self) -> bool:
        return self._done.is_set()

    async def wait(self) -> Transcript:
        await self._done.wait()
        return self.transcript

    def request_break(self) -> bool:
        return self._services.settings.break_when_idle

    def request_hangup(self, reason: str = "api") -> bool:
        if self.ended:
            return self._services.settings.hangup_ended_call
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(reason)
        return True

    def _log(self, kind: EventKind, text: str) -> None:
        at = self._services.clock.now() - self.start
        self.transcript.add(Event(at, kind, text))

    async def run(self) -> None:
        self._stop = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._play())
        try:
            done, _ = await asyncio.wait({task, self._stop}, return_when=asyncio.FIRST_COMPLETED)
            if task not in done:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                reason = self._stop.result()
                self._log("platform", f"hung up ({reason})")
                self.phase = "cancel" if self.phase in ("pending", "ringing") else "done"
                self._finish(reason)
            else:
                self._finish(task.result())
        finally:
            task.cancel()
            self._finish("shutdown")

    def _finish(self, reason: str) -> None:
        if not self._done.is_set():
            self.transcript.ended_by = reason
            self.transcript.duration = self._services.clock.now() - self.start
            self._done.set()

    async def _play(self) -> str:
        s = self._services.settings
        callee, timeout = self.callee, float(self._target.timeout)
        self.phase = "ringing"
        self._log("platform", f"dialing {self._target.number} (timeout {timeout:g}s)")
        limit = self.start + s.max_call_duration
        ctx = CommandContext(
            services=self._services,
            callid=self.callid,
            script=Script(callee),
            log=self._log,
            deadline=limit,
            reason="max_duration",
        )
        if callee.answer != "answer" or callee.answer_delay >= timeout:
            behaviour = "noanswer" if callee.answer == "answer" else callee.answer
            await ctx.sleep(timeout if behaviour == "noanswer" else callee.answer_delay)
            self.phase = behaviour
            self._log("callee", f"does not answer: {self.status}")
            return "unanswered"
        await ctx.sleep(callee.answer_delay)
        self.phase = "up"
        self._log("callee", "answers")
        if callee.hangup_after is not None:
            ctx.hang_up_in(callee.hangup_after)
        try:
            for _ in range(self._loop_count):
                for media in self._messages:
                    self._log("platform", f"plays {media!r}")
                    await ctx.sleep(ctx.media(media))
        except EndCall as end:
            self.phase = "done"
            if end.reason == "callee":
                self._log("callee", "hangs up")
            return end.reason
        self.phase = "done"
        return "completed"
