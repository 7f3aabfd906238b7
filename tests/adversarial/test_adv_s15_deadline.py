"""S15, kind 1: a live callback's reply leaves within one deadline, adversarial.

``Timing.hard_deadline``: the handler budget plus 0.5 s (at most 4.9 s), however many
store round trips the callback takes, and whatever the store does (slow, or hanging
until the test lets it go). Past it the caller gets a replay hold and nothing is lost:
the step runs again later with the same idempotency key, a straight-line flow's
``once()`` still runs once (no worker died), ``on_hangup`` runs once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, Flow, LiveCall, hangup, read, tts
from rtcontrol.errors import StoreError
from rtcontrol.events import Disposition
from rtcontrol.store.base import JSON, LockToken
from tests.core.kit import (
    FakeClock,
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    body,
    first,
    report,
    step_of,
    within,
)

CALL = 155_001
BUDGET = 1.5
HARD = BUDGET + 0.5
#: Margin for a busy 2-core machine.
SLACK = 1.0
TRIP = 1.2
SETTINGS: dict[str, Any] = {
    "handler_budget": BUDGET,
    "store_timeout": 0.6,
    "store_connect_timeout": 0.7,
}


class Store(SpyStore):
    """A shared, bounded store whose operations can be slow (``slow``: op -> seconds),
    hang until :meth:`release` (``hang``: ops), or meet a lapsed lease (``lapse``)."""

    shared = True
    bounded = True

    def __init__(self, probe: Probe, clock: FakeClock) -> None:
        super().__init__(probe, clock)
        self.slow: dict[str, float] = {}
        self.hang: set[str] = set()
        self.lapse = False
        self.fast_first_lock = False
        self._released = asyncio.Event()
        self.hung: list[str] = []

    def release_all(self) -> None:
        self.slow = {}
        self.hang = set()
        self._released.set()

    async def _trip(self, op: str, key: str = "") -> None:
        if op in self.hang:
            self.hung.append(f"{op}:{key}")
            await self._released.wait()  # a connection that never answers (until freed)
        elif op in self.slow:
            await asyncio.sleep(self.slow[op])

    async def acquire_and_get(
        self, lock_key: str, key: str, *, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        if self.fast_first_lock:
            self.fast_first_lock = False
        else:
            await self._trip("acquire_and_get", key)
        return await super().acquire_and_get(lock_key, key, lease=lease, wait=wait)

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        if self.lapse:
            self.lapse = False
            await super().release(lock_key, token)
            await self._trip("set_and_release", key)
            raise StoreError("lock lease ran out before the write (test)")
        await self._trip("set_and_release", key)
        await super().set_and_release(key, value, ttl=ttl, lock_key=lock_key, token=token)

    async def get(self, key: str) -> JSON | None:
        await self._trip("get", key)
        return await super().get(key)

    async def set(self, key: str, value: JSON, *, ttl: float) -> None:
        await self._trip("set", key)
        await super().set(key, value, ttl=ttl)

    async def index_add(self, index: str, member: str, score: float, *, ttl: float) -> None:
        await self._trip("index_add", index)
        await super().index_add(index, member, score, ttl=ttl)

    async def index_range(
        self, index: str, low: float, high: float, *, limit: int = 100
    ) -> list[tuple[str, float]]:
        await self._trip("index_range", index)
        return await super().index_range(index, low, high, limit=limit)


@pytest.fixture
def slow(probe: Probe, clock: FakeClock) -> Store:
    return Store(probe, clock)


async def timed(app: App, req: Any, **kw: Any) -> tuple[Any, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    reply = await within(app.handle_callback(req, **kw), 30.0)
    return reply, loop.time() - started


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

    app.add_flow(Menu, inbound=True, outbound=True)


# ------------------------------------------------------------------ a store that hangs


@pytest.mark.parametrize("op", ["acquire_and_get", "set_and_release"])
async def test_a_store_that_hangs_instead_of_being_slow_is_cut_at_the_deadline(
    make_app: Callable[..., App], slow: Store, op: str
) -> None:
    """The store's connection stops answering (no error, no end). The reply is a replay
    hold within the deadline; once the store answers, the replayed report runs the step
    with the idempotency key it had."""
    app = make_app(store=slow, **SETTINGS)
    rec = Recorder(app)
    runs: list[str] = []
    menu(app, runs, [])
    callid = CALL + (op == "set_and_release")
    r1 = await app.handle_callback(first(callid))
    slow.hang = {op}
    held, took = await timed(app, report(callid, r1, "1234"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert rec.last(callid) is Disposition.REPLAY
    slow.release_all()
    nxt = await within(app.handle_callback(report(callid, held, "")))
    assert body(nxt)["command"] == "read"
    assert rec.last(callid) is Disposition.REPLY
    code_runs = [r for r in runs if r.startswith("code:")]
    assert len(set(code_runs)) == 1, runs


async def test_a_hangup_whose_index_write_hangs_is_refused_in_time_and_recorded_once(
    make_app: Callable[..., App], slow: Store
) -> None:
    app = make_app(store=slow, **SETTINGS)
    hangups: list[str] = []
    menu(app, [], hangups)
    callid = CALL + 10
    r1 = await app.handle_callback(first(callid))
    r2 = await app.handle_callback(report(callid, r1, "5555"))
    slow.hang = {"index_add"}
    reply, took = await timed(app, report(callid, r2, "", status="HANGUP"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert reply.status == 503
    # the platform sends the HANGUP again while the worker still keeps it
    _, took = await timed(app, report(callid, r2, "", status="HANGUP"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    slow.release_all()

    async def recorded() -> None:
        while not hangups:  # noqa: ASYNC110 - on_hangup runs in the background
            await asyncio.sleep(0.05)

    await within(recorded(), 15.0)
    await within(app.settle())
    await asyncio.sleep(0.3)
    assert hangups == ["5555"]
    assert (await slow.record(callid)).get("ended") is True


async def test_a_hangup_whose_lock_hangs_is_refused_and_kept(
    make_app: Callable[..., App], slow: Store
) -> None:
    """The HANGUP waits for the call's lock as long as a holder may keep it (the
    engine's ``lock_wait_outside``), not forever: a store that never answers that
    request gets it refused (503) and kept, and recorded once the store answers."""
    app = make_app(store=slow, **SETTINGS)
    hangups: list[str] = []
    menu(app, [], hangups)
    callid = CALL + 11
    r1 = await app.handle_callback(first(callid))
    r2 = await app.handle_callback(report(callid, r1, "4242"))
    slow.hang = {"acquire_and_get"}
    bound = app.engine.timing.lock_wait_outside() + HARD
    task = asyncio.ensure_future(app.handle_callback(report(callid, r2, "", status="HANGUP")))
    done, _ = await asyncio.wait({task}, timeout=bound + SLACK)
    slow.release_all()
    assert done, f"a HANGUP got no reply within {bound + SLACK:.1f}s (the store hung)"
    assert task.result().status == 503

    async def recorded() -> None:
        while not hangups:  # noqa: ASYNC110 - on_hangup runs in the background
            await asyncio.sleep(0.05)

    await within(recorded(), 15.0)
    assert hangups == ["4242"]


# ------------------------------------------------------------------ outbound binding


async def test_a_slow_binding_read_and_a_slow_write_share_one_deadline(
    make_app: Callable[..., App], slow: Store, control: FakeControl
) -> None:
    """An outbound call's first callback reads its binding (slow ``get``) and writes
    (slow, with a lapsed lease): in time, a replay hold; replayed, ``start`` runs with the
    ``start_call`` data and the same idempotency key."""
    app = make_app(store=slow, **SETTINGS)
    rec = Recorder(app)
    runs: list[str] = []
    seen: list[Any] = []

    @app.on_outbound
    async def start(call: Call) -> Command:
        runs.append(call.idempotency_key)
        seen.append(dict(call.state))
        return read(tts("Code?"), max_digits=4).then(code)

    @app.step
    async def code(call: Call) -> Command:
        return hangup()

    request_hash = await app.start_call("+33612345678", data={"order": 42})
    callid = CALL + 20
    slow.slow = {"get": TRIP, "set_and_release": TRIP, "acquire_and_get": TRIP}
    slow.fast_first_lock = True
    slow.lapse = True
    held, took = await timed(app, first(callid, request_hash=request_hash))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert rec.last(callid) is Disposition.REPLAY
    slow.release_all()
    # every callback of an outbound call carries its request hash
    nxt = await within(app.handle_callback(report(callid, held, "", request_hash=request_hash)))
    assert body(nxt)["command"] == "read"
    assert seen[-1] == {"order": 42}
    assert len(set(runs)) == 1, runs


# ------------------------------------------------------------------ straight-line flows


class Pay:
    def __init__(self) -> None:
        self.charges = 0
        self.gate: asyncio.Event | None = None

    def register(self, app: App) -> None:
        flow = self

        async def charge() -> str:
            flow.charges += 1
            return f"receipt-{flow.charges}"

        async def pay(call: LiveCall) -> None:
            await call.read(tts("confirm"), max_digits=1)
            if flow.gate is not None:
                await flow.gate.wait()
            receipt = await call.once(charge)
            await call.play(tts(f"paid {receipt}"))
            await call.play(tts("goodbye"))

        app.call_flow(pay, name="pay", inbound=True)


async def test_a_straight_flows_write_cut_at_the_deadline_does_not_run_once_again(
    make_app: Callable[..., App], slow: Store
) -> None:
    """The flow resumes, charges once (``call.once``) and sends its next command; the
    write meets a lapsed lease and the store is slow: cut at the deadline, a replay
    hold. No worker died: the replayed report must not charge again (the README's one
    exception to "once per call, ever" is a worker dying before the save)."""
    app = make_app(store=slow, **SETTINGS)
    rec = Recorder(app)
    flow = Pay()
    flow.register(app)
    callid = CALL + 30
    r1 = await app.handle_callback(first(callid))
    slow.slow = {"set_and_release": TRIP, "acquire_and_get": TRIP}
    slow.fast_first_lock = True
    slow.lapse = True
    held, took = await timed(app, report(callid, r1, "1"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert rec.last(callid) is Disposition.REPLAY
    assert flow.charges == 1
    slow.release_all()
    nxt = await within(app.handle_callback(report(callid, held, "")))
    assert str(body(nxt)["params"]["media_id"]).endswith("paid receipt-1")
    assert flow.charges == 1, "once() ran again on the same worker"


async def test_a_straight_flows_hold_write_cut_at_the_deadline_does_not_run_once_again(
    make_app: Callable[..., App], slow: Store
) -> None:
    """The lock is slow, so the flow goes behind a hold; the hold's write is cut at the
    deadline (the flow's task is abandoned, and the flow goes on in the background:
    it charges). The replayed report must not charge a second time."""
    app = make_app(store=slow, **SETTINGS)
    rec = Recorder(app)
    flow = Pay()
    flow.gate = asyncio.Event()
    flow.register(app)
    callid = CALL + 31
    r1 = await app.handle_callback(first(callid))
    slow.slow = {"set_and_release": TRIP, "acquire_and_get": TRIP}
    held, took = await timed(app, report(callid, r1, "1"))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert rec.last(callid) is Disposition.REPLAY
    slow.release_all()
    flow.gate.set()
    await within(app.settle())
    for _ in range(20):
        await asyncio.sleep(0)
    reply = await within(app.handle_callback(report(callid, held, "")))
    while step_of(reply) == "@hold":
        await within(app.settle())
        reply = await within(app.handle_callback(report(callid, reply, "")))
    assert str(body(reply)["params"]["media_id"]).endswith("paid receipt-1"), body(reply)
    assert flow.charges == 1, "once() ran again on the same worker"


async def test_interrupt_behind_a_straight_hold_with_a_slow_store_answers_in_time(
    make_app: Callable[..., App], slow: Store, control: FakeControl
) -> None:
    """The broken hold's report of a straight-line flow still running behind it asks
    whether a worker still runs it (a ``get``), holds again and writes: all slow, one
    deadline."""
    app = make_app(store=slow, **SETTINGS)
    flow = Pay()
    flow.gate = asyncio.Event()
    flow.register(app)
    callid = CALL + 32
    r1 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r1, "1")))
    assert step_of(hold) == "@hold"
    await app.interrupt(callid, then=None)
    slow.slow = {"get": TRIP, "set_and_release": TRIP, "acquire_and_get": TRIP}
    again, took = await timed(app, report(callid, hold, ""))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    assert body(again)["command"] == "wait"
    slow.release_all()
    flow.gate.set()
    await within(app.settle())


async def test_a_step_delivery_after_a_hold_with_a_slow_store_answers_in_time(
    make_app: Callable[..., App], slow: Store, control: FakeControl
) -> None:
    """A slow step's command is pending; the hold's report delivers it while the store
    is slow (lock, lapsed lease, lock again, write): a replay hold in time, then the
    pending command, once."""
    app = make_app(store=slow, **SETTINGS)
    rec = Recorder(app)
    gate = asyncio.Event()

    class Slow(Flow):
        async def start(self, call: Call) -> Command:
            return read(tts("Code?"), max_digits=4).then(self.code)

        async def code(self, call: Call) -> Command:
            await gate.wait()
            return read(tts("Thanks, again?"), max_digits=1).then(self.code)

    app.add_flow(Slow, inbound=True)
    callid = CALL + 33
    r1 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r1, "7")))
    assert rec.last(callid) is Disposition.HOLD
    gate.set()
    await within(app.settle())
    slow.slow = {"set_and_release": TRIP, "acquire_and_get": TRIP}
    slow.lapse = True
    held, took = await timed(app, report(callid, hold, ""))
    assert took < HARD + SLACK, f"reply after {took:.2f}s"
    slow.release_all()
    if rec.last(callid) is Disposition.REPLAY:
        held = await within(app.handle_callback(report(callid, held, "")))
    assert body(held)["params"]["media_id"].endswith("Thanks, again?")
    assert rec.last(callid) is Disposition.DELIVERED


async def test_the_deadline_counts_from_the_proxys_receipt(
    make_app: Callable[..., App], slow: Store
) -> None:
    """``received_at`` one second ago (X-Request-Start): the reply must leave by the
    deadline counted from then."""
    import time

    app = make_app(store=slow, **SETTINGS)
    runs: list[str] = []
    menu(app, runs, [])
    callid = CALL + 34
    r1 = await app.handle_callback(first(callid))
    slow.slow = {"set_and_release": TRIP, "acquire_and_get": TRIP}
    slow.lapse = True
    _, took = await timed(app, report(callid, r1, "1"), received_at=time.time() - 1.0)
    assert took + 1.0 < HARD + SLACK, f"reply after {took + 1.0:.2f}s from receipt"
