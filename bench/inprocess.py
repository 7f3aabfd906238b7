"""App-layer cost without sockets: drive an ASGI app with synthetic scope/receive/send.

No HTTP parsing, no network, no event-loop I/O: what is left is the app's own work per
request (routing, auth, body parsing, validation, dispatch, store, reply encoding).
Scopes and bodies are built before the clock starts; the timed loop only awaits the app.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from bench import payload
from bench.apps import ROUTE

ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def make_scope(body: bytes) -> dict[str, Any]:
    """A uvicorn-like HTTP scope for ``POST /cb`` with the benchmark's headers."""
    headers = [
        (b"host", b"127.0.0.1:8000"),
        (b"user-agent", b"CALLR-RT"),
        (b"content-type", b"application/json"),
        (b"authorization", payload.AUTHORIZATION.encode()),
        (b"content-length", str(len(body)).encode()),
    ]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": "POST",
        "root_path": "",
        "path": ROUTE,
        "raw_path": ROUTE.encode(),
        "query_string": b"",
        "headers": headers,
        "state": {},
    }


class _Exchange:
    """receive/send for one request; keeps the status and the reply body."""

    __slots__ = ("body", "message", "reply", "status")

    def __init__(self) -> None:
        self.message: dict[str, Any] = {}
        self.status = 0
        self.reply: list[bytes] = []

    def reset(self, body: bytes) -> None:
        self.message = {"type": "http.request", "body": body, "more_body": False}
        self.status = 0
        self.reply = []

    async def receive(self) -> dict[str, Any]:
        message = self.message
        self.message = {"type": "http.disconnect"}
        return message

    async def send(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.reply.append(message.get("body", b""))


async def call(app: ASGIApp, body: bytes) -> tuple[int, bytes]:
    """One request through ``app``: (status, reply body). For checks, not for timing."""
    ex = _Exchange()
    ex.reset(body)
    await app(make_scope(body), ex.receive, ex.send)
    return ex.status, b"".join(ex.reply)


async def run_batch(app: ASGIApp, bodies: Sequence[bytes]) -> tuple[float, float]:
    """Send every body once, in order; return (CPU, wall) µs per request.

    CPU time is this process's own (``time.process_time``): on a shared machine it
    leaves out the time other processes held the core, which wall time counts. With
    no I/O (every app but F-R) both are the same on a quiet machine. Raises on a non-200.
    """
    scopes = [make_scope(b) for b in bodies]
    ex = _Exchange()
    receive, send = ex.receive, ex.send
    bad = 0
    # The prepared scopes must not make the app's garbage collections slower: freeze
    # everything allocated so far out of the collector's sight while the clock runs.
    gc.collect()
    gc.freeze()
    try:
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for scope, body in zip(scopes, bodies, strict=True):
            ex.reset(body)
            await app(scope, receive, send)
            if ex.status != 200:
                bad += 1
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    finally:
        gc.unfreeze()
    if bad:
        raise RuntimeError(f"{bad} of {len(bodies)} requests did not answer 200")
    return cpu / len(bodies) * 1e6, wall / len(bodies) * 1e6


async def prime(app: ASGIApp, *, base: int, calls: int) -> None:
    """Give each call of the pool its first callback (rtcontrol apps only)."""
    for i in range(calls):
        status, reply = await call(app, payload.first(base + i))
        if status != 200 or b'"command":"read"' not in reply:
            raise RuntimeError(f"priming call {base + i} failed: {status} {reply[:200]!r}")


class Subject:
    """One app under test, with its own pool of calls and step counter."""

    def __init__(self, name: str, app: ASGIApp, *, base: int, calls: int, stateful: bool):
        self.name = name
        self.app = app
        self.base = base
        self.calls = calls
        self.stateful = stateful
        #: Per call, the seq of the command it runs now: every body reports it, as the
        #: platform does (only the current command's report is new).
        self.seqs = [1] * calls
        self.samples: list[float] = []  # CPU µs per request, one per round
        self.wall: list[float] = []  # wall-clock µs per request, one per round

    def bodies(self, count: int) -> list[bytes]:
        """The next ``count`` reports, over the pool: each the report of its call's current
        command (the reply to report ``seq`` is command ``seq + 1``)."""
        bodies = []
        for n in range(count):
            i = n % self.calls
            bodies.append(payload.mid(self.base + i, self.seqs[i]))
            self.seqs[i] += 1
        return bodies

    async def setup(self) -> None:
        if self.stateful:
            await prime(self.app, base=self.base, calls=self.calls)
        status, reply = await call(self.app, self.bodies(1)[0])
        if status != 200 or b'"command":"read"' not in reply:
            raise RuntimeError(f"{self.name}: unexpected reply {status} {reply[:200]!r}")

    async def round(self, count: int) -> float:
        cpu, wall = await run_batch(self.app, self.bodies(count))
        self.samples.append(cpu)
        self.wall.append(wall)
        return cpu

    @property
    def median(self) -> float:
        return statistics.median(self.samples)


async def interleaved(
    subjects: Sequence[Subject],
    *,
    requests: int,
    rounds: int,
    warmup: int,
    counts: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """A B C D A B C D...: ``rounds`` rounds of ``requests`` each; median CPU µs per app."""
    per_app = {s.name: (counts or {}).get(s.name, requests) for s in subjects}
    for s in subjects:
        await s.setup()
        if warmup:
            await run_batch(s.app, s.bodies(min(warmup, per_app[s.name])))
    for _ in range(rounds):
        for s in subjects:
            await s.round(per_app[s.name])
    return {
        s.name: {
            "us_per_request": round(s.median, 2),
            "rounds_us": [round(x, 2) for x in s.samples],
            "wall_us_per_request": round(statistics.median(s.wall), 2),
            "rounds_wall_us": [round(x, 2) for x in s.wall],
            "requests_per_round": per_app[s.name],
        }
        for s in subjects
    }


def run(coro: Awaitable[Any]) -> Any:
    """Run on uvloop when available (as uvicorn would), else asyncio."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]
