"""From one call's transcript to typed events on the bus, as they happen.

A :class:`CallFeed` listens to a :class:`Transcript` (``Transcript.listeners``) and
publishes what each line means: the POST, the reply with its latency and what was left
of the reply deadline, the command the platform starts (with its parameters and the
text a softphone should speak), its result (from the next POST), breaks, callee
actions, errors. The emulator publishes ``call.ended`` when the call is over.
"""

from __future__ import annotations

import re
from typing import Any

from .bus import EventBus, EventType
from .live import LiveLine
from .transcript import Event, Transcript

__all__ = ["CallFeed", "reply_role", "spoken"]

_RUN = re.compile(r"run (\S+) #")
_TTS = re.compile(r"TTS\|TTS_([A-Z]{2})-([A-Z]{2})_[A-Z0-9]+\|(.*)", re.S)

#: Parameters that carry media a caller hears, in the order they play.
_MEDIA_PARAMS = ("welcome", "announce", "media_id", "pin_prompt", "whisper")


def spoken(params: Any) -> list[dict[str, str]]:
    """What a caller hears from a command's parameters: ``[{"text", "lang"}]``.

    TTS strings give their text and language (``TTS_EN-GB_SERENA`` -> ``en-GB``);
    media ids are shown as ``[media 12]`` with no language.
    """
    if not isinstance(params, dict):
        return []
    found: list[dict[str, str]] = []
    for key in _MEDIA_PARAMS:
        value = params.get(key)
        if isinstance(value, str) and (m := _TTS.fullmatch(value)):
            found.append({"text": m.group(3), "lang": f"{m.group(1).lower()}-{m.group(2)}"})
        elif isinstance(value, int) and not isinstance(value, bool) and value:
            found.append({"text": f"[media {value}]", "lang": ""})
    return found


def reply_role(command_id: Any) -> str:
    """``hold`` or ``fallback`` for rtcontrol's own stand-in replies, else ``command``."""
    if isinstance(command_id, str):
        if command_id.endswith(":@hold"):
            return "hold"
        if command_id.endswith(":@bye"):
            return "fallback"
    return "command"


class CallFeed:
    """Turns one call's transcript events into bus events."""

    def __init__(
        self,
        bus: EventBus,
        transcript: Transcript,
        *,
        reply_timeout: float,
        line: LiveLine | None = None,
    ) -> None:
        self.bus = bus
        self.callid = transcript.callid
        self._reply_timeout = reply_timeout
        self._line = line
        self._last_reply: dict[str, Any] = {}
        self._running: tuple[str, Any] | None = None
        transcript.listeners.append(self)

    def _publish(self, type_: EventType, at: float, data: dict[str, Any]) -> None:
        self.bus.publish(type_, self.callid, at, data)

    def __call__(self, transcript: Transcript, event: Event) -> None:
        handler = {
            "request": self._request,
            "reply": self._reply,
            "platform": self._platform,
        }.get(event.kind)
        if handler is not None:
            handler(event)
        else:
            self._publish(
                "error" if event.kind == "error" else "callee", event.at, {"text": event.text}
            )

    def _request(self, event: Event) -> None:
        body = event.data if isinstance(event.data, dict) else {}
        if self._running is not None:
            name, command_id = self._running
            self._running = None
            if self._line is not None:
                self._line.command_ended()
            self._publish(
                "command.ended",
                event.at,
                {
                    "command": name,
                    "command_id": command_id,
                    "result": body.get("command_result", ""),
                    "error": body.get("command_error", ""),
                    "hangup": body.get("call_status") == "HANGUP",
                },
            )
        self._publish(
            "post",
            event.at,
            {
                "call_status": body.get("call_status"),
                "command": body.get("command"),
                "command_id": body.get("command_id"),
                "result": body.get("command_result"),
                "error": body.get("command_error"),
                "variables": body.get("variables"),
                "text": event.text,
                "body": body,
            },
        )

    def _reply(self, event: Event) -> None:
        body = event.data if isinstance(event.data, dict) else None
        latency = event.latency
        margin = None if latency is None else (self._reply_timeout - latency) * 1000
        data: dict[str, Any] = {
            "status": event.status,
            "latency_ms": None if latency is None else round(latency * 1000, 1),
            "deadline_ms": round(self._reply_timeout * 1000),
            "margin_ms": None if margin is None else round(margin, 1),
            "timeout": body is None and event.status is None and not event.ignored,
            "ignored": event.ignored,
            "text": event.text,
            "command": None,
            "command_id": None,
            "params": None,
            "variables": None,
            "role": "command",
            "body": event.data,
        }
        if body is not None:
            command_id = body.get("command_id")
            data.update(
                command=body.get("command"),
                command_id=command_id,
                params=body.get("params"),
                variables=body.get("variables"),
                role=reply_role(command_id),
            )
            if not event.ignored:
                self._last_reply = body
        self._publish("reply", event.at, data)

    def _platform(self, event: Event) -> None:
        if (m := _RUN.match(event.text)) and event.data == m.group(1):
            name = m.group(1)
            reply = self._last_reply if self._last_reply.get("command") == name else {}
            params = reply.get("params")
            command_id = reply.get("command_id")
            self._running = (name, command_id)
            if self._line is not None:
                self._line.command_started(name)
            self._publish(
                "command.started",
                event.at,
                {
                    "command": name,
                    "command_id": command_id,
                    "params": params,
                    "say": spoken(params),
                    "role": reply_role(command_id),
                },
            )
            return
        if event.text.startswith("calls.realtime_break interrupts"):
            self._publish("break", event.at, {"text": event.text, "command": self._current()})
            return
        self._publish("platform", event.at, {"text": event.text})

    def _current(self) -> str | None:
        return self._running[0] if self._running else None
