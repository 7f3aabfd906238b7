"""Straight-line flows against step flows, measured in the same run (issue 10).

Three costs per callback, through ``App.handle_callback`` (the core, no HTTP, the
memory store), in interleaved rounds so a noisy neighbour hits all of them alike:

* **S** a step flow: ``read(...).then(self.again)`` answered by a step returning the
  next ``read`` (the baseline);
* **L** the same IVR as a straight-line flow (``while True: await call.read(...)``)
  on the worker that holds its coroutine: the common case, no replay;
* **R20** the callback of a straight-line call whose journal holds 20 commands, on a
  worker that does not hold it (``RTCONTROL_FLOW_CACHE=0``): the flow is replayed
  from the top, 20 awaits answered from the journal, then the 21st is the reply.

Targets: L/S <= 1.2, R20/S <= 5. Medians of the rounds; only the ``handle_callback``
await is timed (building the next request is not).

Memory per live call (tracemalloc, bytes left allocated by N live calls divided by
N): the step flow (its record in the store) and the straight-line flow (its record
with a one-command journal, plus the suspended coroutine kept in the cache).

Run alone: ``python -m bench.straight`` (``--quick`` for a smoke run); prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import time
import tracemalloc
from typing import Any

from rtcontrol import App, Call, Command, Flow, LiveCall, read, tts
from rtcontrol.protocol import RTRequest
from rtcontrol.store import MemoryStore

PROMPT = tts("Enter your code")
BASE = 6_000_000


class Loop(Flow):
    name = "loop"

    async def start(self, call: Call) -> Command:
        return read(PROMPT, max_digits=4).then(self.again)

    async def again(self, call: Call) -> Command:
        return read(PROMPT, max_digits=4).then(self.again)


async def straight(call: LiveCall) -> None:
    while True:
        await call.read(PROMPT, max_digits=4)


def make_app(kind: str, store: MemoryStore, **settings: Any) -> App:
    app = App(store=store, allow_no_auth=True, blocking_warn=0, **settings)
    if kind == "step":
        app.add_flow(Loop, inbound=True)
    else:
        app.call_flow(straight, name="loop", inbound=True)
    app.serving = True
    return app


def first(callid: int) -> RTRequest:
    return RTRequest.model_validate(
        {
            "app": "4346423A",
            "callid": callid,
            "call_status": "INCOMING_CALL",
            "cli_number": "+33612345678",
            "number": "+33123456789",
            "command": "",
            "command_id": 0,
            "command_result": "",
        }
    )


def report(callid: int, reply: bytes) -> RTRequest:
    sent = json.loads(reply)
    return RTRequest.model_validate(
        {
            "app": "4346423A",
            "callid": callid,
            "call_status": "UP",
            "cli_number": "+33612345678",
            "number": "+33123456789",
            "command": sent["command"],
            "command_id": sent["command_id"],
            "command_result": "1234",
            "variables": sent.get("variables", {}),
        }
    )


async def advance(app: App, callid: int, reply: bytes | None, steps: int) -> bytes:
    if reply is None:
        reply = (await app.handle_callback(first(callid))).body
        steps -= 1
    for _ in range(steps):
        reply = (await app.handle_callback(report(callid, reply))).body
    return reply


class Subject:
    """One measured kind: a pool of live calls, each round one callback per call."""

    def __init__(self, name: str, calls: int, base: int, journal: int = 0) -> None:
        self.name = name
        self.calls = [base + i for i in range(calls)]
        self.journal = journal
        self.store = MemoryStore()
        kind = "step" if name == "S" else "straight"
        self.app = make_app(kind, self.store)
        # R20: the measured worker keeps no coroutine, so every callback replays.
        self.replayer = make_app(kind, self.store, flow_cache=0) if journal else None
        self.replies: dict[int, bytes] = {}
        self.rounds: list[float] = []

    async def setup(self) -> None:
        for callid in self.calls:
            self.replies[callid] = await advance(self.app, callid, None, max(self.journal, 1))

    async def round(self) -> None:
        app = self.replayer or self.app
        total = 0.0
        for callid in self.calls:
            req = report(callid, self.replies[callid])
            t0 = time.perf_counter()
            reply = await app.handle_callback(req)
            total += time.perf_counter() - t0
            self.replies[callid] = reply.body
        if self.replayer is not None:  # back to a 20-command journal for the next round
            await self._reset()
        self.rounds.append(total / len(self.calls) * 1e6)

    async def _reset(self) -> None:
        """Give every call of R20 a fresh 20-command journal (new call ids)."""
        shift = 100_000
        self.calls = [c + shift for c in self.calls]
        self.replies = {}
        for callid in self.calls:
            self.replies[callid] = await advance(self.app, callid, None, self.journal)

    @property
    def median(self) -> float:
        return statistics.median(self.rounds)

    async def close(self) -> None:
        for app in (self.app, self.replayer):
            if app is not None:
                await app.shutdown(timeout=2.0)


async def measure(calls: int, rounds: int) -> dict[str, Any]:
    subjects = [
        Subject("S", calls, BASE),
        Subject("L", calls, BASE + 1_000_000),
        Subject("R20", calls, BASE + 2_000_000, journal=20),
    ]
    for s in subjects:
        await s.setup()
        await s.round()  # warm-up, not counted
        s.rounds.clear()
    for n in range(rounds):
        order = subjects if n % 2 == 0 else subjects[::-1]
        for s in order:
            await s.round()
    out = {
        s.name: {"us": round(s.median, 1), "rounds": [round(r, 1) for r in s.rounds]}
        for s in subjects
    }
    base = out["S"]["us"]
    out["L/S"] = round(out["L"]["us"] / base, 3)
    out["R20/S"] = round(out["R20"]["us"] / base, 3)
    for s in subjects:
        await s.close()
    return out


async def memory(calls: int, kind: str) -> float:
    store = MemoryStore()
    app = make_app(kind, store, flow_cache=calls * 2)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for i in range(calls):
        await advance(app, BASE + 5_000_000 + i, None, 2)
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(s.size_diff for s in after.compare_to(before, "filename"))
    live = len(app.registry.sessions)
    await app.shutdown(timeout=2.0)
    if kind == "straight" and live != calls:
        raise RuntimeError(f"expected {calls} suspended coroutines, found {live}")
    return grown / calls


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=200, help="live calls per kind and round")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--mem-calls", type=int, default=2000)
    p.add_argument("--quick", action="store_true")
    opts = p.parse_args()
    if opts.quick:
        opts.calls, opts.rounds, opts.mem_calls = 50, 3, 200
    result = asyncio.run(measure(opts.calls, opts.rounds))
    result["memory_bytes_per_call"] = {
        "step": round(asyncio.run(memory(opts.mem_calls, "step"))),
        "straight": round(asyncio.run(memory(opts.mem_calls, "straight"))),
    }
    result["params"] = {"calls": opts.calls, "rounds": opts.rounds, "mem_calls": opts.mem_calls}
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
