"""Open-loop load: N simulated calls, each posting a callback every U(2, 5) seconds.

Latency is timed from each request's **scheduled** send time, not from when it was
actually sent, so a stalled server cannot hide its stall by slowing the generator
down (coordinated omission; see https://github.com/giltene/wrk2). A call never sends
its next callback before it has the reply to the previous one (the platform does not
either); if a reply is late, the next callback leaves late and its latency still
counts from its own schedule.

Each simulated call is a real call: first callback, then 4 to 12 ``read`` results
echoing the ``command_id`` and ``variables`` of the reply it got, then a ``HANGUP``;
then a new call takes its place. Requests scheduled during the ramp (the first
``--ramp`` seconds) are sent but not counted.

The client is raw asyncio HTTP/1.1 with keep-alive (cheaper than httpx, which
saturates near 550 req/s per core). ``gen_lag`` reports how late the generator
woke up for its own schedule: if its p99 is more than a few ms, the generator, not
the server, is the bottleneck.

Run: ``taskset -c 1 python -m bench.openloop --port 8000 --calls 1000 --duration 30``.
Prints one JSON object. One process should stay under ~400 req/s (about 1,400 calls);
``bench/run.py`` splits larger loads over several processes and merges their samples.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from typing import Any

from bench import payload
from bench.apps import ROUTE

DEADLINE = 5.0  # the platform's deadline: a reply later than this is an error
IDLE_MAX = 3.0  # reuse a keep-alive connection only if idle for less than this


class Client:
    """A tiny keep-alive HTTP/1.1 client: one request per connection at a time."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0
        self.retried = 0
        head = (
            f"POST {ROUTE} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: CALLR-RT-bench\r\n"
            f"Content-Type: application/json\r\nAuthorization: {payload.AUTHORIZATION}\r\n"
        )
        self.head = head.encode()

    async def _conn(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        now = time.monotonic()
        while self.idle:
            reader, writer, used = self.idle.pop()
            if now - used < IDLE_MAX and not writer.is_closing():
                return reader, writer, True
            writer.close()
        reader, writer = await asyncio.open_connection(self.host, self.port)
        self.opened += 1
        return reader, writer, False

    async def post(self, body: bytes) -> tuple[int, bytes]:
        for attempt in (0, 1):
            reader, writer, reused = await self._conn()
            try:
                writer.write(self.head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                writer.close()
                if reused and attempt == 0:  # the server closed an idle connection: retry
                    self.retried += 1
                    continue
                raise
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            reply = await reader.readexactly(length) if length else b""
            self.idle.append((reader, writer, time.monotonic()))
            return status, reply
        raise ConnectionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.errors: dict[str, int] = {}
        self.sent = 0

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


async def simulated_call(
    idx: int,
    client: Client,
    stats: Stats,
    *,
    t0: float,
    t_count: float,
    t_end: float,
    callid_base: int,
    rng: random.Random,
) -> None:
    loop = asyncio.get_running_loop()
    sched = t0 + rng.uniform(0.0, 5.0)
    generation = 0
    while True:
        callid = callid_base + generation * 100_000 + idx
        generation += 1
        steps = rng.randint(4, 12)
        command_id: int | str = 0
        for step in range(steps + 2):  # first callback, steps, hang-up
            if sched >= t_end:
                return
            delay = sched - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            counted = sched >= t_count
            if counted:
                stats.lags.append(max(loop.time() - sched, 0.0))
            if step == 0:
                body = payload.first(callid)
            else:
                seq = _seq(command_id)
                last = step == steps + 1
                body = payload.hangup(callid, seq) if last else payload.mid(callid, seq)
            stats.sent += 1
            try:
                async with asyncio.timeout(DEADLINE * 2):
                    status, reply = await client.post(body)
            except TimeoutError:
                stats.error("timeout")
                status, reply = 0, b""
            except (OSError, asyncio.IncompleteReadError) as exc:
                stats.error(type(exc).__name__)
                status, reply = 0, b""
            latency = loop.time() - sched
            if counted:
                stats.latencies.append(latency)
            if status not in (0, 200):  # errors count during the ramp too
                stats.error(f"http_{status}")
            elif status == 200 and latency > DEADLINE:
                stats.error("late_over_5s")
            if status == 200 and reply and reply != b"{}":
                command_id = json.loads(reply).get("command_id", command_id)
            sched += rng.uniform(2.0, 5.0)
            if status != 200:  # the platform would hang up on a failed call
                break


async def prime(host: str, port: int, *, base: int, calls: int, concurrency: int = 32) -> int:
    """Give calls ``base .. base+calls-1`` their first callback; returns the failures."""
    client = Client(host, port)
    ids = iter(range(base, base + calls))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        for callid in ids:
            status, reply = await client.post(payload.first(callid))
            if status != 200 or b'"command":"read"' not in reply:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    client.close()
    return failed


def _seq(command_id: int | str) -> int:
    """The step number of an echoed id ``"<seq>:<flow>:<step>"`` (or the int itself)."""
    if isinstance(command_id, int):
        return command_id
    head = command_id.split(":", 1)[0]
    return int(head) if head.isdigit() else 0


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


async def run(
    host: str, port: int, calls: int, duration: float, ramp: float, seed: int, callid_base: int
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    client = Client(host, port)
    stats = Stats()
    rng = random.Random(seed)
    t0 = loop.time() + 0.2
    t_count = t0 + ramp
    t_end = t_count + duration
    cpu0 = time.process_time()
    tasks = [
        asyncio.create_task(
            simulated_call(
                i,
                client,
                stats,
                t0=t0,
                t_count=t_count,
                t_end=t_end,
                callid_base=callid_base,
                rng=random.Random(rng.random()),
            )
        )
        for i in range(calls)
    ]
    await asyncio.gather(*tasks)
    wall = loop.time() - t0
    cpu = time.process_time() - cpu0
    client.close()
    return {
        "calls": calls,
        "duration_s": duration,
        "ramp_s": ramp,
        "latencies": [round(x, 6) for x in stats.latencies],
        "lags": [round(x, 6) for x in stats.lags],
        "sent": stats.sent,
        "errors_by_kind": stats.errors,
        "cpu_percent": round(100 * cpu / wall, 1),
        "connections_opened": client.opened,
        "stale_connection_retries": client.retried,
    }


def summarize(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One result from the raw parts of one or more generator processes."""
    lat = sorted(x for p in parts for x in p["latencies"])
    lags = sorted(x for p in parts for x in p["lags"])
    errors: dict[str, int] = {}
    for p in parts:
        for kind, n in p["errors_by_kind"].items():
            errors[kind] = errors.get(kind, 0) + n
    duration = parts[0]["duration_s"]
    ms = 1000.0
    return {
        "calls": sum(p["calls"] for p in parts),
        "generator_processes": len(parts),
        "duration_s": duration,
        "ramp_s": parts[0]["ramp_s"],
        "requests_counted": len(lat),
        "requests_sent": sum(p["sent"] for p in parts),
        "rate_per_s": round(len(lat) / duration, 1),
        "latency_ms": {
            "p50": round(_pct(lat, 50) * ms, 3),
            "p90": round(_pct(lat, 90) * ms, 3),
            "p99": round(_pct(lat, 99) * ms, 3),
            "p999": round(_pct(lat, 99.9) * ms, 3),
            "max": round(lat[-1] * ms, 3) if lat else None,
        },
        "over_1s": sum(1 for x in lat if x > 1.0),
        "errors": sum(errors.values()),
        "errors_by_kind": errors,
        "gen_lag_ms": {
            "p50": round(_pct(lags, 50) * ms, 3),
            "p99": round(_pct(lags, 99) * ms, 3),
            "max": round(lags[-1] * ms, 3) if lags else None,
        },
        "gen_cpu_percent": max(p["cpu_percent"] for p in parts),
        "connections_opened": sum(p["connections_opened"] for p in parts),
        "stale_connection_retries": sum(p["stale_connection_retries"] for p in parts),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--ramp", type=float, default=5.0, help="seconds sent, not counted")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--callid-base", type=int, default=9_000_000)
    parser.add_argument("--raw", action="store_true", help="print raw samples (for merging)")
    args = parser.parse_args()
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        parser.error("this generator only targets the local machine")
    coro = run(
        args.host, args.port, args.calls, args.duration, args.ramp, args.seed, args.callid_base
    )
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        result = asyncio.run(coro)
    else:
        result = uvloop.run(coro)
    print(json.dumps(result if args.raw else summarize([result])))


if __name__ == "__main__":
    main()
