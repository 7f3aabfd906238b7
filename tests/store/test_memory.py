"""MemoryStore only: nothing outlives its call (keys, lock entries), expired keys are swept."""

from __future__ import annotations

import asyncio
import time

import pytest

from rtcontrol.errors import LockTimeout
from rtcontrol.store import MemoryStore


class Clock:
    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


async def test_no_leak_after_callback_cycles() -> None:
    store = MemoryStore()
    for callid in range(200):
        lock, key = f"lock:{callid}", f"call:{callid}"
        token, value = await store.acquire_and_get(lock, key, lease=5, wait=1)
        assert value is None
        await store.set_and_release(key, {"seq": 1}, ttl=60, lock_key=lock, token=token)
        token, value = await store.acquire_and_get(lock, key, lease=5, wait=1)
        assert value == {"seq": 1}
        await store.set_and_release(key, None, ttl=60, lock_key=lock, token=token)
        async with store.lock(lock, lease=5, wait=1):
            await store.set(key, 1, ttl=60)
        await store.update(key, lambda _old: None, ttl=60)
    assert len(store) == 0
    assert store.lock_count == 0


async def test_no_lock_entry_left_by_waiters_and_timeouts() -> None:
    store = MemoryStore()

    async def contend(i: int) -> None:
        try:
            async with store.lock("hot", lease=5, wait=0.05 if i % 2 else 2):
                await asyncio.sleep(0.005)
        except LockTimeout:
            pass

    await asyncio.gather(*(contend(i) for i in range(40)))
    assert store.lock_count == 0

    token = await store.acquire("held", lease=5, wait=0)
    with pytest.raises(LockTimeout):
        await store.acquire("held", lease=5, wait=0.01)
    assert store.lock_count == 1  # the holder only
    assert await store.release("held", token)
    assert store.lock_count == 0


async def test_abandoned_lock_entry_is_dropped() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, sweep_interval=1)
    await store.acquire("abandoned", lease=0.5, wait=0)
    clock.offset += 2
    await store.set("other", 1, ttl=60)  # traffic that triggers a sweep
    assert len(store) == 1
    assert store.lock_count == 0


async def test_expired_keys_are_swept_during_traffic() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, sweep_interval=1)
    for i in range(100):
        await store.set(f"k{i}", i, ttl=0.5)
    clock.offset += 2
    await store.set("fresh", 1, ttl=60)  # a write past the sweep interval sweeps
    # Internal check on purpose: len() forces a sweep and would hide a missing one.
    assert list(store._data) == ["fresh"]


async def test_expired_key_dropped_on_read() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, sweep_interval=3600)
    await store.set("k", 1, ttl=0.5)
    clock.offset += 1
    assert await store.get("k") is None
    assert "k" not in store._data


def test_not_shared() -> None:
    assert MemoryStore.shared is False


async def test_expired_indexes_are_swept_during_traffic() -> None:
    clock = Clock()
    store = MemoryStore(clock=clock, sweep_interval=1)
    for i in range(50):
        await store.index_add(f"idx{i}", "m", i, ttl=0.5)
    await store.index_add("fresh", "m", 1, ttl=60)
    clock.offset += 2
    await store.set("k", 1, ttl=60)  # a write past the sweep interval sweeps
    # Internal check on purpose: index_count forces a sweep and would hide a missing one.
    assert list(store._indexes) == ["fresh"]
    assert store.index_count == 1


async def test_emptied_index_leaves_nothing_behind() -> None:
    store = MemoryStore()
    await store.index_add("idx", "a", 1, ttl=60)
    await store.index_remove("idx", "a")
    assert store.index_count == 0
