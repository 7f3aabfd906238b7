"""ClusterStore only: URLs, hash slots, cross-slot refusals, failures (the contract suite
covers the semantics it shares with the other stores)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import MovedError
from redis_server import free_port

from rtcontrol.errors import ConfigurationError, LockTimeout, StoreError, StoreUnavailable
from rtcontrol.store import open_store
from rtcontrol.store.cluster import ClusterStore, parse_cluster_nodes

pytestmark = pytest.mark.redis


@pytest.fixture
async def store(redis_cluster_url: str, redis_cluster_prefix: str) -> AsyncIterator[ClusterStore]:
    s = ClusterStore.from_url(redis_cluster_url, prefix=redis_cluster_prefix)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def nodes(redis_cluster_url: str) -> Iterator[list[redis.Redis]]:
    """One plain client per node, to look at what each node holds."""
    clients = [
        redis.Redis(host=host, port=port, decode_responses=True)
        for host, port in parse_cluster_nodes(redis_cluster_url)
    ]
    yield clients
    for client in clients:
        client.close()


def holder(nodes: list[redis.Redis], key: str) -> redis.Redis:
    """The node that serves ``key`` (the others answer MOVED)."""
    for node in nodes:
        try:
            node.exists(key)
        except MovedError:
            continue
        return node
    raise AssertionError(f"no node serves {key!r}")


# ---------------------------------------------------------------------- opening


async def test_open_store_builds_a_cluster_store(redis_cluster_url: str) -> None:
    store = open_store(redis_cluster_url)
    try:
        assert isinstance(store, ClusterStore)
        assert store.shared is True
        assert store.bounded is True
        await store.ping()
        assert (store.timeout, store.connect_timeout) == (1.0, 2.0)
    finally:
        await store.close()


async def test_timeouts_from_the_url_reach_every_node(redis_cluster_url: str) -> None:
    store = open_store(redis_cluster_url + "?timeout=0.4&connect_timeout=1.5", timeout=3)
    try:
        assert isinstance(store, ClusterStore)
        assert (store.timeout, store.connect_timeout) == (0.4, 1.5)
        await store.set("k", 1, ttl=5)
        for node in store._cluster.get_nodes():
            assert node.connection_kwargs["socket_timeout"] == 0.4
            assert node.connection_kwargs["socket_connect_timeout"] == 1.5
    finally:
        await store.close()


def test_cluster_url_nodes() -> None:
    url = "redis+cluster://u:p%40ss@10.0.0.1:7001,node-b:7002,[::1]:7003,node-d/0"
    assert parse_cluster_nodes(url) == [
        ("10.0.0.1", 7001),
        ("node-b", 7002),
        ("::1", 7003),
        ("node-d", 6379),
    ]


@pytest.mark.parametrize(
    ("url", "named"),
    [
        ("redis+cluster://u:S3cr3t@127.0.0.1:7001,127.0.0.1:x", "'127.0.0.1:x'"),
        ("redis+cluster://u:S3cr3t@127.0.0.1:7001,,127.0.0.1:7002", "''"),
        ("redis+cluster://u:S3cr3t@127.0.0.1:99999", "'127.0.0.1:99999'"),
        ("redis+cluster://u:S3cr3t@127.0.0.1:7001/2", "database 0"),
        ("redis+cluster://u:S3cr3t@127.0.0.1:7001?db=0", "'db'"),
        ("redis+cluster://u:S3cr3t@127.0.0.1:7001?timeout=-1", "timeout"),
    ],
)
def test_bad_cluster_urls(url: str, named: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        open_store(url)
    assert named in str(err.value)
    assert "S3cr3t" not in str(err.value)


def test_prefix_with_braces_is_refused(redis_cluster_url: str) -> None:
    with pytest.raises(ValueError, match="braces"):
        ClusterStore.from_url(redis_cluster_url, prefix="app{1}:")


# ---------------------------------------------------------------------- slots


async def test_keys_spread_over_every_node(
    store: ClusterStore, nodes: list[redis.Redis], redis_cluster_prefix: str
) -> None:
    """A real cluster: different calls live on different nodes, one call on one node."""
    used: set[int] = set()
    for callid in range(40):
        token, _ = await store.acquire_and_get(
            f"{{{callid}}}:lock", f"{{{callid}}}:call", lease=5, wait=0
        )
        await store.set_and_release(
            f"{{{callid}}}:call", {"id": callid}, ttl=60, lock_key=f"{{{callid}}}:lock", token=token
        )
        key = f"{redis_cluster_prefix}{{{callid}}}:call"
        node = holder(nodes, key)
        assert node.get(key) == f'{{"id":{callid}}}'
        used.add(node.connection_pool.connection_kwargs["port"])
    assert len(used) == len(nodes)


@pytest.mark.parametrize(
    "operation",
    [
        lambda s, lock, key: s.acquire_and_get(lock, key, lease=5, wait=0),
        lambda s, lock, key: s.set_and_release(key, 1, ttl=60, lock_key=lock, token="t"),
    ],
    ids=["acquire_and_get", "set_and_release"],
)
async def test_keys_in_different_slots_are_refused_clearly(
    store: ClusterStore, operation: Any
) -> None:
    lock, key = "{a}:lock", "{b}:call"  # different hash tags
    assert key_slot(lock.encode()) != key_slot(key.encode())
    with pytest.raises(StoreError, match="different hash slots") as err:
        await operation(store, lock, key)
    assert not isinstance(err.value, StoreUnavailable)  # a bug in the keys, not an outage
    assert "hash tag" in str(err.value)
    assert store.pending_releases == 0  # nothing was sent, so nothing to undo
    await store.release(lock, await store.acquire(lock, lease=5, wait=0))  # lock untouched
    assert await store.get(key) is None


async def test_delete_across_slots(store: ClusterStore) -> None:
    keys = [f"{{k{i}}}:v" for i in range(12)]
    assert len({key_slot(k.encode()) for k in keys}) > 1
    for key in keys:
        await store.set(key, key, ttl=60)
    await store.delete(*keys, "{never}:set")
    for key in keys:
        assert await store.get(key) is None


async def test_scripts_reloaded_on_every_node_after_script_flush(
    store: ClusterStore, nodes: list[redis.Redis]
) -> None:
    for callid in range(12):  # scripts known to the store, on every node
        await store.release(
            f"{{{callid}}}:lock", await store.acquire(f"{{{callid}}}:lock", lease=5, wait=0)
        )
    for node in nodes:
        node.script_flush()
    for callid in range(12):
        token, value = await store.acquire_and_get(
            f"{{{callid}}}:lock", f"{{{callid}}}:call", lease=5, wait=0
        )
        assert value is None
        with pytest.raises(LockTimeout):
            await store.acquire(f"{{{callid}}}:lock", lease=5, wait=0)
        await store.set_and_release(
            f"{{{callid}}}:call", callid, ttl=60, lock_key=f"{{{callid}}}:lock", token=token
        )
        assert await store.get(f"{{{callid}}}:call") == callid


# ---------------------------------------------------------------------- failures


async def test_unreachable_cluster_raises_store_unavailable() -> None:
    store = ClusterStore.from_url(
        f"redis+cluster://u:S3cr3t@127.0.0.1:{free_port()},127.0.0.1:{free_port()}"
    )
    operations = {
        "ping": store.ping(),
        "get": store.get("k"),
        "set": store.set("k", 1, ttl=1),
        "index_add": store.index_add("i", "m", 1, ttl=1),
        "acquire": store.acquire_and_get("{c}:lock", "{c}:call", lease=1, wait=1),
    }
    try:
        for name, op in operations.items():
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as err:
                await op
            assert time.monotonic() - started < 1.0, name
            assert str(err.value).startswith(f"redis cluster {name}"), name
            assert "S3cr3t" not in str(err.value), name
    finally:
        await store.close()


async def test_wrong_password_is_unavailable_without_the_password(redis_cluster_url: str) -> None:
    url = redis_cluster_url.replace("redis+cluster://", "redis+cluster://user:S3cr3t@")
    store = open_store(url, timeout=0.5)
    try:
        assert "S3cr3t" not in repr(store)
        with pytest.raises(StoreUnavailable) as err:
            await store.ping()
        assert "S3cr3t" not in str(err.value)
    finally:
        await store.close()


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts connections and never answers (a hung node)."""
    held: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(4096):
                pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_silent_seed_is_bounded_by_the_timeout() -> None:
    async with silent_server() as port:
        store = ClusterStore.from_url(f"redis+cluster://127.0.0.1:{port}", timeout=0.2)
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await store.get("k")
            assert time.monotonic() - started < 1.0
        finally:
            await store.close()


def test_seed_nodes_in_repr(redis_cluster_url: str) -> None:
    store = ClusterStore.from_url(redis_cluster_url, prefix="p:")
    seeds = urlsplit(redis_cluster_url).netloc
    assert repr(store).startswith("ClusterStore(")
    assert all(seed in repr(store) for seed in seeds.split(","))
