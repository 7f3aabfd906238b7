"""Redis store: shared by every worker process, one round trip per hot-path operation.

Design notes (why, not what):

* Values are compact JSON text under ``prefix + key`` with a millisecond TTL (``PX``).
* A lock is ``SET lock token NX PX lease``; release is a Lua compare-and-delete and
  renew a Lua compare-and-``PEXPIRE``, so a holder whose lease ran out can never free
  or extend the lock of the worker that took it next.
* ``acquire_and_get`` and ``set_and_release`` are Lua scripts, so a callback costs two
  round trips in total. A script is sent whole (``EVAL``) the first time and by its
  SHA (``EVALSHA``) after; ``NOSCRIPT`` (Redis restarted, another cluster node) falls
  back to ``EVAL`` in the same call: never more than two round trips.
* ``set_and_release`` writes only while the caller still holds the lock. If the lease
  ran out, another worker may have read and written the call since, so writing would
  lose its update: nothing is written and :class:`StoreError` is raised (the caller
  logs it; the echoed ``command_id`` keeps the call routable). The single exception
  keeps retries safe: if the lock is free and the key already holds exactly the value
  being written (a retried write whose first answer was lost), it succeeds.
* Indexes are sorted sets (``ZADD`` + ``PEXPIRE`` in one script, ``ZREM``,
  ``ZRANGEBYSCORE ... LIMIT``).
* Time bounds come from redis-py's own socket timeouts, never from an asyncio timer
  around a call: cancelling a read mid-reply throws the connection away, and under
  latency every fresh connection would be cancelled in turn, so a slow Redis would look
  dead. ``connect_timeout`` bounds opening the TCP connection, apart from the round
  trips; ``timeout`` bounds each read and write once connected. Connections stay pooled
  and warm, and a new one is used at once: no handshake (RESP2, no client info) unless
  a password (``AUTH``) or a database (``SELECT``) needs one, each a round trip bounded
  by ``timeout``. A broken connection (Redis restarted) is retried once on a fresh one;
  a timeout is not retried, so a hung Redis costs one ``timeout``, not two.
* An acquire whose answer never came (timeout, broken connection, cancelled) may still
  have taken the lock on the server. Its token is released (compare-and-delete) by a
  tracked background task, so no lock outlives an acquire that gave up; the lease
  bounds it anyway if Redis stays unreachable.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import (
    ClusterCrossSlotError,
    CrossSlotTransactionError,
    NoScriptError,
    RedisClusterException,
    RedisError,
    WatchError,
)
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
)
from redis.exceptions import (
    TimeoutError as RedisTimeoutError,
)

from ..errors import ConfigurationError, StoreError, StoreUnavailable
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

__all__ = ["DEFAULT_CONNECT_TIMEOUT", "DEFAULT_TIMEOUT", "RedisStore", "Script"]

T = TypeVar("T")
_log = logging.getLogger("rtcontrol.store")

#: Seconds one round trip may take once connected (``?timeout=``).
DEFAULT_TIMEOUT = 1.0
#: Seconds allowed to open a connection, handshake included (``?connect_timeout=``).
DEFAULT_CONNECT_TIMEOUT = 2.0

#: Store URL query parameters of rtcontrol's own; removed before redis-py sees the URL.
OWN_PARAMETERS = ("timeout", "connect_timeout")
#: redis-py URL parameters passed through unchanged (database, TLS, client name).
PASS_THROUGH = frozenset(
    {
        "db",
        "client_name",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_ca_path",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    }
)

#: A new connection is usable at once: no ``HELLO 3``, no ``CLIENT MAINT_NOTIFICATIONS``
#: (RESP3 only, for Redis Enterprise), no ``CLIENT SETINFO``. Each of those is a round
#: trip before the first command, which a slow Redis makes expensive exactly when
#: connections are being replaced. RESP2 is all the store needs.
FAST_HANDSHAKE: dict[str, Any] = {"protocol": 2, "driver_info": None}

_MAX_RELEASES = 64  # background releases in flight; past that the lease frees the lock


class Script:
    """A Lua script and its SHA1, for ``EVALSHA`` with an ``EVAL`` fallback."""

    __slots__ = ("body", "sha")

    def __init__(self, body: str) -> None:
        self.body = body
        self.sha = hashlib.sha1(body.encode()).hexdigest()


# KEYS: lock [, data]; ARGV: token, lease ms. -> {1, value} when taken (also when this
# token already holds it: a retried call), else {0, remaining lease ms}.
_ACQUIRE = Script("""
local held = redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])
if not held and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0, redis.call('PTTL', KEYS[1])}
end
if KEYS[2] then return {1, redis.call('GET', KEYS[2])} end
return {1}
""")

# KEYS: lock, data; ARGV: token, value, ttl ms ('' = delete). -> 1 written, 0 refused.
_SET_RELEASE = Script("""
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
""")

# KEYS: lock; ARGV: token. -> 1 released, 0 not held by this token.
_RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

# KEYS: lock; ARGV: token, lease ms. -> 1 extended, 0 not held by this token.
_RENEW = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")

# KEYS: index; ARGV: score, member, ttl ms.
_INDEX_ADD = Script("""
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
return redis.call('PEXPIRE', KEYS[1], ARGV[3])
""")

_UPDATE_ATTEMPTS = 200  # optimistic retries before giving up on a hot key


def _ms(seconds: float) -> int:
    """Redis wants a positive integer number of milliseconds."""
    return max(1, round(seconds * 1000))


def _score(value: float) -> str:
    """A score or range bound as Redis parses it (``-inf``/``+inf`` included)."""
    if math.isinf(value):
        return "+inf" if value > 0 else "-inf"
    return repr(float(value))


def _cross_slot(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, ClusterCrossSlotError | CrossSlotTransactionError) or (
        "same key slot" in text or "same slot" in text
    )


def _text(raw: object) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _seconds(name: str, value: object) -> float:
    try:
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ConfigurationError(
            f"store {name} must be a positive number of seconds, got {value!r}"
        )
    return seconds


def parse_options(
    url: str,
    *,
    timeout: float | None,
    connect_timeout: float | None,
    allowed: Iterable[str] = PASS_THROUGH,
) -> tuple[str, float, float]:
    """Take rtcontrol's parameters out of a store URL: ``(url for redis-py, timeout,
    connect_timeout)``.

    URL query parameters win over the arguments, which win over the defaults. A
    parameter that is neither rtcontrol's nor in ``allowed`` raises
    :class:`ConfigurationError` naming it (never the URL: it may hold a password).
    """
    parts = urlsplit(url)
    own: dict[str, float] = {}
    rest: list[tuple[str, str]] = []
    passed = frozenset(allowed)
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in OWN_PARAMETERS:
            own[name] = _seconds(name, value)
        elif name in passed:
            rest.append((name, value))
        else:
            known = ", ".join(sorted({*OWN_PARAMETERS, *passed}))
            raise ConfigurationError(f"unknown store URL parameter {name!r} (known: {known})")
    if "timeout" in own:
        timeout = own["timeout"]
    elif timeout is not None:
        timeout = _seconds("timeout", timeout)
    if "connect_timeout" in own:
        connect_timeout = own["connect_timeout"]
    elif connect_timeout is not None:
        connect_timeout = _seconds("connect_timeout", connect_timeout)
    base = url.partition("?")[0]  # not urlunsplit: it would rewrite unix:///path
    clean = f"{base}?{urlencode(rest)}" if rest else base
    return (
        clean,
        DEFAULT_TIMEOUT if timeout is None else timeout,
        DEFAULT_CONNECT_TIMEOUT if connect_timeout is None else connect_timeout,
    )


def url_secret(url: str, password: str | None = None) -> str | None:
    """The password to scrub from error messages: given, or the URL's."""
    if password:
        return password
    raw = urlsplit(url).password
    return unquote(raw) if raw else None


class RedisStore(Store):
    """:class:`Store` on Redis (``redis.asyncio``), shared by all workers."""

    shared = True
    bounded = True
    #: Names the backend in error messages ("redis get: ...").
    kind = "redis"

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster,
        *,
        prefix: str = "",
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        secret: str | None = None,
    ) -> None:
        """Prefer :meth:`from_url`. ``secret`` is scrubbed from every error message.

        ``timeout`` and ``connect_timeout`` only word the errors: the bounds are the
        client's socket timeouts (``from_url`` sets them).
        """
        self._client = client
        self._prefix = prefix
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._secret = secret
        self._loaded: set[str] = set()  # SHAs sent whole once: EVALSHA from now on
        self._releases: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "",
        timeout: float | None = None,
        connect_timeout: float | None = None,
        **kwargs: Any,
    ) -> RedisStore:
        """Build a store for ``redis://[user:password@]host:port/db``; connects lazily.

        ``timeout`` bounds every read and write once connected (default 1 s),
        ``connect_timeout`` opening a connection (default 2 s); ``?timeout=`` and
        ``?connect_timeout=`` in the URL win over both. Extra keyword arguments go to
        :func:`redis.asyncio.from_url`.
        """
        clean, timeout, connect_timeout = parse_options(
            url, timeout=timeout, connect_timeout=connect_timeout
        )
        kwargs.setdefault("socket_timeout", timeout)
        kwargs.setdefault("socket_connect_timeout", connect_timeout)
        # One immediate retry on a fresh connection, for broken connections only: pooled
        # sockets are dead after a Redis restart. A timeout is not retried: a hung Redis
        # would cost twice the bound (and the default, 3 retries with backoff, far more).
        kwargs.setdefault("retry", Retry(NoBackoff(), 1, (RedisConnectionError,)))
        for name, value in FAST_HANDSHAKE.items():
            kwargs.setdefault(name, value)
        secret = url_secret(url, kwargs.get("password"))
        client = aioredis.from_url(clean, **kwargs)
        return cls(
            client,
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            secret=secret,
        )

    def __repr__(self) -> str:
        client = self._client
        assert isinstance(client, aioredis.Redis)
        kw = client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host')}:{kw.get('port')}"
        return f"RedisStore({where}, db={kw.get('db', 0)}, prefix={self._prefix!r})"

    @property
    def timeout(self) -> float:
        """Seconds one round trip may take once connected."""
        return self._timeout

    @property
    def connect_timeout(self) -> float:
        """Seconds allowed to open a connection."""
        return self._connect_timeout

    @property
    def pending_releases(self) -> int:
        """Background releases of abandoned acquires still running."""
        return len(self._releases)

    # ------------------------------------------------------------------ plumbing

    async def _call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        """Run one round trip (bounded by the client's socket timeouts); translate failures."""
        try:
            return await make()
        except RedisTimeoutError as exc:
            if "connect" in str(exc).lower():
                why = f"not connected within {self._connect_timeout:g}s"
            else:
                why = f"no answer within {self._timeout:g}s"
            raise StoreUnavailable(f"{self.kind} {op}: {why}") from exc
        except (RedisClusterException, ClusterCrossSlotError) as exc:
            if _cross_slot(exc):  # keys that cannot go together: a bug, not an outage
                raise StoreError(f"{self.kind} {op}: {self._describe(exc)}") from exc
            raise StoreUnavailable(f"{self.kind} {op}: {self._describe(exc)}") from exc
        except (RedisError, OSError) as exc:
            raise StoreUnavailable(f"{self.kind} {op}: {self._describe(exc)}") from exc

    def _describe(self, exc: BaseException) -> str:
        text = f"{type(exc).__name__}: {exc}"
        if self._secret:
            text = text.replace(self._secret, "***")
        return text[:200]

    def _k(self, key: str) -> str:
        return self._prefix + key

    def _check_keys(self, op: str, keys: list[str]) -> None:
        """Hook: the cluster store refuses keys of one operation in different slots."""

    async def _eval(self, op: str, script: Script, keys: list[str], args: list[Any]) -> Any:
        """Run ``script``: whole the first time, by SHA after, whole again on NOSCRIPT."""
        self._check_keys(op, keys)
        client = self._client
        n = len(keys)

        async def run() -> Any:
            if script.sha in self._loaded:
                try:
                    return await client.evalsha(script.sha, n, *keys, *args)
                except NoScriptError:
                    pass  # Redis restarted, or a cluster node never saw the script
            return await client.eval(script.body, n, *keys, *args)

        result = await self._call(op, run)
        self._loaded.add(script.sha)
        return result

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
        check_seconds("lease", lease)
        token = secrets.token_hex(8)
        lock = self._k(lock_key)
        keys = [lock] if data_key is None else [lock, self._k(data_key)]
        self._check_keys("acquire", keys)
        args: list[str | int] = [token, _ms(lease)]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        backoff = 0.002
        while True:
            try:
                reply = await self._eval("acquire", _ACQUIRE, keys, args)
            except BaseException:
                # The answer was lost (timeout, broken connection, cancelled), not
                # necessarily the request: the script may hold the lock for us.
                self._release_later(lock, token)
                raise
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

    def _release_later(self, lock: str, token: LockToken) -> None:
        """Compare-and-delete ``lock`` for ``token`` in a tracked background task."""
        if len(self._releases) >= _MAX_RELEASES:
            _log.warning("store: too many pending lock releases; %r left to its lease", lock)
            return
        task = asyncio.get_running_loop().create_task(self._release_abandoned(lock, token))
        self._releases.add(task)
        task.add_done_callback(self._release_done)

    async def _release_abandoned(self, lock: str, token: LockToken) -> None:
        try:
            await self._eval("release", _RELEASE, [lock], [token])
        except StoreError as exc:
            _log.warning(
                "store: abandoned lock %r not released (%s); its lease frees it", lock, exc
            )

    def _release_done(self, task: asyncio.Task[None]) -> None:
        self._releases.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            _log.error("store: background release failed: %s", self._describe(exc))

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
        done = await self._eval("release", _RELEASE, [self._k(key)], [token])
        return bool(done)

    async def renew(self, key: str, token: LockToken, *, lease: float) -> bool:
        """Compare-and-``PEXPIRE``: extends only this token's lock, never takes a free one."""
        check_seconds("lease", lease)
        done = await self._eval("renew", _RENEW, [self._k(key)], [token, _ms(lease)])
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
        done = await self._eval("set_and_release", _SET_RELEASE, keys, args)
        if not done:
            raise StoreError(f"lock {lock_key!r} lease expired before the write: {key!r} not saved")

    # ------------------------------------------------------------------ indexes

    async def index_add(self, index: str, member: str, score: float, *, ttl: float) -> None:
        check_score("score", score)
        check_seconds("ttl", ttl)
        await self._eval(
            "index_add", _INDEX_ADD, [self._k(index)], [_score(score), member, _ms(ttl)]
        )

    async def index_remove(self, index: str, *members: str) -> None:
        if members:
            name = self._k(index)
            await self._call("index_remove", lambda: self._client.zrem(name, *members))

    async def index_range(
        self, index: str, low: float, high: float, *, limit: int = 100
    ) -> list[tuple[str, float]]:
        check_score("low", low)
        check_score("high", high)
        if limit <= 0:
            return []
        name = self._k(index)
        rows = await self._call(
            "index_range",
            lambda: self._client.zrangebyscore(
                name, _score(low), _score(high), start=0, num=limit, withscores=True
            ),
        )
        return [(_text(row[0]), float(row[1])) for row in rows]

    # ------------------------------------------------------------------ lifecycle

    async def ping(self) -> None:
        """Round trip to Redis; opens (and pools) the first connection."""
        await self._call("ping", self._client.ping)

    async def close(self) -> None:
        """Let pending lock releases finish (bounded), then close the connections."""
        if self._releases:
            pending = set(self._releases)
            _, late = await asyncio.wait(pending, timeout=self._connect_timeout + self._timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
        with contextlib.suppress(RedisError, OSError):
            await self._client.aclose()
