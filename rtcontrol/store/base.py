"""The store interface: the only place a call's server-side state lives.

Workers are stateless; everything a later callback needs is either echoed by the
platform (``command_id``, ``variables``) or kept here. The interface is small on
purpose: keyed JSON values with a TTL, an atomic update, a per-key lock with a
renewable lease, sorted indexes (member -> score, e.g. "calls whose on_hangup is due
at time T"), and two composite operations for the callback hot path (lock and read in
one round trip, write and unlock in one round trip) that a backend may implement
natively.

Values may be handed over already serialised, as :class:`Encoded` text: the engine
validates and serialises a record once and the store writes that text as is.
"""

from __future__ import annotations

import abc
import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..errors import LockTimeout

__all__ = ["JSON", "Encoded", "LockToken", "Store", "dumps", "loads"]

JSON = Any
LockToken = str

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)
_decoder = json.JSONDecoder()


@dataclass(frozen=True, slots=True)
class Encoded:
    """JSON text serialised once by the caller, written by the store as is.

    The text must be what :func:`dumps` would have produced (compact, no NaN): the
    store does not parse it again. Accepted wherever a value is (``set``,
    ``set_and_release``, the result of an ``update`` function); ``get`` returns the
    parsed value, as for any other write.
    """

    text: str


def dumps(value: JSON) -> str:
    """Compact JSON; NaN and Infinity are refused, as they would not survive a round trip.

    An :class:`Encoded` value is returned unchanged.
    """
    if type(value) is Encoded:
        return value.text
    return _encoder.encode(value)


def loads(raw: str | bytes) -> JSON:
    return _decoder.decode(raw.decode() if isinstance(raw, bytes) else raw)


class Store(abc.ABC):
    """Keyed JSON values with TTLs and per-key locks, shared by every worker.

    Values are JSON: stores copy on write and on read, so callers never share
    mutable objects with the store (the memory store behaves like Redis).
    Every write carries a TTL in seconds, so nothing is kept forever.
    """

    #: True when every worker process sees the same data (Redis); False for memory.
    shared: bool = False
    #: True when every operation bounds its own time (socket timeouts, lock waits), so
    #: the engine need not wrap each call in a timer of its own.
    bounded: bool = False

    @abc.abstractmethod
    async def get(self, key: str) -> JSON | None:
        """The value at ``key``, or None when absent or expired."""

    @abc.abstractmethod
    async def set(self, key: str, value: JSON, *, ttl: float) -> None:
        """Store ``value`` at ``key`` for ``ttl`` seconds."""

    @abc.abstractmethod
    async def update(
        self, key: str, fn: Callable[[JSON | None], JSON | None], *, ttl: float
    ) -> JSON | None:
        """Atomically replace the value with ``fn(old)``; ``fn`` returning None deletes it.

        Returns the new value. ``fn`` may run more than once (optimistic retries) and
        must not have side effects.
        """

    @abc.abstractmethod
    async def delete(self, *keys: str) -> None:
        """Remove the keys; absent keys are ignored."""

    @abc.abstractmethod
    async def acquire(self, key: str, *, lease: float, wait: float) -> LockToken:
        """Take the lock named ``key`` for at most ``lease`` seconds.

        Waits up to ``wait`` seconds, then raises :class:`LockTimeout`. The lease
        bounds how long a crashed holder can block a call.
        """

    @abc.abstractmethod
    async def release(self, key: str, token: LockToken) -> bool:
        """Release the lock if ``token`` still holds it; False if the lease ran out."""

    @abc.abstractmethod
    async def renew(self, key: str, token: LockToken, *, lease: float) -> bool:
        """Extend the lock to ``lease`` seconds from now if ``token`` still holds it.

        False when the lease already ran out or another holder has the lock; never
        takes a free lock. A holder renews a short lease while it works, so a crash
        frees the call quickly and a slow handler keeps it.
        """

    # -------------------------------------------------------------- indexes

    @abc.abstractmethod
    async def index_add(self, index: str, member: str, score: float, *, ttl: float) -> None:
        """Put ``member`` in the sorted index with ``score`` (replacing its old score).

        The whole index then lives ``ttl`` seconds from now (a TTL on the index, not on
        the member): the last add keeps it alive.
        """

    @abc.abstractmethod
    async def index_remove(self, index: str, *members: str) -> None:
        """Drop the members; absent members (and an absent index) are ignored."""

    @abc.abstractmethod
    async def index_range(
        self, index: str, low: float, high: float, *, limit: int = 100
    ) -> list[tuple[str, float]]:
        """At most ``limit`` ``(member, score)`` with ``low <= score <= high``, by score.

        Ties are ordered by member. ``low``/``high`` may be ``-inf``/``inf``.
        """

    async def acquire_and_get(
        self, lock_key: str, key: str, *, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        """Lock, then read: the first half of a callback. Backends may do it in one trip."""
        token = await self.acquire(lock_key, lease=lease, wait=wait)
        try:
            return token, await self.get(key)
        except BaseException:
            await self.release(lock_key, token)
            raise

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        """Write (or delete, for None), then unlock: the second half of a callback."""
        try:
            if value is None:
                await self.delete(key)
            else:
                await self.set(key, value, ttl=ttl)
        finally:
            await self.release(lock_key, token)

    @contextlib.asynccontextmanager
    async def lock(self, key: str, *, lease: float, wait: float) -> AsyncIterator[LockToken]:
        """``async with store.lock(key, lease=5, wait=1): ...``"""
        token = await self.acquire(key, lease=lease, wait=wait)
        try:
            yield token
        finally:
            await self.release(key, token)

    async def ping(self) -> None:  # noqa: B027 - optional hook
        """Raise :class:`~rtcontrol.errors.StoreUnavailable` if the store cannot be reached."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and background tasks."""


def lock_timeout(key: str, wait: float) -> LockTimeout:
    return LockTimeout(f"lock {key!r} not acquired within {wait:.3f}s")


def check_seconds(name: str, value: float) -> None:
    """A lease or TTL must be a positive, finite number of seconds."""
    if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


def check_score(name: str, value: float) -> None:
    """Index scores and bounds: any float but NaN (infinities are allowed)."""
    if not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
