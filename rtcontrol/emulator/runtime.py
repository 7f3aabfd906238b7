"""The world a running command sees: virtual time with hang-up deadlines, the callee's
script, and the platform-wide services (rooms, legs, recordings, phonebook).

Time inside a command is *planned*: :meth:`CommandContext.sleep` advances a virtual
cursor and compares it with the hang-up deadline arithmetically, so "hang up 2 s into a
5 s prompt" always lands in the prompt however slow the machine is. Only external events
(breaks, ``calls.hangup``, other conference members) race with real time.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from rtcontrol.media import Media

from .callee import Action, Callee, HangUp, Script, Silence
from .clock import Clock
from .rooms import Rooms
from .settings import EmulatorSettings
from .transcript import EventKind

__all__ = ["CommandContext", "EndCall", "Leg", "Services", "media_seconds"]


class EndCall(Exception):
    """The call ends inside the running command (``reason`` as in ``Transcript.ended_by``)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@dataclass
class Leg:
    """An outbound leg placed by ``dialout``: no webhook, but a callid that can be hung up."""

    callid: int
    number: str
    callee: Callee
    answered_at: float
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    ended: bool = False

    def hang_up(self) -> bool:
        if self.ended or self.hung_up.is_set():
            return False
        self.hung_up.set()
        return True


class Services(Protocol):
    """What commands need from the emulator as a whole."""

    @property
    def settings(self) -> EmulatorSettings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def rooms(self) -> Rooms: ...

    @property
    def recordings(self) -> dict[str, float]: ...

    @property
    def legs(self) -> dict[int, Leg]: ...

    def lookup(self, number: str) -> Callee: ...

    def is_live(self, number: str) -> bool:
        """Whether a call to ``number`` rings the softphone (``calls.realtime`` only)."""
        ...

    def next_callid(self) -> int: ...

    def hangup_callid(self, callid: int, *, reason: str) -> bool | None:
        """Hang up any call or leg; ``None`` when the callid was never seen."""
        ...


def media_seconds(settings: EmulatorSettings, media: Media) -> float:
    """How long a media plays: TTS by text length, media ids by table, 0 for none."""
    if isinstance(media, str):
        text = media.split("|", 2)[-1]
        return max(settings.tts_min_seconds, len(text) * settings.tts_seconds_per_char)
    if media == 0:
        return 0.0
    return settings.media_durations.get(media, settings.media_seconds)


class CommandContext:
    """One command's execution: planned time, deadline, callee script, transcript."""

    def __init__(
        self,
        *,
        services: Services,
        callid: int,
        script: Script,
        log: Callable[[EventKind, str], None],
        deadline: float,
        reason: str,
    ) -> None:
        self.services = services
        self.settings = services.settings
        self.clock = services.clock
        self.callid = callid
        self.script = script
        self.log = log
        self.start = self.clock.now()
        self._cursor = 0.0
        self._deadline = deadline - self.start
        self._reason = reason
        #: Result carried by the HANGUP POST if the call ends inside this command.
        self.hangup_result = self.settings.default_result

    # --- time ----------------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Planned virtual seconds since the command started."""
        return self._cursor

    def hang_up_in(self, seconds: float, reason: str = "callee") -> None:
        """The callee hangs up ``seconds`` from now (if that is earlier than planned)."""
        at = self._cursor + seconds
        if at < self._deadline:
            self._deadline = at
            self._reason = reason

    async def sleep(self, seconds: float) -> None:
        """Let ``seconds`` of the command pass; raise :class:`EndCall` at the deadline."""
        target = self._cursor + max(0.0, seconds)
        if self._deadline <= target:
            await self._until(self._deadline)
            raise EndCall(self._reason)
        await self._until(target)

    async def until(self, offset: float) -> None:
        """Sleep until ``offset`` seconds into the command (no-op if already past)."""
        await self.sleep(offset - self._cursor)

    async def wait(self, event: asyncio.Event, seconds: float | None = None) -> bool:
        """Wait for ``event`` at most ``seconds`` (None: until the deadline); True if it fired."""
        limit = self._deadline - self._cursor
        span = limit if seconds is None else min(max(0.0, seconds), limit)
        real = self.clock.real_seconds(span)
        try:
            await asyncio.wait_for(event.wait(), timeout=real)
        except TimeoutError:
            self._cursor += span
            if seconds is None or limit <= seconds:
                raise EndCall(self._reason) from None
            return False
        self._cursor = max(self._cursor, self.clock.now() - self.start)
        return True

    async def _until(self, offset: float) -> None:
        self._cursor = offset
        delay = self.start + offset - self.clock.now()
        if math.isfinite(delay) and delay > 0:
            await self.clock.sleep(delay)
        else:
            await asyncio.sleep(0)

    # --- callee and transcript -----------------------------------------------------------------
    def take(self) -> Action:
        """The callee's next action, applying ``when_done`` when the script is exhausted."""
        action = self.script.next()
        if action is None:
            if self.script.callee.when_done == "hangup":
                self.callee("has nothing left to do and hangs up")
                return HangUp(0.0)
            return Silence()
        return action

    def callee(self, text: str) -> None:
        self.log("callee", text)

    def platform(self, text: str) -> None:
        self.log("platform", text)

    def media(self, value: Media) -> float:
        return media_seconds(self.settings, value)
