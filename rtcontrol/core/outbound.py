"""Outbound calls: binding a started call to its flow and data (fault kind K4).

``start_call`` learns the call's request hash only when ``calls.realtime``
answers, but the platform may POST the call's first callback before that. So:

1. ``start_call`` registers itself as *in flight* before it dials (in this process,
   and in the store's ``rtc:starting`` index when the store is shared);
2. once it has the hash, it writes the binding (flow, data) under ``rtc:req:<hash>``;
3. a first callback with no binding waits for it while any start is in flight, for
   as long as the deadline allows, then holds the caller and waits again, up to
   ``RTCONTROL_OUTBOUND_BIND_WAIT`` seconds in all. Only then does it run the default
   outbound flow, logged as an error (never silently).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any

from ..settings import Settings
from ..store import Store
from .keys import request_key, starts_key
from .ports import Clock

__all__ = ["Binding", "Bindings"]

#: Polling interval of a first callback waiting for a binding written by another worker.
POLL = 0.05


@dataclass(frozen=True, slots=True)
class Binding:
    flow: str
    data: dict[str, Any]


class Bindings:
    def __init__(self, store: Store, settings: Settings, clock: Clock) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self._local = 0
        self._changed = asyncio.Event()

    @asynccontextmanager
    async def starting(self) -> AsyncIterator[str]:
        """Marks one ``start_call`` as in flight for its whole duration."""
        token = secrets.token_hex(8)
        ttl = self.settings.outbound_bind_wait + 60.0
        self._local += 1
        try:
            if self.store.shared:
                await self.store.index_add(starts_key(), token, self.clock.wall() + ttl, ttl=ttl)
            yield token
        finally:
            self._local -= 1
            if self.store.shared:
                with suppress(Exception):
                    await self.store.index_remove(starts_key(), token)
            self._wake()

    async def bind(self, request_hash: str, flow: str, data: dict[str, Any]) -> None:
        await self.store.set(
            request_key(request_hash), {"flow": flow, "data": data}, ttl=self.settings.call_ttl
        )
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def take(self, request_hash: str) -> Binding | None:
        """The binding of ``request_hash``, if written. It is not deleted here: the engine
        deletes it once the call's record, which now holds the flow and data, is durable."""
        raw = await self.store.get(request_key(request_hash))
        if not isinstance(raw, dict):
            return None
        data = raw.get("data")
        return Binding(str(raw.get("flow")), dict(data) if isinstance(data, dict) else {})

    async def in_flight(self) -> bool:
        """Could a binding still be written? (a ``start_call`` runs here or elsewhere)"""
        if self._local > 0:
            return True
        if not self.store.shared:
            return False
        now = self.clock.wall()
        return bool(await self.store.index_range(starts_key(), now, float("inf"), limit=1))

    async def wait(self, request_hash: str, until: float) -> Binding | None:
        """Wait (loop time ``until``) for the binding while a start is in flight."""
        while True:
            binding = await self.take(request_hash)
            if binding is not None:
                return binding
            left = until - self.clock.monotonic()
            if left <= 0 or not await self.in_flight():
                return None
            changed = self._changed
            with suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), timeout=min(POLL, left))
