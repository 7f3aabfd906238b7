"""A slow Redis is not a dead Redis (K10), and no lock outlives an acquire that gave up (K12).

A real Redis behind :class:`DelayProxy`, which holds every chunk back for a set time in
each direction. Bounds are generous: the machine may be busy.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
from delay_proxy import DelayProxy

from rtcontrol.errors import StoreUnavailable
from rtcontrol.store.redis import RedisStore

pytestmark = pytest.mark.redis

LOCK = "{c7}:lock"
CALL = "{c7}:call"
DEADLINE = 5.0  # the callback deadline two round trips must fit in


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[DelayProxy]:
    target = urlsplit(redis_url)
    assert target.hostname is not None
    assert target.port is not None
    async with DelayProxy(target.hostname, target.port) as p:
        yield p


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    """Straight to Redis, past the proxy."""
    with redis.Redis.from_url(redis_url, decode_responses=True) as client:
        yield client


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the loop's exception handler (e.g. a task exception never retrieved).

    Such errors are reported when the task is collected: call ``gc.collect()`` first.
    """
    loop = asyncio.get_running_loop()
    seen: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    yield seen
    loop.set_exception_handler(previous)


def through(proxy: DelayProxy, prefix: str, **kwargs: Any) -> RedisStore:
    return RedisStore.from_url(proxy.url, prefix=prefix, **kwargs)


async def hot_path(store: RedisStore, n: int) -> float:
    """One callback's two round trips; returns the seconds they took."""
    started = time.monotonic()
    token, value = await store.acquire_and_get(LOCK, CALL, lease=1.0, wait=1.0)
    assert value == (None if n == 1 else {"n": n - 1})
    await store.set_and_release(CALL, {"n": n}, ttl=60, lock_key=LOCK, token=token)
    return time.monotonic() - started


# ---------------------------------------------------------------------- K10


async def test_fresh_store_works_at_600ms_round_trips(proxy: DelayProxy, redis_prefix: str) -> None:
    """0.3 s each way: the connection, its handshake and both scripts fit the deadline."""
    proxy.delay = 0.3
    store = through(proxy, redis_prefix)  # default bounds: 1 s per round trip, 2 s to connect
    try:
        first = await hot_path(store, 1)
        assert 1.1 < first < DEADLINE  # two delayed round trips (1.2 s), and no timeout
        second = await hot_path(store, 2)
        assert 1.1 < second < DEADLINE
        assert proxy.accepted == 1  # the second callback reused the warm connection
    finally:
        await store.close()


async def test_ping_at_start_up_warms_the_connection(proxy: DelayProxy, redis_prefix: str) -> None:
    proxy.delay = 0.3
    store = through(proxy, redis_prefix)
    try:
        await store.ping()
        assert proxy.accepted == 1
        elapsed = await hot_path(store, 1)
        assert elapsed < DEADLINE
        assert proxy.accepted == 1
    finally:
        await store.close()


async def test_answer_later_than_the_timeout_fails_then_recovers(
    proxy: DelayProxy, redis_prefix: str
) -> None:
    store = through(proxy, redis_prefix, timeout=0.5)
    try:
        await store.set(CALL, 1, ttl=60)  # warm, undelayed
        proxy.delay = 0.4  # 0.8 s round trips: past the 0.5 s bound
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match=r"no answer within 0\.5s"):
            await store.get(CALL)
        assert 0.45 < time.monotonic() - started < 1.0  # one bound: a timeout is not retried
        proxy.delay = 0.1  # slow again, but within the bound
        assert await store.get(CALL) == 1  # a fresh connection replaces the broken one
        assert proxy.accepted == 2
    finally:
        await store.close()


# ---------------------------------------------------------------------- K12


async def test_acquire_that_timed_out_releases_the_lock_it_took(
    proxy: DelayProxy, redis_prefix: str, raw: redis.Redis, loop_errors: list[dict[str, Any]]
) -> None:
    store = through(proxy, redis_prefix, timeout=0.5)
    try:
        await store.ping()
        proxy.down_delay = 2.0  # requests reach Redis at once; answers are late
        with pytest.raises(StoreUnavailable):
            await store.acquire_and_get(LOCK, CALL, lease=30, wait=0)
        proxy.down_delay = 0  # Redis answers again (set before the release task runs)
        token = raw.get(f"{redis_prefix}{LOCK}")
        assert token is not None  # the script did take the lock, though the caller gave up
        assert store.pending_releases == 1
    finally:
        await store.close()  # waits for the pending release
    assert store.pending_releases == 0
    assert raw.get(f"{redis_prefix}{LOCK}") is None  # released: no 30 s wait for the lease
    gc.collect()
    assert loop_errors == []


async def test_acquire_cancelled_mid_flight_releases_the_lock(
    proxy: DelayProxy, redis_prefix: str, raw: redis.Redis
) -> None:
    store = through(proxy, redis_prefix)
    try:
        await store.ping()
        sent = proxy.delivered
        proxy.down_delay = 2.0
        task = asyncio.create_task(store.acquire_and_get(LOCK, CALL, lease=30, wait=0))
        await proxy.wait_delivered(sent + 1)  # the script is at Redis
        deadline = time.monotonic() + 5
        while raw.get(f"{redis_prefix}{LOCK}") is None:  # ...and has run
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        proxy.down_delay = 0
        assert store.pending_releases == 1
    finally:
        await store.close()
    assert raw.get(f"{redis_prefix}{LOCK}") is None


async def test_acquire_whose_connection_broke_releases_the_lock(
    proxy: DelayProxy, redis_prefix: str, raw: redis.Redis
) -> None:
    """The script ran, then the connection broke and the one retry could not connect."""
    store = through(proxy, redis_prefix)
    try:
        await store.ping()
        sent = proxy.delivered
        proxy.down_delay = 2.0
        task = asyncio.create_task(store.acquire_and_get(LOCK, CALL, lease=30, wait=0))
        await proxy.wait_delivered(sent + 1)
        deadline = time.monotonic() + 5
        while raw.get(f"{redis_prefix}{LOCK}") is None:  # the script has run
            assert time.monotonic() < deadline
            await asyncio.sleep(0.005)
        proxy.refusing = True
        proxy.cut()
        with pytest.raises(StoreUnavailable, match="ConnectionError"):
            await task
        proxy.refusing = False  # reachable again before the release task runs
        proxy.down_delay = 0
        assert store.pending_releases == 1
    finally:
        await store.close()
    assert raw.get(f"{redis_prefix}{LOCK}") is None


async def test_release_of_an_abandoned_acquire_fails_quietly(
    proxy: DelayProxy,
    redis_prefix: str,
    raw: redis.Redis,
    loop_errors: list[dict[str, Any]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis stays too slow: the release fails too, is logged, and leaks no task error."""
    store = through(proxy, redis_prefix, timeout=0.3)
    try:
        await store.ping()
        proxy.down_delay = 2.0
        with caplog.at_level(logging.WARNING, logger="rtcontrol.store"):
            with pytest.raises(StoreUnavailable):
                await store.acquire_and_get(LOCK, CALL, lease=30, wait=0)
            proxy.up_delay = 2.0  # and now requests are late too: the release cannot land
            assert store.pending_releases == 1
            await store.close()
        assert store.pending_releases == 0
        assert "not released" in caplog.text
        assert raw.get(f"{redis_prefix}{LOCK}") is not None  # left to its lease
        gc.collect()
        assert loop_errors == []
    finally:
        await store.close()


async def test_background_releases_are_bounded(
    proxy: DelayProxy, redis_prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = through(proxy, redis_prefix, timeout=0.3)
    try:
        await store.ping()
        proxy.down_delay = 2.0
        with caplog.at_level(logging.WARNING, logger="rtcontrol.store"):
            results = await asyncio.gather(
                *(store.acquire(f"{{c{i}}}:lock", lease=30, wait=0) for i in range(80)),
                return_exceptions=True,
            )
            assert all(isinstance(r, StoreUnavailable) for r in results)
            assert store.pending_releases == 64
            assert "too many pending lock releases" in caplog.text
        proxy.down_delay = 0
    finally:
        await store.close()
    assert store.pending_releases == 0
