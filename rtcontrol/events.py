"""Typed call events: what the engine did, for metrics, logs and later subscribers.

The engine emits one event per thing that happened (a callback answered, a caller
put on hold, a slow handler's command delivered, an interrupt, a call ended,
``on_hangup`` done). Metrics and the callback log subscribe to them; a recorder,
a dashboard or a campaign runner subscribes the same way::

    app.events.subscribe(lambda event: print(event))

Subscribers run synchronously on the event loop and must be quick; an exception in
one is logged and never reaches the call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CallHeld",
    "CallInterrupted",
    "CallStarted",
    "CallTerminated",
    "CallbackAnswered",
    "CommandDelivered",
    "Disposition",
    "Event",
    "EventBus",
    "HangupHandled",
    "HoldReason",
]

_log = logging.getLogger("rtcontrol.app")


class Disposition(StrEnum):
    """How one callback was answered (the ``outcome`` label of the metrics)."""

    #: A handler's command.
    REPLY = "reply"
    #: A copy of the report already answered: the original reply, byte for byte.
    DUPLICATE = "duplicate"
    #: A report for a command the call no longer runs: nothing ran, nothing changed.
    STALE = "stale"
    #: The caller was put on hold while a slow handler finishes.
    HOLD = "hold"
    #: A slow handler's command, delivered when its hold ended or was broken.
    DELIVERED = "delivered"
    #: An interrupt's action replaced the broken command.
    INTERRUPT = "interrupt"
    #: The fallback command (a handler failed, or nothing can answer).
    FALLBACK = "fallback"
    #: The store had forgotten the call: resumed from the echoed ``command_id``.
    RECOVERED = "recovered"
    #: The store was not ready: a short hold whose ``variables`` carry the report.
    REPLAY = "replay"
    #: The call ended; ``on_hangup`` runs after the reply.
    HANGUP = "hangup"
    #: A callback of a call that has already ended: ``{}``.
    IGNORED = "ignored"
    #: A terminal event that could not be made durable: 503, kept for retry.
    REFUSED = "refused"


class HoldReason(StrEnum):
    SLOW_HANDLER = "slow_handler"
    STORE = "store"
    BINDING = "binding"


@dataclass(frozen=True, slots=True)
class CallStarted:
    """A call's first callback was routed to ``flow`` (``recovered``: the store had
    forgotten the call and it resumed from the echoed ``command_id``)."""

    callid: int
    flow: str
    outbound: bool
    recovered: bool = False


@dataclass(frozen=True, slots=True)
class CallbackAnswered:
    """One callback answered. ``seconds``: from receipt to reply ready.

    ``request_hash``: the request hash ``calls.realtime`` returned, on the first callback
    of an outbound call only (``None`` otherwise), so a log reader can match the hash
    ``rtcontrol call`` printed to the callid.
    """

    callid: int
    command_id: int | str
    step: str
    status: str
    disposition: Disposition
    seconds: float
    request_hash: str | None = None


@dataclass(frozen=True, slots=True)
class CallHeld:
    """The caller hears the hold command; ``step`` is the handler still running."""

    callid: int
    step: str
    reason: HoldReason


@dataclass(frozen=True, slots=True)
class CommandDelivered:
    """A slow handler finished behind a hold; ``via_break``: a break ended the hold."""

    callid: int
    command: str
    via_break: bool


@dataclass(frozen=True, slots=True)
class CallInterrupted:
    """``interrupt()`` recorded an action for the command ``target``; ``broke``: the
    platform confirmed a command was stopped."""

    callid: int
    target: int | str | None
    broke: bool


@dataclass(frozen=True, slots=True)
class CallTerminated:
    """The call's terminal event was recorded. ``answered``: it ran at least one
    command (False for an outbound call that was busy, unanswered, ...)."""

    callid: int
    flow: str
    status: str
    answered: bool


@dataclass(frozen=True, slots=True)
class HangupHandled:
    """``on_hangup`` finished (``ok``) or failed; ``attempt`` > 1 after a crash."""

    callid: int
    flow: str
    ok: bool
    attempt: int


Event = (
    CallStarted
    | CallbackAnswered
    | CallHeld
    | CommandDelivered
    | CallInterrupted
    | CallTerminated
    | HangupHandled
)
Subscriber = Callable[[Event], None]


class EventBus:
    """Fan-out of events to subscribers, in subscription order."""

    __slots__ = ("_subscribers",)

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns a function that removes it."""
        self._subscribers = (*self._subscribers, subscriber)

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not subscriber)

        return unsubscribe

    def emit(self, event: Event) -> None:
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                _log.exception("event subscriber %r failed on %s", subscriber, type(event).__name__)
