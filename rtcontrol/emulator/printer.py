"""Live transcripts on a terminal: one rich line per event of the emulator's stream.

What ``rtcontrol emulator`` and ``rtcontrol dev`` print while calls run. Phone numbers
are masked (``+33*******78``: the ``+`` and two digits, which for ``+33`` are the country
code, then the last two digits), as the dev page and the CLI's error lines mask them:
terminals end up in logs and screenshots. A value cut to fit a line is masked first,
then cut, so a number cut short never shows digits of its middle as its end.
"""

from __future__ import annotations

import json
import queue
import re
import threading
from typing import Any

from rich.console import Console
from rich.text import Text

from .bus import ControlEvent, EventBus

__all__ = ["format_event", "mask_numbers", "print_events"]

_E164 = re.compile(r"\+[0-9]{6,15}")
_STYLE = {
    "call.ringing": "bold yellow",
    "call.started": "bold",
    "post": "cyan",
    "reply": "green",
    "command.started": "blue",
    "command.ended": "blue",
    "break": "yellow",
    "callee": "magenta",
    "platform": "yellow",
    "error": "bold red",
    "call.ended": "bold",
}


def mask_numbers(text: str) -> str:
    """``+33612345678`` -> ``+33*******78`` wherever an E.164 number appears."""

    def mask(m: re.Match[str]) -> str:
        n = m.group()
        return n[:3] + "*" * (len(n) - 5) + n[-2:]

    return _E164.sub(mask, text)


def _short(value: Any, limit: int = 80) -> str:
    """``value`` as compact JSON, numbers masked, then cut to ``limit`` characters."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    text = mask_numbers(text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(event: ControlEvent) -> tuple[str, str]:
    d = event.data
    kind = event.type
    if kind in ("call.started", "call.ringing"):
        verb = "rings the softphone" if kind == "call.ringing" else "started"
        who = f"{d.get('from') or 'BLOCKED'} -> {d.get('to')}"
        live = ", softphone" if d.get("live") else ""
        return "CALL", f"{verb}: {d.get('direction')} {who} (app {d.get('app')}{live})"
    if kind == "post":
        return "POST", str(d.get("text", ""))
    if kind == "reply":
        tag = "REPLY" if d.get("status") is None else f"REPLY {d['status']}"
        if d.get("timeout"):
            return tag, "no reply in time"
        timing = ""
        if d.get("latency_ms") is not None:
            timing = f"{d['latency_ms']:.0f} ms"
            if not d.get("ignored"):
                timing += f", {d['margin_ms']:.0f} ms to spare"
        role = f" [{d['role']}]" if d.get("role") not in (None, "command") else ""
        ignored = " [ignored]" if d.get("ignored") else ""
        return tag, f"({timing}){role}{ignored} {d.get('text', '')}"
    if kind == "command.started":
        return "RUN", f"{d.get('command')} {_short(d.get('params') or {})}"
    if kind == "command.ended":
        error = f" error={_short(d.get('error'))}" if d.get("error") else ""
        return "RESULT", f"{d.get('command')} -> {_short(d.get('result'))}{error}"
    if kind == "call.ended":
        text = f"ended by {d.get('ended_by')}"
        if "posts" in d:
            text += (
                f" after {d.get('duration', 0):.1f}s, {d['posts']} POSTs, "
                f"{d.get('hangup_count')} HANGUP, {len(d.get('errors', []))} errors"
            )
        return "ENDED", text
    tags = {"break": "BREAK", "callee": "CALLEE", "platform": "PLATFORM", "error": "ERROR"}
    return tags.get(kind, kind.upper()), str(d.get("text", ""))


def format_event(event: ControlEvent) -> Text:
    """``call 1000   0.42s  REPLY 200  (12 ms, 4988 ms to spare) read#1 ...``"""
    tag, detail = _describe(event)
    line = Text(f"call {event.callid} {event.at:7.2f}s  ", style="dim")
    line.append(f"{tag:<10}", style=_STYLE.get(event.type, ""))
    line.append(" " + mask_numbers(detail))
    return line


async def print_events(bus: EventBus, console: Console) -> None:
    """Print every event of ``bus`` from now on, until cancelled.

    A thread writes the lines: a terminal or pipe that is slow to read (or never read)
    must not stall the emulator's event loop, and so its calls.
    """
    lines: queue.SimpleQueue[Text | None] = queue.SimpleQueue()

    def write() -> None:
        while (line := lines.get()) is not None:
            console.print(line, soft_wrap=True, highlight=False)

    threading.Thread(target=write, name="rtcontrol-transcripts", daemon=True).start()
    try:
        with bus.subscribe() as sub:
            async for event in sub:
                lines.put(format_event(event))
    finally:
        lines.put(None)
