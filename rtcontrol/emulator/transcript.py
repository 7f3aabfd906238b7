"""What happened on one emulated call, in order, for assertions and for people.

Every POST, every reply (with its real latency), every callee action and platform
decision is an :class:`Event` stamped with the call's virtual time. The properties
(``commands``, ``requests``, ``hangup_count``, ``said``, ``ran``...) are what tests
assert on; :meth:`Transcript.render` is what a failing test prints.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from rich.table import Table
from rich.text import Text

from rtcontrol.commands import Command, from_wire

__all__ = ["SPOKEN", "Event", "EventKind", "Listener", "Transcript"]

#: The commands whose ``media_id`` the caller hears, in :attr:`Transcript.said`.
SPOKEN = frozenset({"play", "read", "play_talk_detect"})

EventKind = Literal["request", "reply", "callee", "platform", "error"]

_STYLE: dict[str, str] = {
    "request": "cyan",
    "reply": "green",
    "callee": "magenta",
    "platform": "yellow",
    "error": "bold red",
}
_TAG: dict[str, str] = {
    "request": "POST",
    "reply": "REPLY",
    "callee": "CALLEE",
    "platform": "PLATFORM",
    "error": "ERROR",
}


@dataclass(frozen=True)
class Event:
    """One line of a transcript.

    ``data`` is the JSON body for requests and replies (``None`` when a reply had no usable
    body); ``latency`` is the real seconds a reply took; ``ignored`` marks the reply to the
    final HANGUP POST, which the platform discards.
    """

    at: float
    kind: EventKind
    text: str
    data: Any = None
    status: int | None = None
    latency: float | None = None
    ignored: bool = False

    def to_json(self) -> dict[str, Any]:
        """The event as JSON-ready data (what the control API returns); ``data`` is the
        event's own (not a copy): serialise it, do not change it."""
        return {
            "at": self.at,
            "kind": self.kind,
            "text": self.text,
            "data": self.data,
            "status": self.status,
            "latency": self.latency,
            "ignored": self.ignored,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Event:
        """The event :meth:`to_json` gave (``KeyError``/``TypeError`` when it is not one)."""
        return cls(
            at=data["at"],
            kind=data["kind"],
            text=data["text"],
            data=data.get("data"),
            status=data.get("status"),
            latency=data.get("latency"),
            ignored=data.get("ignored", False),
        )


#: Called with each event as it is added (the control API's live stream hooks in here).
Listener = Callable[["Transcript", Event], None]


def _short(value: Any, limit: int = 90) -> str:
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_request(body: dict[str, Any]) -> str:
    parts = [str(body.get("call_status"))]
    if body.get("command") or body.get("command_id"):
        parts.append(f"{body.get('command')}#{_short(body.get('command_id'))}")
    parts.append(f"result={_short(body.get('command_result'))}")
    if body.get("command_error"):
        parts.append(f"error={_short(body.get('command_error'))}")
    if body.get("variables"):
        parts.append(f"vars={_short(body.get('variables'), 60)}")
    return " ".join(parts)


def describe_reply(body: Any, status: int | None = None) -> str:
    """One line for a reply: its command (``read#"ask" {...}``), or what it was instead
    (``HTTP 401, not a command``; ``not a command: {...}`` for JSON without one)."""
    if status is not None and status != 200:
        return f"HTTP {status}, not a command"
    if not isinstance(body, dict):
        return f"not a command: {_short(body)}"
    if not body:
        return "{}"
    if "command" not in body:
        return f"not a command: {_short(body)}"
    text = f"{body.get('command')}#{_short(body.get('command_id'))}"
    if body.get("params"):
        text += f" {_short(body.get('params'))}"
    if body.get("variables"):
        text += f" vars={_short(body.get('variables'), 60)}"
    return text


def describe_raw_reply(status: int, content: bytes) -> str:
    """One line for a reply whose body is not JSON (or is empty): ``HTTP 401, not
    JSON``, ``(empty)``; never the body itself."""
    if not content.strip():
        return "(empty)" if status == 200 else f"HTTP {status}, empty"
    return f"HTTP {status}, not JSON"


@dataclass
class Transcript:
    """The record of one call (or one broadcast, which has no webhook traffic)."""

    callid: int
    app: str
    direction: Literal["inbound", "outbound", "broadcast"]
    number: str
    cli_number: str = ""
    request_hash: str | None = None
    events: list[Event] = field(default_factory=list)
    #: How the call ended: ``app`` (hangup command), ``callee``, ``api`` (calls.hangup),
    #: ``hangup_callid``, ``bridge``, ``webhook``, ``invalid_command``, ``unanswered``,
    #: ``cancel``, ``max_duration``, ``max_commands``, ``shutdown``, ``completed``.
    ended_by: str = ""
    #: Virtual seconds from the call's start to its end (from the control API, while the
    #: call runs: the seconds so far).
    duration: float = 0.0
    #: Called with each new event, in order, right after it is recorded.
    listeners: list[Listener] = field(default_factory=list, repr=False, compare=False)

    def add(self, event: Event) -> None:
        self.events.append(event)
        for listener in list(self.listeners):
            listener(self, event)

    def to_json(self) -> dict[str, Any]:
        """The whole record as JSON-ready data, with its plain-text rendering."""
        return {
            "callid": self.callid,
            "app": self.app,
            "direction": self.direction,
            "number": self.number,
            "cli_number": self.cli_number,
            "request_hash": self.request_hash,
            "ended_by": self.ended_by,
            "duration": self.duration,
            "hangup_count": self.hangup_count,
            "commands": self.commands,
            "executed": self.executed,
            "errors": self.errors,
            "events": [e.to_json() for e in self.events],
            "text": self.render(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Transcript:
        """The transcript :meth:`to_json` gave (what ``GET /control/v1/calls/{id}/transcript``
        answers): every field back, events included, equal to the original
        (``from_json(t.to_json()) == t``); the derived keys (``commands``, ``text``...)
        are recomputed, not read. No listeners. ``KeyError``/``TypeError`` when ``data``
        is not such a record."""
        return cls(
            callid=data["callid"],
            app=data["app"],
            direction=data["direction"],
            number=data["number"],
            cli_number=data.get("cli_number", ""),
            request_hash=data.get("request_hash"),
            events=[Event.from_json(e) for e in data.get("events", ())],
            ended_by=data.get("ended_by", ""),
            duration=data.get("duration", 0.0),
        )

    @property
    def ended(self) -> bool:
        return bool(self.ended_by)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every RT.Request body POSTed, in order (retries included)."""
        return [e.data for e in self.events if e.kind == "request"]

    @property
    def replies(self) -> list[Any]:
        """Every reply body the app sent (``None`` for a timeout or unreadable body)."""
        return [e.data for e in self.events if e.kind == "reply"]

    @property
    def latencies(self) -> list[float]:
        """Real seconds each reply took (timeouts count as the full wait)."""
        return [e.latency for e in self.events if e.kind == "reply" and e.latency is not None]

    @property
    def commands(self) -> list[Any]:
        """The ``command`` of each reply that was acted on (accepted or refused)."""
        return [
            e.data.get("command")
            for e in self.events
            if e.kind == "reply" and not e.ignored and isinstance(e.data, dict)
        ]

    @property
    def executed(self) -> list[str]:
        """Names of the commands actually run, ``hangup`` included."""
        return [e.data for e in self.events if e.kind == "platform" and e.text.startswith("run ")]

    @property
    def ran(self) -> list[Command]:
        """The commands the platform ran, in order, as :class:`~rtcontrol.Command` objects.

        Same length and order as :attr:`executed` (``hangup`` included; replies the
        platform refused are not there). Each is rebuilt from its reply with
        :func:`rtcontrol.commands.from_wire`, so it equals the builder's command; its
        ``step`` is always ``None`` (compare with ``read(...)``, not
        ``read(...).then(x)``). On a running call: the commands run so far.
        """
        commands: list[Command] = []
        reply: dict[str, Any] | None = None
        for event in self.events:
            if event.kind == "reply" and not event.ignored:
                reply = event.data if isinstance(event.data, dict) else None
            elif event.kind == "platform" and event.text.startswith("run ") and reply is not None:
                if reply.get("command") == event.data:
                    commands.append(from_wire(reply.get("command"), reply.get("params") or {}))
                reply = None
        return commands

    @property
    def said(self) -> list[str]:
        """The text of every TTS prompt the caller heard, in order.

        The ``media_id`` of each ``play``, ``read`` and ``play_talk_detect`` that ran (the
        fallback's apology included), when it is a ``TTS|voice|text`` string: ``text``
        only. Recorded media (numeric ids) are not text and are skipped: see :attr:`ran`.
        """
        texts: list[str] = []
        for command in self.ran:
            media = command.params.get("media_id") if command.name in SPOKEN else None
            if isinstance(media, str) and media.startswith("TTS|"):
                texts.append(media.split("|", 2)[2])
        return texts

    @property
    def hangup_count(self) -> int:
        return sum(1 for r in self.requests if r.get("call_status") == "HANGUP")

    @property
    def final_status(self) -> str:
        """``call_status`` of the last POST, or the outcome when nothing was POSTed."""
        requests = self.requests
        if requests:
            return str(requests[-1].get("call_status"))
        return self.ended_by.upper() or "PENDING"

    @property
    def errors(self) -> list[str]:
        """Protocol violations and webhook failures the platform saw."""
        return [e.text for e in self.events if e.kind == "error"]

    @property
    def callee_events(self) -> list[str]:
        return [e.text for e in self.events if e.kind == "callee"]

    def _header(self) -> str:
        way = {"inbound": "inbound", "outbound": "outbound", "broadcast": "broadcast"}
        text = f"Call {self.callid} ({way[self.direction]}) app {self.app or '-'}"
        if self.request_hash:
            text += f" request {self.request_hash}"
        return text + f", {self.cli_number or 'BLOCKED'} -> {self.number}"

    def _footer(self) -> str:
        state = f"ended by {self.ended_by}" if self.ended else "still running"
        errors = len(self.errors)
        return (
            f"{state} after {self.duration:.1f}s, {len(self.requests)} POSTs, "
            f"{self.hangup_count} HANGUP, {errors} error{'s' if errors != 1 else ''}"
        )

    def _line(self, event: Event) -> str:
        latency = f" ({event.latency * 1000:.0f} ms)" if event.latency is not None else ""
        status = f" {event.status}" if event.status is not None else ""
        ignored = " [ignored]" if event.ignored else ""
        return f"{_TAG[event.kind]:<8}{status}{latency}{ignored} {event.text}"

    def render(self) -> str:
        """Plain text, one line per event, for logs and assertion messages."""
        lines = [self._header()]
        lines += [f"{e.at:8.2f}s  {self._line(e)}" for e in self.events]
        lines.append(self._footer())
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.render()

    def __rich__(self) -> Table:
        table = Table(title=self._header(), caption=self._footer(), show_lines=False)
        table.add_column("t (s)", justify="right", style="dim")
        table.add_column("what")
        table.add_column("detail", overflow="fold")
        for e in self.events:
            what = _TAG[e.kind]
            if e.status is not None:
                what += f" {e.status}"
            if e.latency is not None:
                what += f" {e.latency * 1000:.0f}ms"
            if e.ignored:
                what += " ignored"
            table.add_row(f"{e.at:.2f}", Text(what, style=_STYLE[e.kind]), Text(e.text))
        return table
