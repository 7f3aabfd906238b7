"""The Store contract, run against every backend (memory, Redis, Redis Cluster).

``advance(s)`` moves time: the memory store runs on a clock that is real time plus an
offset (so lock waits still work), Redis simply sleeps.

Keys used together (a lock and the record it guards) share a hash tag, as the engine's
do (``rtc:{42}:lock``, ``rtc:{42}:call``), so the cluster runs them on one node.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from rtcontrol.errors import LockTimeout, StoreError
from rtcontrol.store import Encoded, MemoryStore, Store
from rtcontrol.store.cluster import ClusterStore
from rtcontrol.store.redis import RedisStore

Advance = Callable[[float], Awaitable[None]]

LOCK = "{c42}:lock"
CALL = "{c42}:call"


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(
    params=[
        "memory",
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("cluster", marks=pytest.mark.redis),
    ]
)
async def store(request: pytest.FixtureRequest, clock: Clock) -> AsyncIterator[Store]:
    if request.param == "memory":
        s: Store = MemoryStore(clock=clock)
    elif request.param == "redis":
        url = request.getfixturevalue("redis_url")
        prefix = request.getfixturevalue("redis_prefix")
        s = RedisStore.from_url(url, prefix=prefix)
    else:
        url = request.getfixturevalue("redis_cluster_url")
        prefix = request.getfixturevalue("redis_cluster_prefix")
        s = ClusterStore.from_url(url, prefix=prefix)
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
        async with store.lock(LOCK, lease=5, wait=10):
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
    token = await store.acquire(LOCK, lease=5, wait=0)
    started = time.monotonic()
    with pytest.raises(LockTimeout):
        await store.acquire(LOCK, lease=5, wait=0.15)
    elapsed = time.monotonic() - started
    assert 0.1 <= elapsed < 1.0
    with pytest.raises(LockTimeout):
        await store.acquire(LOCK, lease=5, wait=0)
    assert await store.release(LOCK, token) is True
    assert await store.release(LOCK, token) is False  # already released
    await store.release(LOCK, await store.acquire(LOCK, lease=5, wait=0))


async def test_waiter_gets_lock_when_released(store: Store) -> None:
    token = await store.acquire(LOCK, lease=5, wait=0)
    waiter = asyncio.create_task(store.acquire(LOCK, lease=5, wait=2))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    assert await store.release(LOCK, token) is True
    second = await waiter
    assert time.monotonic() - started < 0.2
    assert second != token
    assert await store.release(LOCK, second) is True


async def test_lease_expiry_lets_another_in(store: Store, advance: Advance) -> None:
    await store.acquire(LOCK, lease=0.2, wait=0)
    with pytest.raises(LockTimeout):
        await store.acquire(LOCK, lease=5, wait=0)
    await advance(0.3)
    await store.acquire(LOCK, lease=5, wait=0)


async def test_waiter_gets_lock_when_lease_runs_out(store: Store) -> None:
    await store.acquire(LOCK, lease=0.2, wait=0)
    started = time.monotonic()
    await store.acquire(LOCK, lease=5, wait=2)
    assert 0.1 <= time.monotonic() - started < 1.0


async def test_stale_token_does_not_release_new_holder(store: Store, advance: Advance) -> None:
    old = await store.acquire(LOCK, lease=0.2, wait=0)
    await advance(0.3)
    new = await store.acquire(LOCK, lease=5, wait=0)
    assert await store.release(LOCK, old) is False
    with pytest.raises(LockTimeout):
        await store.acquire(LOCK, lease=5, wait=0)  # the new holder still has it
    assert await store.release(LOCK, new) is True


async def test_write_after_lease_overtaken_is_refused(store: Store, advance: Advance) -> None:
    """A holder whose lease ran out must not erase what the next holder wrote."""
    old, _ = await store.acquire_and_get(LOCK, CALL, lease=0.2, wait=0)
    await advance(0.3)
    new, _ = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    await store.set_and_release(CALL, {"by": "new"}, ttl=60, lock_key=LOCK, token=new)
    with pytest.raises(StoreError):
        await store.set_and_release(CALL, {"by": "old"}, ttl=60, lock_key=LOCK, token=old)
    assert await store.get(CALL) == {"by": "new"}


async def test_expired_lease_release_is_false(store: Store, advance: Advance) -> None:
    token = await store.acquire(LOCK, lease=0.2, wait=0)
    await advance(0.3)
    assert await store.release(LOCK, token) is False
    await store.acquire(LOCK, lease=5, wait=0)


async def test_locks_are_per_key(store: Store) -> None:
    a = await store.acquire("A", lease=5, wait=0)
    b = await store.acquire("B", lease=5, wait=0)
    assert a != b
    assert await store.release("A", a)
    assert await store.release("B", b)


async def test_lock_context_manager(store: Store) -> None:
    async with store.lock(LOCK, lease=5, wait=0) as token:
        assert isinstance(token, str)
        assert token
        with pytest.raises(LockTimeout):
            await store.acquire(LOCK, lease=5, wait=0)
    await store.release(LOCK, await store.acquire(LOCK, lease=5, wait=0))


async def test_lock_context_manager_releases_on_error(store: Store) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        async with store.lock(LOCK, lease=5, wait=0):
            raise RuntimeError("boom")
    await store.acquire(LOCK, lease=5, wait=0)


# ---------------------------------------------------------------------- hot path


async def test_acquire_and_get_then_set_and_release(store: Store) -> None:
    token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    assert value is None
    with pytest.raises(LockTimeout):
        await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    await store.set_and_release(CALL, {"seq": 1}, ttl=60, lock_key=LOCK, token=token)
    assert await store.get(CALL) == {"seq": 1}

    token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    assert value == {"seq": 1}
    await store.set_and_release(CALL, {"seq": 2}, ttl=60, lock_key=LOCK, token=token)
    assert await store.get(CALL) == {"seq": 2}
    await store.release(LOCK, await store.acquire(LOCK, lease=5, wait=0))  # lock is free


async def test_set_and_release_none_deletes(store: Store) -> None:
    await store.set(CALL, {"seq": 1}, ttl=60)
    token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    assert value == {"seq": 1}
    await store.set_and_release(CALL, None, ttl=60, lock_key=LOCK, token=token)
    assert await store.get(CALL) is None
    await store.acquire(LOCK, lease=5, wait=0)


async def test_set_and_release_ttl(store: Store, advance: Advance) -> None:
    token, _ = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    await store.set_and_release(CALL, 1, ttl=0.2, lock_key=LOCK, token=token)
    await advance(0.3)
    assert await store.get(CALL) is None


async def test_acquire_and_get_waits_for_holder(store: Store) -> None:
    token, _ = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)

    async def writer() -> None:
        await asyncio.sleep(0.05)
        await store.set_and_release(CALL, "written", ttl=60, lock_key=LOCK, token=token)

    task = asyncio.create_task(writer())
    second, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=2)
    await task
    assert value == "written"  # read only after the holder's write
    assert second != token


async def test_hot_path_is_serialised(store: Store) -> None:
    """Read-modify-write through the hot path loses no update."""

    async def callback() -> None:
        token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=10)
        await asyncio.sleep(0)
        await store.set_and_release(
            CALL, {"n": (value or {"n": 0})["n"] + 1}, ttl=60, lock_key=LOCK, token=token
        )

    await asyncio.gather(*(callback() for _ in range(30)))
    assert await store.get(CALL) == {"n": 30}


async def test_acquire_and_get_returns_a_copy(store: Store) -> None:
    await store.set(CALL, {"a": [1]}, ttl=60)
    token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    value["a"].append(2)
    await store.release(LOCK, token)
    assert await store.get(CALL) == {"a": [1]}


async def test_short_lease_kept_by_renewal(store: Store, advance: Advance) -> None:
    """The engine's pattern: a short lease, renewed while it works, then the write."""
    token, _ = await store.acquire_and_get(LOCK, CALL, lease=1.0, wait=0)
    for _ in range(3):  # 1.2 s in all: longer than the lease
        await advance(0.4)
        assert await store.renew(LOCK, token, lease=1.0) is True
    with pytest.raises(LockTimeout):
        await store.acquire_and_get(LOCK, CALL, lease=1.0, wait=0)
    await store.set_and_release(CALL, {"kept": True}, ttl=60, lock_key=LOCK, token=token)
    assert await store.get(CALL) == {"kept": True}


# ---------------------------------------------------------------------- renew


async def test_renew_extends_lease_from_now(store: Store, advance: Advance) -> None:
    token = await store.acquire(LOCK, lease=1.0, wait=0)
    await advance(0.5)
    assert await store.renew(LOCK, token, lease=2.0) is True
    await advance(0.7)  # past the first lease, inside the renewed one
    with pytest.raises(LockTimeout):
        await store.acquire(LOCK, lease=5, wait=0)
    assert await store.release(LOCK, token) is True


async def test_renew_can_shorten_the_lease(store: Store, advance: Advance) -> None:
    token = await store.acquire(LOCK, lease=30, wait=0)
    assert await store.renew(LOCK, token, lease=0.2) is True
    await advance(0.3)
    other = await store.acquire(LOCK, lease=5, wait=0)
    assert other != token


async def test_renew_after_lease_ran_out_is_false(store: Store, advance: Advance) -> None:
    token = await store.acquire(LOCK, lease=0.2, wait=0)
    await advance(0.3)
    assert await store.renew(LOCK, token, lease=5) is False
    await store.acquire(LOCK, lease=5, wait=0)  # the renew did not take it back


async def test_renew_never_takes_a_free_lock(store: Store) -> None:
    assert await store.renew(LOCK, "made-up-token", lease=5) is False
    token = await store.acquire(LOCK, lease=5, wait=0)
    assert await store.release(LOCK, token) is True
    assert await store.renew(LOCK, token, lease=5) is False  # released: not ours any more
    await store.release(LOCK, await store.acquire(LOCK, lease=5, wait=0))


async def test_renew_by_another_token_leaves_the_holder_alone(
    store: Store, advance: Advance
) -> None:
    old = await store.acquire(LOCK, lease=0.2, wait=0)
    await advance(0.3)
    new = await store.acquire(LOCK, lease=0.3, wait=0)
    assert await store.renew(LOCK, old, lease=30) is False
    await advance(0.4)  # the new holder's own lease ran out: the stale renew did not extend it
    assert await store.renew(LOCK, new, lease=5) is False
    await store.acquire(LOCK, lease=5, wait=0)


@pytest.mark.parametrize("lease", [0, -1, math.nan, math.inf])
async def test_renew_refuses_a_bad_lease(store: Store, lease: float) -> None:
    token = await store.acquire(LOCK, lease=5, wait=0)
    with pytest.raises(ValueError, match="lease"):
        await store.renew(LOCK, token, lease=lease)
    assert await store.release(LOCK, token) is True


# ---------------------------------------------------------------------- indexes


async def test_index_range_by_score(store: Store) -> None:
    await store.index_add("idx", "c", 3.0, ttl=60)
    await store.index_add("idx", "a", 1.0, ttl=60)
    await store.index_add("idx", "b", 2.0, ttl=60)
    await store.index_add("idx", "neg", -5.5, ttl=60)
    assert await store.index_range("idx", 1.0, 2.0) == [("a", 1.0), ("b", 2.0)]  # inclusive
    assert await store.index_range("idx", -math.inf, math.inf) == [
        ("neg", -5.5),
        ("a", 1.0),
        ("b", 2.0),
        ("c", 3.0),
    ]
    assert await store.index_range("idx", 2.5, math.inf) == [("c", 3.0)]
    assert await store.index_range("idx", -math.inf, 0) == [("neg", -5.5)]
    assert await store.index_range("idx", 10, 20) == []
    assert await store.index_range("idx", 3, 1) == []  # low above high
    assert await store.index_range("absent", -math.inf, math.inf) == []


async def test_index_range_limit_and_ties(store: Store) -> None:
    for member in ("m3", "m1", "m2"):
        await store.index_add("idx", member, 7.0, ttl=60)
    await store.index_add("idx", "early", 1.0, ttl=60)
    assert await store.index_range("idx", -math.inf, math.inf, limit=2) == [
        ("early", 1.0),
        ("m1", 7.0),  # equal scores come by member
    ]
    everything = await store.index_range("idx", -math.inf, math.inf)
    assert [m for m, _ in everything] == ["early", "m1", "m2", "m3"]
    assert await store.index_range("idx", -math.inf, math.inf, limit=0) == []


async def test_index_add_replaces_the_score(store: Store) -> None:
    await store.index_add("idx", "call", 10.0, ttl=60)
    await store.index_add("idx", "call", 2.0, ttl=60)
    assert await store.index_range("idx", -math.inf, math.inf) == [("call", 2.0)]


async def test_index_scores_round_trip_exactly(store: Store) -> None:
    due = 1_767_225_600.123456  # a wall-clock time with microseconds
    await store.index_add("idx", "é☎", due, ttl=60)
    await store.index_add("idx", "tiny", 1e-9, ttl=60)
    assert await store.index_range("idx", due, due) == [("é☎", due)]
    assert await store.index_range("idx", 0, 1e-9) == [("tiny", 1e-9)]


async def test_index_remove(store: Store) -> None:
    await store.index_add("idx", "a", 1, ttl=60)
    await store.index_add("idx", "b", 2, ttl=60)
    await store.index_add("idx", "c", 3, ttl=60)
    await store.index_remove("idx", "a", "c", "never-added")
    assert await store.index_range("idx", -math.inf, math.inf) == [("b", 2.0)]
    await store.index_remove("idx")  # no members: a no-op
    await store.index_remove("absent", "x")
    await store.index_remove("idx", "b")
    assert await store.index_range("idx", -math.inf, math.inf) == []
    await store.index_add("idx", "again", 1, ttl=60)  # an emptied index can be reused
    assert await store.index_range("idx", -math.inf, math.inf) == [("again", 1.0)]


async def test_index_ttl_runs_from_the_last_add(store: Store, advance: Advance) -> None:
    await store.index_add("idx", "a", 1, ttl=1.0)
    await advance(0.6)
    await store.index_add("idx", "b", 2, ttl=1.0)  # keeps the whole index alive
    await advance(0.6)  # past the first add's TTL
    assert await store.index_range("idx", -math.inf, math.inf) == [("a", 1.0), ("b", 2.0)]
    await advance(0.8)
    assert await store.index_range("idx", -math.inf, math.inf) == []


async def test_indexes_are_separate_from_each_other_and_from_values(store: Store) -> None:
    await store.index_add("one", "m", 1, ttl=60)
    await store.index_add("two", "m", 2, ttl=60)
    await store.set("three", "a value", ttl=60)
    assert await store.index_range("one", -math.inf, math.inf) == [("m", 1.0)]
    assert await store.index_range("two", -math.inf, math.inf) == [("m", 2.0)]
    assert await store.get("three") == "a value"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.index_add("idx", "m", math.nan, ttl=60),
        lambda s: s.index_add("idx", "m", 1, ttl=0),
        lambda s: s.index_add("idx", "m", 1, ttl=-1),
        lambda s: s.index_range("idx", math.nan, 1),
        lambda s: s.index_range("idx", 0, math.nan),
    ],
    ids=["nan-score", "zero-ttl", "negative-ttl", "nan-low", "nan-high"],
)
async def test_index_refuses_bad_numbers(store: Store, call: Any) -> None:
    with pytest.raises(ValueError, match="must be"):
        await call(store)
    assert await store.index_range("idx", -math.inf, math.inf) == []


# ---------------------------------------------------------------------- encoded values


async def test_encoded_value_is_written_as_is(store: Store) -> None:
    text = '{"seq":3,"flow":"main","data":{"é":[1,2.5,null]}}'
    await store.set("k", Encoded(text), ttl=60)
    assert await store.get("k") == {"seq": 3, "flow": "main", "data": {"é": [1, 2.5, None]}}


async def test_encoded_value_through_the_hot_path_and_update(store: Store) -> None:
    token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    assert value is None
    await store.set_and_release(CALL, Encoded('{"n":1}'), ttl=60, lock_key=LOCK, token=token)
    token, value = await store.acquire_and_get(LOCK, CALL, lease=5, wait=0)
    assert value == {"n": 1}
    await store.set_and_release(CALL, Encoded('{"n":2}'), ttl=60, lock_key=LOCK, token=token)
    assert await store.get(CALL) == {"n": 2}
    new = await store.update(CALL, lambda old: Encoded(f'{{"n":{old["n"] + 1}}}'), ttl=60)
    assert new == {"n": 3}
    assert await store.get(CALL) == {"n": 3}
