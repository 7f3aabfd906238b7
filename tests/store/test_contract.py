"""The Store contract, run against every backend (memory and Redis).

``advance(s)`` moves time: the memory store runs on a clock that is real time plus an
offset (so lock waits still work), Redis simply sleeps.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rtcontrol.errors import LockTimeout, StoreError
from rtcontrol.store import MemoryStore, Store
from rtcontrol.store.redis import RedisStore

Advance = Callable[[float], Awaitable[None]]


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
async def store(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore(clock=clock)
    else:
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        s = RedisStore.from_url(url, prefix=prefix)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def advance(store: Store, clock: Clock) -> Advance:
    async def advance(seconds: float) -> None:
        if isinstance(store, MemoryStore):
            clock.offset += seconds
            await asyncio.sleep(0)
        else:
            await asyncio.sleep(seconds)

    return advance


# ---------------------------------------------------------------------- values


async def test_get_set_delete(store: Store) -> None:
    assert await store.get("a") is None
    await store.set("a", {"x": 1}, ttl=60)
    await store.set("b", [1, 2], ttl=60)
    assert await store.get("a") == {"x": 1}
    await store.set("a", "replaced", ttl=60)
    assert await store.get("a") == "replaced"
    await store.delete("a", "b", "never-set")
    assert await store.get("a") is None
    assert await store.get("b") is None
    await store.delete()  # no keys: a no-op


@pytest.mark.parametrize("value", [0, False, "", [], {}, 1.5, "null"])
async def test_falsy_and_odd_values_round_trip(store: Store, value: Any) -> None:
    await store.set("k", value, ttl=60)
    got = await store.get("k")
    assert got == value
    assert type(got) is type(value)


async def test_ttl_expiry(store: Store, advance: Advance) -> None:
    await store.set("short", 1, ttl=0.2)
    await store.set("long", 2, ttl=60)
    assert await store.get("short") == 1
    await advance(0.3)
    assert await store.get("short") is None
    assert await store.get("long") == 2


async def test_set_refreshes_ttl(store: Store, advance: Advance) -> None:
    await store.set("k", 1, ttl=0.2)
    await advance(0.1)
    await store.set("k", 2, ttl=0.5)
    await advance(0.2)
    assert await store.get("k") == 2


async def test_json_round_trip(store: Store) -> None:
    value = {
        "unicode": "héllo ☎ 日本 \U0001f4de",
        "big": 2**64 - 1,
        "neg": -(2**63),
        "float": 0.1,
        "nested": {"list": [1, [2, [3, {"deep": None}]]], "empty": {}, "t": True},
        "quote": 'a"b\\c\n',
    }
    await store.set("j", value, ttl=60)
    got = await store.get("j")
    assert got == value
    assert got["big"] == 18446744073709551615


@pytest.mark.parametrize("bad", [math.nan, math.inf, {"x": [-math.inf]}])
async def test_nan_refused(store: Store, bad: Any) -> None:
    await store.set("k", "before", ttl=60)
    with pytest.raises(ValueError, match="JSON"):
        await store.set("k", bad, ttl=60)
    with pytest.raises(ValueError, match="JSON"):
        await store.update("k", lambda _old: bad, ttl=60)
    assert await store.get("k") == "before"


async def test_copy_semantics(store: Store) -> None:
    value = {"a": [1]}
    await store.set("k", value, ttl=60)
    value["a"].append(2)
    got = await store.get("k")
    assert got == {"a": [1]}
    got["a"].append(3)
    assert await store.get("k") == {"a": [1]}
    new = await store.update("k", lambda old: {"a": [*old["a"], 9]}, ttl=60)
    new["a"].clear()
    assert await store.get("k") == {"a": [1, 9]}


# ---------------------------------------------------------------------- update


async def test_update_creates_and_returns_new(store: Store) -> None:
    seen: list[Any] = []

    def bump(old: Any) -> Any:
        seen.append(old)
        return {"n": (old or {"n": 0})["n"] + 1}

    assert await store.update("u", bump, ttl=60) == {"n": 1}
    assert await store.update("u", bump, ttl=60) == {"n": 2}
    assert seen == [None, {"n": 1}]
    assert await store.get("u") == {"n": 2}


async def test_update_none_deletes(store: Store) -> None:
    await store.set("u", 5, ttl=60)
    assert await store.update("u", lambda _old: None, ttl=60) is None
    assert await store.get("u") is None
    assert await store.update("absent", lambda _old: None, ttl=60) is None
    assert await store.get("absent") is None


async def test_update_sets_ttl(store: Store, advance: Advance) -> None:
    await store.update("u", lambda _old: 1, ttl=0.2)
    await advance(0.3)
    assert await store.get("u") is None


async def test_update_is_atomic_under_concurrency(store: Store) -> None:
    async def incr() -> None:
        await store.update("counter", lambda old: (old or 0) + 1, ttl=60)

    await asyncio.gather(*(incr() for _ in range(50)))
    assert await store.get("counter") == 50


# ---------------------------------------------------------------------- locks


async def test_lock_mutual_exclusion(store: Store) -> None:
    inside = 0
    most = 0
    entered = 0

    async def worker() -> None:
        nonlocal inside, most, entered
        async with store.lock("L", lease=5, wait=10):
            inside += 1
            entered += 1
            most = max(most, inside)
            await store.get("anything")  # yield to the loop while holding the lock
            await asyncio.sleep(0)
            inside -= 1

    await asyncio.gather(*(worker() for _ in range(20)))
    assert entered == 20
    assert most == 1


async def test_lock_wait_timeout(store: Store) -> None:
    token = await store.acquire("L", lease=5, wait=0)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        await store.acquire("L", lease=5, wait=0.15)
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 1.0
    with pytest.raises(LockTimeout):
        await store.acquire("L", lease=5, wait=0)
    assert await store.release("L", token) is True
    assert await store.release("L", token) is False  # already released
    await store.release("L", await store.acquire("L", lease=5, wait=0))


async def test_waiter_gets_lock_when_released(store: Store) -> None:
    token = await store.acquire("L", lease=5, wait=0)
    waiter = asyncio.create_task(store.acquire("L", lease=5, wait=2))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    assert await store.release("L", token) is True
    second = await waiter
    assert time.monotonic() - started < 0.2
    assert second != token
    assert await store.release("L", second) is True


async def test_lease_expiry_lets_another_in(store: Store, advance: Advance) -> None:
    await store.acquire("L", lease=0.2, wait=0)
    with pytest.raises(LockTimeout):
        await store.acquire("L", lease=5, wait=0)
    await advance(0.3)
    await store.acquire("L", lease=5, wait=0)


async def test_waiter_gets_lock_when_lease_runs_out(store: Store) -> None:
    await store.acquire("L", lease=0.2, wait=0)
    started = time.monotonic()
    await store.acquire("L", lease=5, wait=2)
    assert 0.1 <= time.monotonic() - started < 1.0


async def test_stale_token_does_not_release_new_holder(store: Store, advance: Advance) -> None:
    old = await store.acquire("L", lease=0.2, wait=0)
    await advance(0.3)
    new = await store.acquire("L", lease=5, wait=0)
    assert await store.release("L", old) is False
    with pytest.raises(LockTimeout):
        await store.acquire("L", lease=5, wait=0)  # the new holder still has it
    assert await store.release("L", new) is True


async def test_write_after_lease_overtaken_is_refused(store: Store, advance: Advance) -> None:
    """A holder whose lease ran out must not erase what the next holder wrote."""
    old, _ = await store.acquire_and_get("L", "call", lease=0.2, wait=0)
    await advance(0.3)
    new, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)
    await store.set_and_release("call", {"by": "new"}, ttl=60, lock_key="L", token=new)
    with pytest.raises(StoreError):
        await store.set_and_release("call", {"by": "old"}, ttl=60, lock_key="L", token=old)
    assert await store.get("call") == {"by": "new"}


async def test_expired_lease_release_is_false(store: Store, advance: Advance) -> None:
    token = await store.acquire("L", lease=0.2, wait=0)
    await advance(0.3)
    assert await store.release("L", token) is False
    await store.acquire("L", lease=5, wait=0)


async def test_locks_are_per_key(store: Store) -> None:
    a = await store.acquire("A", lease=5, wait=0)
    b = await store.acquire("B", lease=5, wait=0)
    assert a != b
    assert await store.release("A", a)
    assert await store.release("B", b)


async def test_lock_context_manager(store: Store) -> None:
    async with store.lock("L", lease=5, wait=0) as token:
        assert isinstance(token, str)
        assert token
        with pytest.raises(LockTimeout):
            await store.acquire("L", lease=5, wait=0)
    await store.release("L", await store.acquire("L", lease=5, wait=0))


async def test_lock_context_manager_releases_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with store.lock("L", lease=5, wait=0):
            raise RuntimeError("boom")
    await store.acquire("L", lease=5, wait=0)


# ---------------------------------------------------------------------- hot path


async def test_acquire_and_get_then_set_and_release(store: Store) -> None:
    token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
    assert value is None
    with pytest.raises(LockTimeout):
        await store.acquire_and_get("L", "call", lease=5, wait=0)
    await store.set_and_release("call", {"seq": 1}, ttl=60, lock_key="L", token=token)
    assert await store.get("call") == {"seq": 1}

    token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
    assert value == {"seq": 1}
    await store.set_and_release("call", {"seq": 2}, ttl=60, lock_key="L", token=token)
    assert await store.get("call") == {"seq": 2}
    await store.release("L", await store.acquire("L", lease=5, wait=0))  # lock is free


async def test_set_and_release_none_deletes(store: Store) -> None:
    await store.set("call", {"seq": 1}, ttl=60)
    token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
    assert value == {"seq": 1}
    await store.set_and_release("call", None, ttl=60, lock_key="L", token=token)
    assert await store.get("call") is None
    await store.acquire("L", lease=5, wait=0)


async def test_set_and_release_ttl(store: Store, advance: Advance) -> None:
    token, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)
    await store.set_and_release("call", 1, ttl=0.2, lock_key="L", token=token)
    await advance(0.3)
    assert await store.get("call") is None


async def test_acquire_and_get_waits_for_holder(store: Store) -> None:
    token, _ = await store.acquire_and_get("L", "call", lease=5, wait=0)

    async def writer() -> None:
        await asyncio.sleep(0.05)
        await store.set_and_release("call", "written", ttl=60, lock_key="L", token=token)

    task = asyncio.create_task(writer())
    second, value = await store.acquire_and_get("L", "call", lease=5, wait=2)
    await task
    assert value == "written"  # read only after the holder's write
    assert second != token


async def test_hot_path_is_serialised(store: Store) -> None:
    """Read-modify-write through the hot path loses no update."""

    async def callback() -> None:
        token, value = await store.acquire_and_get("L", "call", lease=5, wait=10)
        await asyncio.sleep(0)
        await store.set_and_release(
            "call", {"n": (value or {"n": 0})["n"] + 1}, ttl=60, lock_key="L", token=token
        )

    await asyncio.gather(*(callback() for _ in range(30)))
    assert await store.get("call") == {"n": 30}


async def test_acquire_and_get_returns_a_copy(store: Store) -> None:
    await store.set("call", {"a": [1]}, ttl=60)
    token, value = await store.acquire_and_get("L", "call", lease=5, wait=0)
    value["a"].append(2)
    await store.release("L", token)
    assert await store.get("call") == {"a": [1]}
