"""Memory per active call in the memory store, at 10,000 calls.

Each call gets its first callback and one more step through ``App.handle`` (the core,
no HTTP), so its record holds what a live call holds: flow, sequence, current command,
the duplicate fingerprint and the cached reply, and one value of per-call state.

Headline figure: **tracemalloc**, bytes still allocated after the calls minus before
(everything the calls left behind: the store's dict, keys, records; transient objects
are freed and collected before the second snapshot), divided by the number of calls.
Cross-checks: a deep ``sys.getsizeof`` walk of the store's own data, and the RSS
difference of the process (coarse, allocator-dependent; a separate run without
tracemalloc so its bookkeeping does not inflate it).

Run alone: ``python -m bench.memory --calls 10000``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
import tracemalloc
from typing import Any

from bench import payload
from bench.apps import make_rtcontrol
from rtcontrol.protocol import RTRequest
from rtcontrol.store import MemoryStore

BASE = 8_000_000


def _deep_size(obj: Any, seen: set[int]) -> int:
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple | set | frozenset):
        size += sum(_deep_size(v, seen) for v in obj)
    return size


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # pragma: no cover


async def _drive(calls: int, *, trace: bool) -> dict[str, Any]:
    app = make_rtcontrol()
    store = app.store
    assert isinstance(store, MemoryStore)
    firsts = [RTRequest.model_validate_json(payload.first(BASE + i)) for i in range(calls)]
    steps = [RTRequest.model_validate_json(payload.mid(BASE + i, 1)) for i in range(calls)]
    # Warm every lazy cache (pydantic, logging, metrics children) on calls we then drop.
    for i in range(50):
        await app.handle(RTRequest.model_validate_json(payload.first(BASE - 1000 + i)))
        await app.handle(RTRequest.model_validate_json(payload.mid(BASE - 1000 + i, 1)))
    await store.delete(*(f"rtc:{{{BASE - 1000 + i}}}:call" for i in range(50)))
    gc.collect()
    if trace:
        tracemalloc.start()
    before_traced = tracemalloc.get_traced_memory()[0] if trace else 0
    before_rss = _rss_kib()
    for req in firsts:
        await app.handle(req)
    for req in steps:
        await app.handle(req)
    del req
    gc.collect()
    after_traced = tracemalloc.get_traced_memory()[0] if trace else 0
    after_rss = _rss_kib()
    if trace:
        tracemalloc.stop()
    live = len(store)
    if live != calls:
        raise RuntimeError(f"expected {calls} live records, the store holds {live}")
    data = store._data
    sample_key = f"rtc:{{{BASE}}}:call"
    record_text = data[sample_key][1]
    return {
        "tracemalloc_bytes": after_traced - before_traced,
        "rss_kib": after_rss - before_rss,
        "deep_size_bytes": _deep_size(data, set()),
        "locks_left": store.lock_count,
        "record_json_bytes": len(record_text.encode()),
        "record_example": json.loads(record_text),
    }


def measure(calls: int = 10_000) -> dict[str, Any]:
    traced = asyncio.run(_drive(calls, trace=True))
    untraced = asyncio.run(_drive(calls, trace=False))
    per_call = traced["tracemalloc_bytes"] / calls
    return {
        "calls": calls,
        "callbacks_per_call": 2,
        "method": "tracemalloc: bytes left allocated after the calls, minus before, / calls",
        "bytes_per_call": round(per_call, 1),
        "kib_per_call": round(per_call / 1024, 3),
        "deep_size_bytes_per_call": round(traced["deep_size_bytes"] / calls, 1),
        "rss_bytes_per_call": round(untraced["rss_kib"] * 1024 / calls, 1),
        "record_json_bytes": traced["record_json_bytes"],
        "record_example": traced["record_example"],
        "locks_left": traced["locks_left"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    args = parser.parse_args()
    print(json.dumps(measure(args.calls), indent=2))


if __name__ == "__main__":
    main()
