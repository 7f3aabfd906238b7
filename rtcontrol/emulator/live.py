"""A live callee: a person (the dev page's softphone) instead of a script.

A :class:`LiveCallee` takes its input from a :class:`LiveLine`, fed in real time through
the control API: picking up a ringing call (or declining it), keys (DTMF), speech
(seconds talked) and the hang-up (``EmulatedCall.request_hangup("callee")``). It plugs
into the call through the call's two callee hooks (:class:`~.call.CalleeHooks`), so
nothing of the platform's own behaviour is patched:

* ``ring()``: an outbound call rings until the person answers or declines
  (:meth:`LiveLine.pick_up`); the call itself gives up at its ring timeout (NOANSWER)
  and stops the ringing on a cancel. An inbound call is answered at once.
* ``executor(name)``: the commands that listen run against the line instead of a script:

  * ``read``: the prompt plays; a key during it stops it and counts (with
    ``read_barge_in``, else it is ignored); after it, the first key must come within
    ``timeout_ms``, each next one within ``timeout_ms`` of the previous; ``#`` or
    ``max_digits`` ends the entry; nothing in any attempt gives ``read_timeout_result``;
  * ``record``: speech ("I talked N seconds") and then ``silence`` seconds without any
    more ends it, as does ``#``, nothing at all for ``silence`` seconds, or
    ``max_duration``.

  Every other command runs as for a scripted callee whose script is empty (silent).

Keys are kept from the moment a command starts until a listening command takes them; a
new command drops the keys nobody took (a phone does not queue DTMF across prompts).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .callee import Answer, Callee
from .execute import Executor, Outcome
from .runtime import CommandContext

__all__ = ["LISTENING", "LiveCallee", "LiveInput", "LiveLine"]

#: Commands that take a live callee's input.
LISTENING = frozenset({"read", "record"})


@dataclass(frozen=True)
class LiveInput:
    """One thing the person did: a key, or ``seconds`` of speech."""

    key: str = ""
    seconds: float = 0.0


class LiveLine:
    """The input side of a live call: what the person sends, waiting to be heard."""

    def __init__(self) -> None:
        self._inputs: deque[LiveInput] = deque()
        self._arrived = asyncio.Event()
        #: The command running now (as the transcript reports it), ``None`` between.
        self.command: str | None = None
        self._decision: Answer | None = None
        self._decided = asyncio.Event()
        self._rung = False

    # --- ringing --------------------------------------------------------------------------
    def pick_up(self, how: Answer = "answer") -> bool:
        """The person answers (``"answer"``) or declines (``"busy"``, ``"rejected"``) a
        ringing call. False once the ringing is over or already decided."""
        if how not in ("answer", "noanswer", "busy", "congestion", "rejected"):
            raise ValueError(f"unknown answer behaviour {how!r}")
        if self._rung or self._decision is not None:
            return False
        self._decision = how
        self._decided.set()
        return True

    async def ring(self) -> Answer:
        """Wait for :meth:`pick_up`; once this returns or is cancelled, the ringing is over."""
        try:
            await self._decided.wait()
            assert self._decision is not None
            return self._decision
        finally:
            self._rung = True

    # --- input during the call ------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """True while a command that takes input runs."""
        return self.command in LISTENING

    def press(self, digits: str) -> bool:
        """Queue keys; False when no listening command runs (the keys are lost)."""
        if not digits or not set(digits) <= set("0123456789*#"):
            raise ValueError(f"digits must be 0-9, * or #, got {digits!r}")
        if not self.listening:
            return False
        self._inputs.extend(LiveInput(key=k) for k in digits)
        self._arrived.set()
        return True

    def speak(self, seconds: float) -> bool:
        """Queue speech that just ended; False when no listening command runs."""
        if not (seconds >= 0 and math.isfinite(seconds)):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        if not self.listening:
            return False
        self._inputs.append(LiveInput(seconds=float(seconds)))
        self._arrived.set()
        return True

    def command_started(self, name: str) -> None:
        """A new command: keys nobody took are dropped."""
        self.command = name
        self._inputs.clear()
        self._arrived.clear()

    def command_ended(self) -> None:
        self.command = None
        self._inputs.clear()

    async def next(self, ctx: CommandContext, seconds: float | None) -> LiveInput | None:
        """The next input within ``seconds`` (None: until the call's deadline)."""
        if not self._inputs:
            self._arrived.clear()
            limit = None if seconds is None or math.isinf(seconds) else seconds
            if not await ctx.wait(self._arrived, limit):
                return None
        return self._inputs.popleft()


class LiveCallee(Callee):
    """A callee driven by a person through a :class:`LiveLine` (one per call).

    Implements the call's callee hooks: :meth:`ring` and :meth:`executor`.
    """

    line: LiveLine

    def __init__(self, line: LiveLine | None = None, *, name: str = "softphone") -> None:
        super().__init__("answer", 0.0, (), name=name)
        object.__setattr__(self, "line", line or LiveLine())

    async def ring(self) -> Answer:
        """Ring until the person picks up or declines (the call enforces the timeout)."""
        return await self.line.ring()

    def executor(self, name: str) -> Executor | None:
        """``read`` and ``record`` take the line's input; None: the platform's own."""
        live = _LIVE.get(name)
        if live is None:
            return None
        line = self.line

        async def run(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
            return await live(ctx, p, line)

        return run


# ---------------------------------------------------------------- executors


async def _key(ctx: CommandContext, line: LiveLine, seconds: float) -> str | None:
    """The next key within ``seconds``; speech meanwhile is noted and skipped."""
    end = ctx.elapsed + seconds
    while (left := end - ctx.elapsed) > 0:
        got = await line.next(ctx, left)
        if got is None:
            return None
        if got.key:
            return got.key
        ctx.callee(f"talks for {got.seconds:g}s instead of pressing keys")
    return None


async def _read(ctx: CommandContext, p: dict[str, Any], line: LiveLine) -> Outcome:
    prompt = ctx.media(p["media_id"])
    timeout = p["timeout_ms"] / 1000
    for attempt in range(1, p["attempts"] + 1):
        first: str | None = None
        prompt_end = ctx.elapsed + prompt
        while first is None and (left := prompt_end - ctx.elapsed) > 0:
            key = await _key(ctx, line, left)
            if key is None:
                break
            if ctx.settings.read_barge_in:
                first = key
                ctx.callee(f"presses {key!r} during the prompt (barge-in), attempt {attempt}")
            else:
                ctx.callee(f"presses {key!r} during the prompt: ignored (no barge-in)")
        if first is None:
            await ctx.until(prompt_end)
            first = await _key(ctx, line, timeout)
            if first is not None:
                ctx.callee(f"presses {first!r} after the prompt, attempt {attempt}")
        entry = ""
        key = first
        while key is not None and key != "#":
            entry += key
            if len(entry) >= p["max_digits"]:
                break
            key = await _key(ctx, line, timeout)
            if key is not None:
                ctx.callee(f"presses {key!r}")
        if entry:
            return entry, ""
        if first is not None:  # '#' alone: the attempt's time runs out
            await ctx.until(prompt_end + timeout)
    return ctx.settings.read_timeout_result, ""


async def _record(ctx: CommandContext, p: dict[str, Any], line: LiveLine) -> Outcome:
    silence = float(p["silence"]) if p["silence"] else math.inf
    limit = float(p["max_duration"]) if p["max_duration"] else math.inf
    quiet_until = silence
    while ctx.elapsed < min(quiet_until, limit):
        got = await line.next(ctx, min(quiet_until, limit) - ctx.elapsed)
        if got is None:
            break
        if got.key == "#":
            ctx.callee("presses '#': the recording stops")
            break
        if got.key:
            ctx.callee(f"presses {got.key!r} while recording")
            continue
        ctx.callee(f"talked for {got.seconds:g}s")
        quiet_until = ctx.elapsed + silence
    length = min(ctx.elapsed, limit)
    await ctx.until(length)
    recordings = ctx.services.recordings
    name = ctx.settings.record_file_template.format(callid=ctx.callid, n=len(recordings) + 1)
    recordings[name] = length
    return name, ""


_LIVE: dict[str, Callable[[CommandContext, dict[str, Any], LiveLine], Awaitable[Outcome]]] = {
    "read": _read,
    "record": _record,
}
