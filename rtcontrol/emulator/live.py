"""A live callee: a person (the dev page's softphone) instead of a script.

A :class:`LiveCallee` answers at once and takes its input from a :class:`LiveLine`,
fed in real time through the control API: keys (DTMF), speech (seconds talked) and the
hang-up (``EmulatedCall.request_hangup("callee")``).

The commands that listen run against the line instead of a script:

* ``read``: the prompt plays; a key during it stops it and counts (with
  ``read_barge_in``, else it is ignored); after it, the first key must come within
  ``timeout_ms``, each next one within ``timeout_ms`` of the previous; ``#`` or
  ``max_digits`` ends the entry; nothing in any attempt gives ``read_timeout_result``;
* ``record``: speech ("I talked N seconds") and then ``silence`` seconds without any
  more ends it, as does ``#``, nothing at all for ``silence`` seconds, or
  ``max_duration``.

Every other command runs as for a scripted callee whose script is empty (silent). Keys
are kept from the moment a command starts until a listening command takes them; a new
command drops the keys nobody took (a phone does not queue DTMF across prompts).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from .callee import Callee
from .execute import EXECUTORS, Executor, Outcome
from .runtime import CommandContext

__all__ = ["LISTENING", "LiveCallee", "LiveInput", "LiveLine", "install"]

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
    """A callee driven by a person through a :class:`LiveLine` (one per call)."""

    line: LiveLine

    def __init__(self, line: LiveLine | None = None, *, name: str = "softphone") -> None:
        super().__init__("answer", 0.0, (), name=name)
        object.__setattr__(self, "line", line or LiveLine())


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


_LIVE = {"read": _read, "record": _record}


def _live_or(original: Executor, name: str) -> Executor:
    live = _LIVE[name]

    async def run(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
        callee = ctx.script.callee
        if isinstance(callee, LiveCallee):
            return await live(ctx, p, callee.line)
        return await original(ctx, p)

    run.__dict__["rtcontrol_live"] = original
    return run


def install() -> None:
    """Route ``read`` and ``record`` of live callees to the live executors.

    Scripted callees still get the platform's own executors, unchanged. (Idempotent.)
    """
    for name in _LIVE:
        current = EXECUTORS[name]
        if "rtcontrol_live" not in current.__dict__:
            EXECUTORS[name] = _live_or(current, name)
