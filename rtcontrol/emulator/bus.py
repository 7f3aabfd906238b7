"""The emulator's live event stream: a small typed publish/subscribe bus.

Every call's transcript feeds it (see :mod:`rtcontrol.emulator.control`); the control
API streams it over SSE, ``rtcontrol emulator`` prints it, the dev page draws it.
Events are numbered (``seq``, from 1) and the last ``history`` of them are kept, so a
late subscriber can replay what it missed (``since``) before it gets the live ones.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = ["EVENT_TYPES", "ControlEvent", "EventBus", "EventType", "Subscription"]

#: What the stream carries (the README's control API section describes each).
EventType = Literal[
    "call.ringing",  # an outbound call rings the softphone (a live callee)
    "call.started",  # a call exists: inbound placed, or outbound dialed / answered
    "post",  # the platform POSTed a callback to the app
    "reply",  # the app's reply: status, latency, deadline margin
    "command.started",  # the platform runs a command (its parameters, text to speak)
    "command.ended",  # its result and error, as the next POST reports them
    "break",  # calls.realtime_break stopped the running command
    "callee",  # the person on the line did something (keys, speech, hang-up)
    "platform",  # another platform decision (retries, notes)
    "error",  # a protocol violation or webhook failure
    "call.ended",  # the call is over: who ended it, how long it took
]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)


@dataclass(frozen=True)
class ControlEvent:
    """One event of the stream; ``at`` is virtual seconds since the call started."""

    seq: int
    type: EventType
    callid: int
    at: float
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "type": self.type,
            "callid": self.callid,
            "at": round(self.at, 3),
            "data": self.data,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ControlEvent:
        """The event :meth:`to_json` gave (one SSE ``data`` line); ``ValueError`` for an
        unknown ``type``, ``KeyError`` when a key is missing."""
        if data["type"] not in EVENT_TYPES:
            raise ValueError(f"unknown event type {data['type']!r}")
        return cls(
            seq=int(data["seq"]),
            type=data["type"],
            callid=int(data["callid"]),
            at=float(data["at"]),
            data=dict(data.get("data") or {}),
        )


class Subscription:
    """An async iterator of events (optionally of one call); close it when done."""

    def __init__(self, bus: EventBus, callid: int | None) -> None:
        self._bus = bus
        self.callid = callid
        self._queue: asyncio.Queue[ControlEvent | None] = asyncio.Queue()
        #: True once closed (by its owner, or by :meth:`EventBus.close`).
        self.closed = False

    def _offer(self, event: ControlEvent) -> None:
        if self.callid is None or event.callid == self.callid:
            self._queue.put_nowait(event)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._subscribers.discard(self)
        self._queue.put_nowait(None)

    async def get(self, within: float | None = None) -> ControlEvent | None:
        """The next event; ``None`` once closed, or when ``within`` seconds pass."""
        try:
            return await asyncio.wait_for(self._queue.get(), within)
        except TimeoutError:
            return None

    def __aiter__(self) -> AsyncIterator[ControlEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ControlEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class EventBus:
    """Publish :class:`ControlEvent` objects to every subscriber, in order."""

    def __init__(self, history: int = 20_000) -> None:
        self._seq = itertools.count(1)
        self.history: deque[ControlEvent] = deque(maxlen=history)
        self._subscribers: set[Subscription] = set()

    def publish(
        self, type_: EventType, callid: int, at: float, data: dict[str, Any] | None = None
    ) -> ControlEvent:
        event = ControlEvent(next(self._seq), type_, callid, at, data or {})
        self.history.append(event)
        for subscriber in list(self._subscribers):
            subscriber._offer(event)
        return event

    def subscribe(self, callid: int | None = None, since: int | None = None) -> Subscription:
        """Events from now on; with ``since``, first the kept ones whose seq is larger.

        Replay and live events never overlap or leave a gap: both happen in one step of
        the event loop.
        """
        sub = Subscription(self, callid)
        if since is not None:
            for event in self.history:
                if event.seq > since:
                    sub._offer(event)
        self._subscribers.add(sub)
        return sub

    def close(self) -> None:
        """End every subscription (the emulator is closing): their iterators stop."""
        for subscriber in list(self._subscribers):
            subscriber.close()

    def events(self, callid: int | None = None) -> list[ControlEvent]:
        """The kept events (of one call)."""
        return [e for e in self.history if callid is None or e.callid == callid]
