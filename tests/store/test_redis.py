"""RedisStore only: round trips, failure translation, time bounds, reconnects, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from redis.asyncio.connection import AbstractConnection
from redis_server import RedisServer, free_port

from rtcontrol.errors import ConfigurationError, LockTimeout, StoreError, StoreUnavailable
from rtcontrol.store import Encoded, MemoryStore, Store, open_store
from rtcontrol.store.redis import _ACQUIRE, RedisStore

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_url: str, redis_prefix: str) -> AsyncIterator[RedisStore]:
    s = RedisStore.from_url(redis_url, prefix=redis_prefix)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """A plain synchronous client to look behind the store's back."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


class Trips:
    """Counts packets sent to Redis: one send per round trip (a pipeline is one send)."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def names(self) -> list[str]:
        sent, self.sent = self.sent, []
        return sent


@pytest.fixture
def trips(monkeypatch: pytest.MonkeyPatch) -> Trips:
    spy = Trips()
    original = AbstractConnection.send_packed_command

    async def send(self: AbstractConnection, command: Any, check_health: bool = True) -> None:
        data = command if isinstance(command, bytes) else b"".join(command)
        spy.sent.append(data.split(b"\r\n")[2].decode().upper())  # first command's name
        await original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", send)
    return spy


@contextlib.asynccontextmanager
async def fake_server(answer: Callable[[bytes], bytes | None]) -> AsyncIterator[str]:
    """A TCP server speaking just enough RESP: ``answer(chunk)`` or silence (None)."""
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while chunk := await reader.read(4096):
                reply = answer(chunk)
                if reply is not None:
                    writer.write(reply)
                    await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        for w in writers:
            w.close()
        server.close()
        await server.wait_closed()


# ---------------------------------------------------------------------- round trips


async def test_one_round_trip_per_operation(store: RedisStore, trips: Trips) -> None:
    # Warm up: open a connection and load the scripts (first EVALSHA may need a load).
    token, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)
    await store.set_and_release("call", {"n": 0}, ttl=60, lock_key="L", token=token)
    await store.release("L", await store.acquire("L", lease=5, wait=0))
    trips.names()

    token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
    assert value == {"n": 0}
    assert trips.names() == ["EVALSHA"]
    await store.set_and_release("call", {"n": 1}, ttl=60, lock_key="L", token=token)
    assert trips.names() == ["EVALSHA"]
    await store.set_and_release("call", {"n": 1}, ttl=60, lock_key="L", token=token)  # retry
    assert trips.names() == ["EVALSHA"]

    token = await store.acquire("L", lease=5, wait=0)
    assert trips.names() == ["EVALSHA"]
    assert await store.release("L", token)
    assert trips.names() == ["EVALSHA"]
    assert await store.get("call") == {"n": 1}
    assert trips.names() == ["GET"]
    await store.set("x", 1, ttl=60)
    assert trips.names() == ["SET"]
    await store.delete("x", "y")
    assert trips.names() == ["DEL"]
    await store.ping()
    assert trips.names() == ["PING"]
    await store.update("x", lambda old: (old or 0) + 1, ttl=60)
    assert trips.names() == ["WATCH", "GET", "MULTI"]  # MULTI/SET/EXEC go in one send


async def test_contended_acquire_polls_once_per_attempt(store: RedisStore, trips: Trips) -> None:
    await store.acquire("L", lease=5, wait=0)
    trips.names()
    with pytest.raises(LockTimeout):
        await store.acquire_and_get("L", "call", lease=5, wait=0.1)
    sent = trips.names()
    assert set(sent) == {"EVALSHA"}
    assert 3 <= len(sent) <= 40  # short backoff, but no busy loop


async def test_values_are_json_text_with_px_ttl(
    store: RedisStore, raw: redis.Redis, redis_prefix: str
) -> None:
    await store.set("k", {"é": [1, 2]}, ttl=30)
    assert raw.get(f"{redis_prefix}k") == '{"é":[1,2]}'
    assert 29_000 < raw.pttl(f"{redis_prefix}k") <= 30_000
    token = await store.acquire("L", lease=2.5, wait=0)
    assert raw.get(f"{redis_prefix}L") == token
    assert 2_000 < raw.pttl(f"{redis_prefix}L") <= 2_500


async def test_prefix_isolates_stores(redis_url: str, redis_prefix: str) -> None:
    a = RedisStore.from_url(redis_url, prefix=redis_prefix + "a:")
    b = RedisStore.from_url(redis_url, prefix=redis_prefix + "b:")
    try:
        await a.set("k", "from a", ttl=60)
        assert await b.get("k") is None
        await b.acquire("L", lease=5, wait=0)
        await a.acquire("L", lease=5, wait=0)  # a different lock
        assert await a.get("k") == "from a"
    finally:
        await a.close()
        await b.close()


async def test_scripts_reloaded_after_script_flush(store: RedisStore, raw: redis.Redis) -> None:
    await store.release("L", await store.acquire("L", lease=5, wait=0))
    raw.script_flush()
    token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
    assert value is None
    await store.set_and_release("call", 1, ttl=60, lock_key="L", token=token)
    assert await store.get("call") == 1


async def test_open_store_builds_shared_redis_store(redis_url: str) -> None:
    store = open_store(redis_url)
    try:
        assert isinstance(store, RedisStore)
        assert store.shared is True
        await store.ping()
    finally:
        await store.close()


# ---------------------------------------------------------------------- lease-expired writes


async def test_set_and_release_refused_when_another_holds_the_lock(
    store: RedisStore, raw: redis.Redis, redis_prefix: str
) -> None:
    await store.set("call", "original", ttl=60)
    old, _ = await store.acquire_and_get("L", "call", lease=0.1, wait=0)
    await asyncio.sleep(0.15)
    new, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)
    with pytest.raises(StoreError, match="lease expired") as err:
        await store.set_and_release("call", "late", ttl=60, lock_key="L", token=old)
    assert not isinstance(err.value, StoreUnavailable)
    assert await store.get("call") == "original"
    assert raw.get(f"{redis_prefix}L") == new  # the new holder keeps its lock
    with pytest.raises(StoreError):  # refused even when the value would not change
        await store.set_and_release("call", "original", ttl=60, lock_key="L", token=old)
    with pytest.raises(StoreError):
        await store.set_and_release("call", None, ttl=60, lock_key="L", token=old)
    assert await store.get("call") == "original"


async def test_set_and_release_refused_when_value_changed_behind_expired_lease(
    store: RedisStore,
) -> None:
    await store.set("call", "original", ttl=60)
    old, _ = await store.acquire_and_get("L", "call", lease=0.1, wait=0)
    await asyncio.sleep(0.15)
    async with store.lock("L", lease=5, wait=0):  # another worker's whole callback
        await store.set("call", "theirs", ttl=60)
    with pytest.raises(StoreError, match="not saved"):
        await store.set_and_release("call", "mine", ttl=60, lock_key="L", token=old)
    assert await store.get("call") == "theirs"
    with pytest.raises(StoreError):
        await store.set_and_release("call", None, ttl=60, lock_key="L", token=old)
    assert await store.get("call") == "theirs"


async def test_set_and_release_retry_is_idempotent(store: RedisStore) -> None:
    """A retried write whose first answer was lost finds the lock free and its value there."""
    token, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)
    await store.set_and_release("call", {"n": 1}, ttl=60, lock_key="L", token=token)
    await store.set_and_release("call", {"n": 1}, ttl=60, lock_key="L", token=token)
    token, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)
    await store.set_and_release("call", None, ttl=60, lock_key="L", token=token)
    await store.set_and_release("call", None, ttl=60, lock_key="L", token=token)
    assert await store.get("call") is None


async def test_acquire_retry_by_same_token_is_idempotent(
    raw: redis.Redis, redis_prefix: str
) -> None:
    """The acquire script treats "already held by this token" as acquired."""
    keys = [f"{redis_prefix}L", f"{redis_prefix}call"]
    body = _ACQUIRE.body
    assert raw.eval(body, 2, *keys, "tok", 5000)[0] == 1
    assert raw.eval(body, 2, *keys, "tok", 5000)[0] == 1
    refused = raw.eval(body, 2, *keys, "other", 5000)
    assert refused[0] == 0
    assert 4000 < refused[1] <= 5000


# ---------------------------------------------------------------------- failures


async def test_unreachable_server_raises_store_unavailable() -> None:
    store = RedisStore.from_url(f"redis://127.0.0.1:{free_port()}/0")  # does not connect
    operations = {
        "ping": store.ping(),
        "get": store.get("k"),
        "set": store.set("k", 1, ttl=1),
        "delete": store.delete("k"),
        "update": store.update("k", lambda _old: 1, ttl=1),
        "acquire": store.acquire("L", lease=1, wait=1),
        "release": store.release("L", "t"),
        "acquire_and_get": store.acquire_and_get("L", "k", lease=1, wait=1),
        "set_and_release": store.set_and_release("k", 1, ttl=1, lock_key="L", token="t"),
    }
    try:
        for name, op in operations.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as err:
                await op
            assert time.monotonic() - started < 0.5, name
            assert isinstance(err.value.__cause__, redis.RedisError), name
            assert str(err.value).startswith(f"redis {name.split('_')[0]}"), name
    finally:
        await store.close()


async def test_silent_server_is_bounded_by_timeout() -> None:
    """A Redis that accepts but never answers (hung, overloaded) fails within ``timeout``."""
    async with fake_server(lambda _chunk: None) as url:
        store = RedisStore.from_url(url, timeout=0.2)
        try:
            for op in (store.ping(), store.acquire_and_get("L", "k", lease=1, wait=5)):
                started = time.monotonic()
                with pytest.raises(StoreUnavailable):
                    await op
                assert 0.15 < time.monotonic() - started < 0.35  # one cap, not one per retry
        finally:
            await store.close()


async def test_password_never_in_errors() -> None:
    secret = "S3cr3t-Pa55"  # a fake

    def answer(chunk: bytes) -> bytes:  # echo the password back, as a careless proxy might
        return f"-WRONGPASS bad password {secret}\r\n".encode()

    async with fake_server(answer) as url:
        closed = f"redis://user:{secret}@127.0.0.1:{free_port()}/0"
        echoing = url.replace("redis://", f"redis://user:{secret}@")
        for target in (closed, echoing):
            store = RedisStore.from_url(target, timeout=0.5)
            try:
                assert secret not in repr(store)
                with pytest.raises(StoreUnavailable) as err:
                    await store.ping()
                assert secret not in str(err.value)
                assert secret not in repr(err.value)
            finally:
                await store.close()
        assert "***" in str(err.value)  # the echoing server's message was scrubbed


async def test_reconnects_after_restart(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    store = RedisStore.from_url(server.url, timeout=0.5)
    try:
        # Several pooled connections, all of which die with the server.
        await asyncio.gather(*(store.set(f"k{i}", i, ttl=60) for i in range(8)))
        token, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)

        server.restart()  # no persistence: data and script cache are gone
        started = time.monotonic()
        results = await asyncio.gather(*(store.get(f"k{i}") for i in range(8)))
        assert results == [None] * 8
        assert time.monotonic() - started < 1.0
        token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
        assert value is None
        await store.set_and_release("call", "after", ttl=60, lock_key="L", token=token)
        assert await store.get("call") == "after"

        server.stop()
        with pytest.raises(StoreUnavailable):
            await store.get("call")
        with pytest.raises(StoreUnavailable):
            await store.ping()
        server.start()
        await store.ping()  # the first call after Redis returns succeeds
        await store.update("n", lambda old: (old or 0) + 1, ttl=60)
        assert await store.get("n") == 1
    finally:
        await store.close()


async def test_update_survives_restart_mid_flight(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory()
    store = RedisStore.from_url(server.url, timeout=0.5)
    try:
        await store.set("n", 1, ttl=60)
        server.restart()
        assert await store.update("n", lambda old: (old or 0) + 10, ttl=60) == 10
    finally:
        await store.close()


# ---------------------------------------------------------------------- settings


def _socket_timeouts(store: Store) -> tuple[float, float]:
    assert isinstance(store, RedisStore)
    kw = store._client.connection_pool.connection_kwargs  # type: ignore[union-attr]
    return kw["socket_timeout"], kw["socket_connect_timeout"]


@pytest.mark.parametrize(
    ("query", "args", "expected"),
    [
        ("", {}, (1.0, 2.0)),  # defaults
        ("", {"timeout": 0.3, "connect_timeout": 0.7}, (0.3, 0.7)),
        ("?timeout=0.5", {"timeout": 0.3, "connect_timeout": 0.7}, (0.5, 0.7)),
        ("?connect_timeout=3", {"timeout": 0.3}, (0.3, 3.0)),
        ("?timeout=0.25&connect_timeout=4", {"timeout": 9, "connect_timeout": 9}, (0.25, 4.0)),
    ],
)
async def test_timeouts_from_url_then_arguments_then_defaults(
    redis_url: str, query: str, args: dict[str, float], expected: tuple[float, float]
) -> None:
    store = open_store(redis_url + query, **args)
    try:
        assert isinstance(store, RedisStore)
        assert (store.timeout, store.connect_timeout) == expected
        assert _socket_timeouts(store) == expected  # the bounds redis-py applies
        await store.ping()  # our parameters never reach redis-py's URL parser
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("url", "args", "named"),
    [
        ("redis://u:S3cr3t@127.0.0.1:1/0?bogus=1", {}, "'bogus'"),
        ("redis://u:S3cr3t@127.0.0.1:1/0?socket_timeout=1", {}, "'socket_timeout'"),
        ("redis://u:S3cr3t@127.0.0.1:1/0?timeout=0", {}, "timeout"),
        ("redis://u:S3cr3t@127.0.0.1:1/0?timeout=abc", {}, "timeout"),
        ("redis://u:S3cr3t@127.0.0.1:1/0?timeout=nan", {}, "timeout"),
        ("redis://u:S3cr3t@127.0.0.1:1/0?connect_timeout=-1", {}, "connect_timeout"),
        ("redis://u:S3cr3t@127.0.0.1:1/0", {"timeout": 0}, "timeout"),
        ("redis://u:S3cr3t@127.0.0.1:1/0", {"connect_timeout": math.inf}, "connect_timeout"),
        ("memory://?bogus=1", {}, "'bogus'"),
        ("mysql://u:S3cr3t@host/db", {}, "'mysql'"),
    ],
)
def test_bad_store_settings_are_configuration_errors(
    url: str, args: dict[str, float], named: str
) -> None:
    with pytest.raises(ConfigurationError) as err:
        open_store(url, **args)
    assert named in str(err.value)
    assert "S3cr3t" not in str(err.value)


def test_memory_store_accepts_and_ignores_timeouts() -> None:
    assert isinstance(open_store("memory://?timeout=0.5", timeout=2), MemoryStore)


async def test_db_in_the_query_passes_through(
    redis_url: str, raw: redis.Redis, redis_prefix: str
) -> None:
    base = urlunsplit(urlsplit(redis_url)._replace(path="", query=""))
    key = f"{redis_prefix}db3-probe"
    store = open_store(f"{base}?db=3&timeout=2")
    try:
        await store.set(key, 1, ttl=60)
        with redis.Redis.from_url(f"{base}/3", decode_responses=True) as db3:
            assert db3.get(key) == "1"
            db3.delete(key)
        assert raw.get(key) is None  # not in the session's database
    finally:
        await store.close()


async def test_encoded_text_is_stored_verbatim(
    store: RedisStore, raw: redis.Redis, redis_prefix: str
) -> None:
    await store.set("k", Encoded('{"a":1}'), ttl=60)
    assert raw.get(f"{redis_prefix}k") == '{"a":1}'


async def test_index_is_a_sorted_set_with_a_ttl(
    store: RedisStore, raw: redis.Redis, redis_prefix: str, trips: Trips
) -> None:
    await store.index_add("idx", "m", 5.5, ttl=30)  # first use: the script goes whole
    trips.names()
    await store.index_add("idx", "n", 6, ttl=30)
    assert trips.names() == ["EVALSHA"]  # ZADD and PEXPIRE in one round trip
    assert raw.zrange(f"{redis_prefix}idx", 0, -1, withscores=True) == [("m", 5.5), ("n", 6.0)]
    assert 29_000 < raw.pttl(f"{redis_prefix}idx") <= 30_000
    await store.index_range("idx", 0, 10)
    assert trips.names() == ["ZRANGEBYSCORE"]
    await store.index_remove("idx", "m")
    assert trips.names() == ["ZREM"]
    await store.index_remove("idx")
    assert trips.names() == []  # nothing to remove: no round trip


async def test_renew_sets_the_lease_in_one_round_trip(
    store: RedisStore, raw: redis.Redis, redis_prefix: str, trips: Trips
) -> None:
    token = await store.acquire("L", lease=1, wait=0)
    assert await store.renew("L", token, lease=20)  # first use: the script goes whole
    trips.names()
    assert await store.renew("L", token, lease=30)
    assert trips.names() == ["EVALSHA"]
    assert 29_000 < raw.pttl(f"{redis_prefix}L") <= 30_000
    assert raw.get(f"{redis_prefix}L") == token


async def test_unix_socket_url_with_settings(
    redis_server_factory: Callable[..., RedisServer],
) -> None:
    server = redis_server_factory(args=["--unixsocket", "redis.sock", "--unixsocketperm", "700"])
    path = server.dir / "redis.sock"
    store = open_store(f"unix://{path}?db=2&timeout=0.5", connect_timeout=1.5)
    try:
        assert isinstance(store, RedisStore)
        assert _socket_timeouts(store) == (0.5, 1.5)
        await store.set("k", "over a unix socket", ttl=60)
        with redis.Redis(unix_socket_path=str(path), db=2, decode_responses=True) as db2:
            assert db2.get("k") == '"over a unix socket"'
    finally:
        await store.close()
