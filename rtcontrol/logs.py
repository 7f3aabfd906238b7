"""Loggers and the one-line-per-callback record.

Loggers: ``rtcontrol.callback`` (one INFO line per callback; the first callback of an
outbound call adds ``request_hash=``), ``rtcontrol.handler`` (handler errors, with
traceback), ``rtcontrol.app`` (start-up, configuration, interrupts, refused callbacks).
Credentials and request bodies are never logged; phone numbers are not logged either,
only call ids and request hashes.
"""

from __future__ import annotations

import logging

from .events import CallbackAnswered, Event

__all__ = ["app_log", "callback_log", "handler_log", "log_event"]

callback_log = logging.getLogger("rtcontrol.callback")
handler_log = logging.getLogger("rtcontrol.handler")
app_log = logging.getLogger("rtcontrol.app")


def log_callback(
    callid: int,
    command_id: int | str,
    step: str,
    status: str,
    outcome: str,
    handler_ms: float,
    request_hash: str | None = None,
) -> None:
    """The one line of a callback; ``request_hash`` (first callback of an outbound call)
    is appended as ``request_hash=...`` so the hash ``rtcontrol call`` printed leads to
    the callid."""
    if not callback_log.isEnabledFor(logging.INFO):
        return
    extra: dict[str, object] = {
        "callid": callid,
        "command_id": command_id,
        "step": step,
        "status": status,
        "outcome": outcome,
        "handler_ms": round(handler_ms, 3),
    }
    line = "callback callid=%s command_id=%s step=%s status=%s outcome=%s handler_ms=%.1f"
    args: tuple[object, ...] = (callid, command_id, step, status, outcome, handler_ms)
    if request_hash is not None:
        line += " request_hash=%s"
        args += (request_hash,)
        extra["request_hash"] = request_hash
    callback_log.info(line, *args, extra=extra)


def log_event(event: Event) -> None:
    """An event subscriber: one line per callback answered."""
    if isinstance(event, CallbackAnswered):
        log_callback(
            event.callid,
            event.command_id,
            event.step,
            event.status,
            event.disposition.value,
            event.seconds * 1000,
            event.request_hash,
        )
