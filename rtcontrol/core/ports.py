"""What the engine needs from outside, and what it offers: small Protocols.

The engine never imports an HTTP client or a web framework. It talks to the
platform's API through :class:`CallControl` (the JSON-RPC client satisfies it
without importing this module) and reads time through :class:`Clock`, so engine
tests drive callbacks with a fake control and a fake clock and no HTTP at all.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..protocol import RTRequest

__all__ = ["CallControl", "CallbackHandler", "Clock", "Reply", "SystemClock"]


@runtime_checkable
class CallControl(Protocol):
    """The two API calls the engine makes on a live call (spec §3.3, §3.4)."""

    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """``calls.realtime_break``: stop the command the call runs; True if one was."""
        ...

    async def hangup(self, callid: int) -> bool:
        """``calls.hangup``: end the call."""
        ...


class Clock(Protocol):
    """Time as the engine sees it, in seconds.

    ``monotonic`` orders deadlines inside one process; ``wall`` is stored in
    records that other workers read (hold tickets, hang-up due times).
    """

    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """The real clock: the event loop's time and ``time.time``."""

    def monotonic(self) -> float:
        try:
            return asyncio.get_running_loop().time()
        except RuntimeError:
            return time.monotonic()

    def wall(self) -> float:
        return time.time()


@dataclass(frozen=True, slots=True)
class Reply:
    """The answer to one callback: an HTTP status and the exact JSON body bytes.

    ``status`` is 200 except when the engine must refuse to acknowledge an event
    it could not make durable (a HANGUP while the store is unreachable: 503, so a
    platform that retries gets another chance; the worker also keeps it).
    """

    body: bytes
    status: int = 200


class CallbackHandler(Protocol):
    """What an adapter serves: one RT.Request in, one :class:`Reply` out."""

    async def handle_callback(
        self, request: RTRequest, *, received_at: float | None = None
    ) -> Reply:
        """``received_at``: wall time (epoch seconds) the proxy received the callback
        (``X-Request-Start``), when known: the budget counts from then."""
        ...

    def safe_reply(self, request: RTRequest) -> Reply:
        """A reply built from the request alone, for when handling itself failed."""
        ...
