"""Redis store: shared by every worker process, one round trip per hot-path operation.

Design notes (why, not what):

* Values are compact JSON text under ``prefix + key`` with a millisecond TTL (``PX``).
* A lock is ``SET lock token NX PX lease``; release is a Lua compare-and-delete, so a
  holder whose lease ran out can never free the lock of the worker that took it next.
* ``acquire_and_get`` and ``set_and_release`` are Lua scripts (EVALSHA; redis-py
  reloads them after ``NOSCRIPT``, e.g. when Redis restarted), so a callback costs
  two round trips in total.
* ``set_and_release`` writes only while the caller still holds the lock. If the lease
  ran out, another worker may have read and written the call since, so writing would
  lose its update: nothing is written and :class:`StoreError` is raised (the caller
  logs it; the echoed ``command_id`` keeps the call routable). The single exception
  keeps retries safe: if the lock is free and the key already holds exactly the value
  being written (a retried write whose first answer was lost), it succeeds.
* Every round trip is capped at ``timeout`` seconds (socket timeouts plus an asyncio
  deadline) and retried once on a fresh connection, so a dead or slow Redis fails fast
  with :class:`StoreUnavailable` and a restarted one is used again at the next call.
"""

from __future__ import annotations

import asyncio
import random
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, WatchError

from ..errors import StoreError, StoreUnavailable
from .base import JSON, LockToken, Store, dumps, loads, lock_timeout

__all__ = ["RedisStore"]

T = TypeVar("T")

# KEYS: lock [, data]; ARGV: token, lease ms. -> {1, value} when taken (also when this
# token already holds it: a retried call), else {0, remaining lease ms}.
_ACQUIRE = """
local held = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if not held and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, redis.call('PTTL', KEYS[1])}
end
if KEYS[2] then return {1, redis.call('GET', KEYS[2])} end
return {1}
"""

# KEYS: lock, data; ARGV: token, value, ttl ms ('' = delete). -> 1 written, 0 refused.
_SET_RELEASE = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('DEL', KEYS[1])
else
  if holder then return 0 end
  local now = redis.call('GET', KEYS[2])
  if ARGV[3] == '' then
    if now then return 0 end
  elseif now ~= ARGV[2] then
    return 0
  end
end
if ARGV[3] == '' then
  redis.call('DEL', KEYS[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
"""

# KEYS: lock; ARGV: token. -> 1 released, 0 not held by this token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

_UPDATE_ATTEMPTS = 200  # optimistic retries before giving up on a hot key


def _ms(seconds: float) -> int:
    """Redis wants a positive integer number of milliseconds."""
    return max(1, round(seconds * 1000))


class RedisStore(Store):
    """:class:`Store` on Redis (``redis.asyncio``), shared by all workers."""

    shared = True
    bounded = True

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "",
        timeout: float = 1.0,
        secret: str | None = None,
    ) -> None:
        """Prefer :meth:`from_url`. ``secret`` is scrubbed from every error message."""
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._secret = secret
        self._acquire_script = client.register_script(_ACQUIRE)
        self._set_release_script = client.register_script(_SET_RELEASE)
        self._release_script = client.register_script(_RELEASE)

    @classmethod
    def from_url(
        cls, url: str, *, prefix: str = "", timeout: float = 1.0, **kwargs: Any
    ) -> RedisStore:
        """Build a store for ``redis://[user:password@]host:port/db``; connects lazily.

        ``timeout`` bounds every round trip (connect, send, read). Extra keyword
        arguments go to :func:`redis.asyncio.from_url`.
        """
        kwargs.setdefault("socket_timeout", timeout)
        kwargs.setdefault("socket_connect_timeout", timeout)
        # One immediate retry on a fresh connection: pooled sockets are dead after a
        # Redis restart, and the default (10 retries, up to 1 s apart) is far too slow.
        kwargs.setdefault("retry", Retry(NoBackoff(), 1))
        password = urlsplit(url).password
        secret = kwargs.get("password") or (unquote(password) if password else None)
        client = aioredis.from_url(url, **kwargs)
        return cls(client, prefix=prefix, timeout=timeout, secret=secret)

    def __repr__(self) -> str:
        kw = self._client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        return f"RedisStore({where}, db={kw.get('db', 0)}, prefix={self._prefix!r})"

    # ------------------------------------------------------------------ plumbing

    async def _call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run one round trip within the deadline; translate every failure."""
        try:
            async with asyncio.timeout(self._timeout):
                return await make()
        except TimeoutError as exc:
            raise StoreUnavailable(f"redis {op}: no answer within {self._timeout:g}s") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"redis {op}: {self._describe(exc)}") from exc

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self._secret:
            text = text.replace(self._secret, "***")
        return text[:200]

    def _k(self, key: str) -> str:
        return self._prefix + key

    # ------------------------------------------------------------------ values

    async def get(self, key: str) -> JSON | None:
        raw = await self._call("get", lambda: self._client.get(self._k(key)))
        return None if raw is None else loads(raw)

    async def set(self, key: str, value: JSON, *, ttl: float) -> None:
        text = dumps(value)
        await self._call("set", lambda: self._client.set(self._k(key), text, px=_ms(ttl)))

    async def delete(self, *keys: str) -> None:
        if keys:
            names = [self._k(k) for k in keys]
            await self._call("delete", lambda: self._client.delete(*names))

    async def update(
        self, key: str, fn: Callable[[JSON | None], JSON | None], *, ttl: float
    ) -> JSON | None:
        """Optimistic WATCH/MULTI loop: ``fn`` runs in Python, so it cannot be a script."""
        name = self._k(key)

        async def attempt() -> tuple[bool, str | None]:
            async with self._client.pipeline(transaction=True) as pipe:
                await pipe.watch(name)
                raw = await pipe.get(name)
                new = fn(None if raw is None else loads(raw))
                text = None if new is None else dumps(new)
                pipe.multi()  # type: ignore[no-untyped-call]
                if text is None:
                    pipe.delete(name)
                else:
                    pipe.set(name, text, px=_ms(ttl))
                try:
                    await pipe.execute()
                except WatchError:
                    return False, None
                return True, text

        for n in range(_UPDATE_ATTEMPTS):
            done, text = await self._call("update", attempt)
            if done:
                return None if text is None else loads(text)
            await asyncio.sleep(random.random() * min(0.001 * n, 0.01))  # de-synchronise
        raise StoreError(f"update of {key!r} kept conflicting; gave up")

    # ------------------------------------------------------------------ locks

    async def _acquire(
        self, lock_key: str, data_key: str | None, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        token = secrets.token_hex(8)
        keys = [self._k(lock_key)] if data_key is None else [self._k(lock_key), self._k(data_key)]
        args: list[str | int] = [token, _ms(lease)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        backoff = 0.002
        while True:
            reply = await self._call("acquire", lambda: self._acquire_script(keys, args))
            if reply[0] == 1:
                raw = reply[1] if len(reply) > 1 else None
                return token, None if raw is None or raw is False else loads(raw)
            left = deadline - loop.time()
            if left <= 0:
                raise lock_timeout(lock_key, wait)
            # Poll: sooner when the lease is about to run out, never past the deadline.
            lease_left = max(int(reply[1]), 1) / 1000
            await asyncio.sleep(min(backoff, lease_left, left) * (0.5 + random.random() / 2))
            backoff = min(backoff * 2, 0.05)

    async def acquire(self, key: str, *, lease: float, wait: float) -> LockToken:
        token, _ = await self._acquire(key, None, lease, wait)
        return token

    async def acquire_and_get(
        self, lock_key: str, key: str, *, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        """Lock and read in one round trip (per attempt)."""
        return await self._acquire(lock_key, key, lease, wait)

    async def release(self, key: str, token: LockToken) -> bool:
        """Compare-and-delete. A retried release whose first answer was lost says False."""
        done = await self._call("release", lambda: self._release_script([self._k(key)], [token]))
        return bool(done)

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        """Write (or delete, for None) and unlock in one round trip, only while locked.

        Raises :class:`StoreError` and writes nothing when the lease ran out (see the
        module notes); the lock is then not ours, so there is nothing to release.
        """
        text = "" if value is None else dumps(value)
        keys = [self._k(lock_key), self._k(key)]
        args: list[str | int] = [token, text, "" if value is None else _ms(ttl)]
        done = await self._call("set_and_release", lambda: self._set_release_script(keys, args))
        if not done:
            raise StoreError(f"lock {lock_key!r} lease expired before the write: {key!r} not saved")

    # ------------------------------------------------------------------ lifecycle

    async def ping(self) -> None:
        await self._call("ping", self._client.ping)

    async def close(self) -> None:
        await self._client.aclose()
