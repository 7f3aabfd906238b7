"""In-process store: the default, for one worker, tests and the emulator demo.

Values are kept as JSON text, which copies them and keeps the memory per call
small. Expired keys are dropped when read and by a sweep that runs at most every
``sweep_interval`` seconds during normal traffic, so nothing outlives its TTL
for long and no background task is needed. Lock entries exist only while held
or awaited. Indexes are dicts of member -> score with one TTL each, sorted when read
(they hold the calls of one process: small).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable

from ..errors import StoreError
from .base import (
    JSON,
    LockToken,
    Store,
    check_score,
    check_seconds,
    dumps,
    loads,
    lock_timeout,
)

__all__ = ["MemoryStore"]


class _Lock:
    __slots__ = ("changed", "expires", "token", "waiters")

    def __init__(self) -> None:
        self.token: str | None = None
        self.expires = 0.0
        self.waiters = 0
        self.changed: asyncio.Event | None = None


class MemoryStore(Store):
    """Dict-backed :class:`Store`. Not shared between processes: use Redis for that."""

    shared = False
    bounded = True

    def __init__(
        self, *, sweep_interval: float = 30.0, clock: Callable[[], float] = time.monotonic
    ):
        self._data: dict[str, tuple[float, str]] = {}
        self._locks: dict[str, _Lock] = {}
        self._indexes: dict[str, tuple[float, dict[str, float]]] = {}
        self._clock = clock
        self._sweep_interval = sweep_interval
        self._next_sweep = clock() + sweep_interval

    def __len__(self) -> int:
        """Live keys (for tests and leak checks)."""
        self._sweep(force=True)
        return len(self._data)

    @property
    def lock_count(self) -> int:
        return len(self._locks)

    @property
    def index_count(self) -> int:
        """Live indexes (for tests and leak checks)."""
        self._sweep(force=True)
        return len(self._indexes)

    def _sweep(self, *, force: bool = False) -> None:
        now = self._clock()
        if not force and now < self._next_sweep:
            return
        self._next_sweep = now + self._sweep_interval
        dead = [k for k, (exp, _) in self._data.items() if exp <= now]
        for k in dead:
            del self._data[k]
        for k in [k for k, (exp, _) in self._indexes.items() if exp <= now]:
            del self._indexes[k]
        # Locks whose holder never released them (a crashed task) and nobody awaits.
        stale = [k for k, lk in self._locks.items() if lk.waiters == 0 and lk.expires <= now]
        for k in stale:
            del self._locks[k]

    def _read(self, key: str) -> str | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._data[key]
            return None
        return item[1]

    async def get(self, key: str) -> JSON | None:
        raw = self._read(key)
        return None if raw is None else loads(raw)

    async def set(self, key: str, value: JSON, *, ttl: float) -> None:
        self._sweep()
        self._data[key] = (self._clock() + ttl, dumps(value))

    async def update(
        self, key: str, fn: Callable[[JSON | None], JSON | None], *, ttl: float
    ) -> JSON | None:
        raw = self._read(key)
        new = fn(None if raw is None else loads(raw))
        if new is None:
            self._data.pop(key, None)
            return None
        text = dumps(new)
        self._data[key] = (self._clock() + ttl, text)
        return loads(text)

    async def delete(self, *keys: str) -> None:
        for key in keys:
            self._data.pop(key, None)

    async def acquire(self, key: str, *, lease: float, wait: float) -> LockToken:
        token = secrets.token_hex(8)
        deadline = self._clock() + wait
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = _Lock()
        lock.waiters += 1
        try:
            while True:
                now = self._clock()
                if lock.token is None or lock.expires <= now:
                    lock.token, lock.expires = token, now + lease
                    return token
                remaining = min(deadline, lock.expires) - now
                if deadline <= now:
                    raise lock_timeout(key, wait)
                if lock.changed is None:
                    lock.changed = asyncio.Event()
                changed = lock.changed
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=max(remaining, 0.001))
                if lock.changed is changed and changed.is_set():
                    lock.changed = None
        finally:
            lock.waiters -= 1
            if lock.waiters == 0 and lock.token is None:
                self._locks.pop(key, None)

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        """Write only while ``token`` still holds the lock, as the Redis store does.

        A holder whose lease ran out may have been overtaken by another worker: its
        write could erase theirs, so it is refused with :class:`StoreError`.
        """
        lock = self._locks.get(lock_key)
        if lock is None or lock.token != token or lock.expires <= self._clock():
            await self.release(lock_key, token)
            raise StoreError(f"lock {lock_key!r} lease expired before the write")
        try:
            if value is None:
                self._data.pop(key, None)
            else:
                await self.set(key, value, ttl=ttl)
        finally:
            await self.release(lock_key, token)

    async def release(self, key: str, token: LockToken) -> bool:
        lock = self._locks.get(key)
        if lock is None or lock.token != token:
            return False
        held = lock.expires > self._clock()
        lock.token = None
        if lock.changed is not None:
            lock.changed.set()
        if lock.waiters == 0:
            del self._locks[key]
        return held

    async def renew(self, key: str, token: LockToken, *, lease: float) -> bool:
        check_seconds("lease", lease)
        lock = self._locks.get(key)
        now = self._clock()
        if lock is None or lock.token != token or lock.expires <= now:
            return False
        lock.expires = now + lease
        return True

    # ------------------------------------------------------------------ indexes

    def _index(self, index: str) -> dict[str, float] | None:
        item = self._indexes.get(index)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._indexes[index]
            return None
        return item[1]

    async def index_add(self, index: str, member: str, score: float, *, ttl: float) -> None:
        check_score("score", score)
        check_seconds("ttl", ttl)
        self._sweep()
        members = self._index(index) or {}
        members[member] = float(score)
        self._indexes[index] = (self._clock() + ttl, members)

    async def index_remove(self, index: str, *members: str) -> None:
        entries = self._index(index)
        if entries is None:
            return
        for member in members:
            entries.pop(member, None)
        if not entries:  # Redis drops an empty sorted set
            del self._indexes[index]

    async def index_range(
        self, index: str, low: float, high: float, *, limit: int = 100
    ) -> list[tuple[str, float]]:
        check_score("low", low)
        check_score("high", high)
        entries = self._index(index)
        if entries is None or limit <= 0:
            return []
        hits = sorted((score, member) for member, score in entries.items() if low <= score <= high)
        return [(member, score) for score, member in hits[:limit]]
