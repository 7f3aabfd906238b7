"""K14: a live reply leaves by one deadline, however many round trips the store takes.

A shared store bounds each round trip (``RTCONTROL_STORE_TIMEOUT``), not their number:
after a Redis restart a script is sent again (NOSCRIPT), a broken connection is opened
again, a lease that lapsed during a slow write is taken again. Each phase of a live
callback (lock and read, the decision's own reads, the write) is bounded by what is
left of one deadline (``Timing.hard_deadline``: the budget plus 0.5 s, within 4.9 s).
Past it the caller is held and the report replayed, and nothing is lost: the step runs
again with its idempotency key once the store answers. A terminal callback is not
bounded: its reply is ignored, and it must be recorded.

Found by the chaos soak (a read report answered after 5 s: the write after a slow step
met a lapsed lease, and took it again, one bounded round trip at a time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rtcontrol import App, Call, Command, Flow, hangup, read, tts
from rtcontrol.errors import StoreError
from rtcontrol.events import Disposition
from rtcontrol.store.base import JSON, LockToken

from .kit import FakeClock, Probe, Recorder, SpyStore, body, first, report, within

CALL = 74_001
#: The handler budget of these tests, and the deadline it gives (budget + 0.5 s).
BUDGET = 1.5
HARD = BUDGET + 0.5
#: How long one slow round trip takes: each is "bounded" (shorter than the budget),
#: their sum is not. Unbounded, a callback below takes 3 to 4 of them (3.6-4.8 s).
TRIP = 1.2
#: Margin for a busy 2-core machine: the reply is late only past HARD + SLACK.
SLACK = 1.0
#: Each slow round trip is within what the store allows for one (timeout, plus a
#: connect): it is their number that makes a reply late.
SETTINGS: dict[str, Any] = {
    "handler_budget": BUDGET,
    "store_timeout": 0.6,
    "store_connect_timeout": 0.7,
}


class SlowSharedStore(SpyStore):
    """A store shared between workers (like Redis) whose round trips can each be slow.

    ``slow``: operation names that take :data:`TRIP` per round trip; ``lapse``: the
    next ``set_and_release`` finds its lease taken (``StoreError``), as a write after
    a lapsed lease does, so the transaction takes the lock again and writes again.
    """

    shared = True
    bounded = True

    def __init__(self, probe: Probe, clock: FakeClock) -> None:
        super().__init__(probe, clock)
        self.slow: set[str] = set()
        self.lapse = False
        #: The next lock comes at once (only what follows it is slow).
        self.fast_first_lock = False

    async def _trip(self, op: str) -> None:
        if op in self.slow:
            self.probe.hit(f"slow:{op}")
            await asyncio.sleep(TRIP)

    async def acquire_and_get(
        self, lock_key: str, key: str, *, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        if self.fast_first_lock:
            self.fast_first_lock = False
        else:
            await self._trip("acquire_and_get")
        return await super().acquire_and_get(lock_key, key, lease=lease, wait=wait)

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        if self.lapse:  # the lease ran out while the write was on its way
            self.lapse = False
            await super().release(lock_key, token)
            await self._trip("set_and_release")
            raise StoreError("lock lease ran out before the write (test)")
        await self._trip("set_and_release")
        await super().set_and_release(key, value, ttl=ttl, lock_key=lock_key, token=token)

    async def get(self, key: str) -> JSON | None:
        await self._trip("get")
        return await super().get(key)

    async def index_add(self, index: str, member: str, score: float, *, ttl: float) -> None:
        await self._trip("index_add")
        await super().index_add(index, member, score, ttl=ttl)


def menu(app: App, runs: list[str], hangups: list[str]) -> None:
    class Menu(Flow):
        async def start(self, call: Call) -> Command:
            runs.append(f"start:{call.idempotency_key}")
            return read(tts("Your code?"), max_digits=4).then(self.code)

        async def code(self, call: Call) -> Command:
            runs.append(f"code:{call.idempotency_key}")
            call.state["code"] = call.digits
            return read(tts("Again?"), max_digits=1).then(self.code)

        async def on_hangup(self, call: Call) -> None:
            hangups.append(str(call.state.get("code")))

    app.add_flow(Menu, inbound=True)


async def timed(app: App, req: Any) -> tuple[Any, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await within(app.handle_callback(req), 20.0)
    return reply, loop.time() - started


def slow_store(probe: Probe, clock: FakeClock) -> SlowSharedStore:
    return SlowSharedStore(probe, clock)


async def test_a_write_taking_the_lapsed_lock_again_is_bounded(
    make_app: Callable[..., App], probe: Probe, clock: FakeClock
) -> None:
    """The chaos soak's case: the write meets a lapsed lease and takes the lock again
    (lock, write: two more slow round trips). The caller is held in time, and the
    report, replayed, runs the step again with the same idempotency key."""
    store = slow_store(probe, clock)
    app = make_app(store=store, **SETTINGS)
    rec = Recorder(app)
    runs: list[str] = []
    menu(app, runs, [])
    r1 = await app.handle_callback(first(CALL))
    report1 = report(CALL, r1, "1234")
    # The lock comes at once; the write meets a lapsed lease (one slow trip), takes
    # the lock again (another) and writes (a third).
    store.slow = {"set_and_release", "acquire_and_get"}
    store.lapse = True
    store.fast_first_lock = True
    held, took = await timed(app, report1)
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert rec.last(CALL) is Disposition.REPLAY
    assert body(held)["command"] == "wait"
    assert len(runs) == 2
    assert runs[1].startswith("code:")
    key = runs[1]
    # The store answers again: the hold ends, the report is replayed, the step runs
    # again with the key it had, and the call goes on.
    store.slow = set()
    nxt = await within(app.handle_callback(report(CALL, held, "")))
    assert body(nxt)["command"] == "read"
    assert runs[-1] == key
    assert len(runs) == 3
    assert rec.last(CALL) is Disposition.REPLY


async def test_a_slow_lock_and_a_slow_write_share_one_deadline(
    make_app: Callable[..., App], probe: Probe, clock: FakeClock
) -> None:
    """Each round trip is within the store timeout; lock + write + write again are not."""
    store = slow_store(probe, clock)
    app = make_app(store=store, **SETTINGS)
    rec = Recorder(app)
    runs: list[str] = []
    menu(app, runs, [])
    r1 = await app.handle_callback(first(CALL + 1))
    store.slow = {"acquire_and_get", "set_and_release"}
    store.lapse = True
    held, took = await timed(app, report(CALL + 1, r1, "42"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert rec.last(CALL + 1) is Disposition.REPLAY
    assert body(held)["command"] == "wait"


async def test_a_slow_read_inside_the_decision_is_bounded(
    make_app: Callable[..., App], probe: Probe, clock: FakeClock
) -> None:
    """A slow handler's hold ends while the store is slow: the check whether its worker
    still runs it is a read (``get``), and the write after it another round trip."""
    store = slow_store(probe, clock)
    app = make_app(store=store, **SETTINGS)
    rec = Recorder(app)
    gate = asyncio.Event()

    class Slow(Flow):
        async def start(self, call: Call) -> Command:
            return read(tts("Code?"), max_digits=4).then(self.code)

        async def code(self, call: Call) -> Command:
            await gate.wait()
            return hangup()

    app.add_flow(Slow, inbound=True)
    r1 = await app.handle_callback(first(CALL + 2))
    hold = await within(app.handle_callback(report(CALL + 2, r1, "7")))
    assert rec.last(CALL + 2) is Disposition.HOLD
    store.slow = {"get", "set_and_release", "acquire_and_get"}
    again, took = await timed(app, report(CALL + 2, hold, ""))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert body(again)["command"] == "wait"
    gate.set()


async def test_a_hangup_write_is_bounded_and_the_hangup_kept(
    make_app: Callable[..., App], probe: Probe, clock: FakeClock
) -> None:
    """A HANGUP waits for the call's lock as long as a holder may keep it, but its write
    shares the deadline: cut, it is refused (503) and kept by the worker, which records
    it when the store answers again. on_hangup runs once, with the call's last state."""
    store = slow_store(probe, clock)
    app = make_app(store=store, **SETTINGS)
    hangups: list[str] = []
    menu(app, [], hangups)
    r1 = await app.handle_callback(first(CALL + 3))
    r2 = await app.handle_callback(report(CALL + 3, r1, "5555"))
    store.slow = {"set_and_release", "acquire_and_get", "index_add"}
    store.lapse = True
    reply, took = await timed(app, report(CALL + 3, r2, "", status="HANGUP"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert reply.status == 503
    store.slow = set()
    for _ in range(400):
        if hangups:
            break
        await asyncio.sleep(0.05)
    assert hangups == ["5555"]
