"""S15, kind 3: a hang-up while a straight-line flow runs code between two awaits.

It must end *that running copy*: CallHungUp at its next await (its ``except CallHungUp``
and ``finally`` once), ``once()`` side effects once, and no second copy replaying the
flow, whatever ``RTCONTROL_FLOW_CACHE`` is, on one worker or two Apps sharing a store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, CallHungUp, LiveCall, tts
from tests.core.kit import FakeControl, SpyStore, body, first, report, step_of, within

CALL = 152_001


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


class Pay:
    """A flow that reads, runs slow code (``gate``), charges once, then plays.

    ``trail`` records what every copy did; ``starts`` how many copies ran from the top.
    """

    def __init__(self, *, spin: bool = False) -> None:
        self.trail: list[str] = []
        self.starts = 0
        self.hangups: list[Any] = []
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.spin = spin

    async def charge(self) -> str:
        self.trail.append("charge")
        return "receipt-1"

    async def slow(self) -> None:
        self.entered.set()
        if self.spin:  # slow code that yields with sleep(0) (a bare yield)
            while not self.gate.is_set():  # noqa: ASYNC110 - a bare yield on purpose
                await asyncio.sleep(0)
        else:
            await self.gate.wait()

    def register(self, app: App) -> None:
        flow = self

        async def pay(call: LiveCall) -> None:
            flow.starts += 1
            copy = flow.starts
            try:
                await call.read(tts("confirm"), max_digits=1)
                await flow.slow()
                receipt = await call.once(flow.charge)
                flow.trail.append(f"receipt:{receipt}")
                await call.play(tts("paid"))
                await call.play(tts("goodbye"))
            except CallHungUp:
                flow.trail.append(f"hung up#{copy}")
                raise
            finally:
                flow.trail.append(f"finally#{copy}" + (" dropped" if call.dropped else ""))

        app.call_flow(pay, name="pay", inbound=True)

        @app.on_hangup
        async def done(call: Any) -> None:
            flow.hangups.append(call.id)


async def settle_all(*apps: App) -> None:
    for _ in range(3):
        for app in apps:
            await within(app.settle())
        await asyncio.sleep(0.05)


async def wait_until(pred: Callable[[], bool], seconds: float = 5.0) -> None:
    async def poll() -> None:
        while not pred():  # noqa: ASYNC110 - polls state the framework keeps
            await asyncio.sleep(0.02)

    await within(poll(), seconds)


def assert_ended_once(flow: Pay, running: int) -> None:
    """The copy ``running`` (the one behind the hold) was ended by the hang-up, once;
    no copy was started after it; the charge ran at most once."""
    trail = flow.trail
    assert flow.starts == running, f"a copy was replayed after the hang-up: {trail}"
    assert trail.count(f"hung up#{running}") == 1, trail
    assert trail.count(f"finally#{running}") == 1, trail
    assert [t for t in trail if t.startswith("hung up")] == [f"hung up#{running}"], trail
    assert trail.count("charge") <= 1, trail


async def cancelled_behind_the_hold(app: App) -> None:
    """The hang-up cancelled this worker's delivery of the slow flow (it abandoned the
    flow's task); a few loop turns let that cancellation land in the task."""
    await wait_until(lambda: app.engine.deliveries.running == 0)
    for _ in range(20):
        await asyncio.sleep(0)


@pytest.mark.parametrize("flow_cache", [0, 1, 10_000])
async def test_hangup_during_sleep0_slow_code_ends_the_running_copy(
    make_app: Callable[..., App], flow_cache: int
) -> None:
    """The slow code behind the hold yields with ``asyncio.sleep(0)``. The hang-up
    reaches the copy's next await: CallHungUp there, once; finally once; no replay."""
    app = make_app(handler_budget=0.3, flow_cache=flow_cache, hangup_budget=4.0)
    flow = Pay(spin=True)
    flow.register(app)
    callid = CALL + flow_cache % 97
    r0 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r0, "1")))
    assert step_of(hold) == "@hold"
    await within(flow.entered.wait())
    running = flow.starts
    end = await app.handle_callback(report(callid, hold, status="HANGUP"))
    assert end.status == 200
    await cancelled_behind_the_hold(app)
    flow.gate.set()
    await wait_until(lambda: bool(flow.hangups))
    await settle_all(app)
    assert_ended_once(flow, running)
    assert "charge" not in flow.trail  # the hang-up came before the flow reached once()
    assert flow.hangups == [callid]


@pytest.mark.parametrize("flow_cache", [0, 10_000])
async def test_hangup_during_slow_code_ends_the_running_copy(
    make_app: Callable[..., App], flow_cache: int
) -> None:
    """The same with slow code awaiting an event (the shape the README describes)."""
    app = make_app(handler_budget=0.3, flow_cache=flow_cache)
    flow = Pay()
    flow.register(app)
    callid = CALL + 100 + flow_cache % 97
    r0 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r0, "1")))
    await within(flow.entered.wait())
    running = flow.starts
    end = await app.handle_callback(report(callid, hold, status="HANGUP"))
    assert end.status == 200
    await cancelled_behind_the_hold(app)
    flow.gate.set()
    await wait_until(lambda: bool(flow.hangups))
    await settle_all(app)
    assert_ended_once(flow, running)
    assert flow.hangups == [callid]


async def test_hangup_after_the_running_copy_was_evicted_from_a_full_cache(
    make_app: Callable[..., App],
) -> None:
    """``flow_cache=1``: while our call's flow runs behind the hold, another call's flow
    reaches its next command and fills the cache. Our running copy is not a suspended
    one: the hang-up must still end it, and no second copy may replay the flow."""
    app = make_app(handler_budget=0.3, flow_cache=1)
    ours_flow = Pay()
    ours_flow.register(app)

    @app.outbound_call
    async def other_call(call: LiveCall) -> None:
        await call.read(tts("other"), max_digits=1)

    ours, other = CALL + 200, CALL + 201
    r0 = await app.handle_callback(first(ours))
    hold = await within(app.handle_callback(report(ours, r0, "1")))
    assert step_of(hold) == "@hold"
    await within(ours_flow.entered.wait())
    running = ours_flow.starts
    # another call reaches its first command: its copy takes the cache's one place
    await app.handle_callback(first(other, request_hash="RQ-OTHER"))
    end = await app.handle_callback(report(ours, hold, status="HANGUP"))
    assert end.status == 200
    await cancelled_behind_the_hold(app)
    ours_flow.gate.set()
    await wait_until(lambda: ours in ours_flow.hangups)
    await settle_all(app)
    assert_ended_once(ours_flow, running)


async def test_a_running_copy_evicted_from_a_full_cache_still_delivers_its_command(
    make_app: Callable[..., App],
) -> None:
    """No hang-up: the cache is full while our flow runs behind the hold. The cache
    bounds *suspended* coroutines; the running copy must not be dropped, so the call
    goes on with the flow's next command (not the fallback)."""
    app = make_app(handler_budget=0.3, flow_cache=1)
    flow = Pay()
    flow.register(app)

    @app.outbound_call
    async def other_call(call: LiveCall) -> None:
        await call.read(tts("other"), max_digits=1)

    ours, other = CALL + 300, CALL + 301
    r0 = await app.handle_callback(first(ours))
    hold = await within(app.handle_callback(report(ours, r0, "1")))
    await within(flow.entered.wait())
    await app.handle_callback(first(other, request_hash="RQ-OTHER"))
    flow.gate.set()
    await settle_all(app)
    delivered = await within(app.handle_callback(report(ours, hold)))
    assert media(delivered) == "paid"
    assert flow.trail == ["charge", "receipt:receipt-1"]


@pytest.mark.parametrize("flow_cache", [0, 10_000])
async def test_hangup_on_another_worker_ends_the_flow_at_its_true_next_await(
    store: SpyStore, control: FakeControl, make_app: Callable[..., App], flow_cache: int
) -> None:
    """Two Apps share the store. Worker A runs the flow's slow code behind the hold; the
    hang-up reaches worker B, which (as documented) ends the flow there, replaying it.
    B waits for A's copy to save the journal it reached, so the charge A ran is not
    taken for one that never happened: CallHungUp is raised once, on B, at the await
    after the charge; A's copy is dropped (its finally runs, ``call.dropped``); the
    charge ran once; on_hangup once."""
    a = make_app(handler_budget=0.3, flow_cache=flow_cache)
    b = make_app(handler_budget=0.3, flow_cache=flow_cache)
    flow = Pay()
    flow.register(a)
    flow.register(b)
    callid = CALL + 400 + flow_cache % 97
    r0 = await a.handle_callback(first(callid))
    hold = await within(a.handle_callback(report(callid, r0, "1")))
    assert step_of(hold) == "@hold"
    await within(flow.entered.wait())
    running = flow.starts
    end = await b.handle_callback(report(callid, hold, status="HANGUP"))
    assert end.status == 200
    flow.gate.set()
    await wait_until(lambda: bool(flow.hangups))
    await settle_all(a, b)
    await wait_until(lambda: any(t.startswith(f"finally#{running}") for t in flow.trail))
    trail = flow.trail
    assert flow.hangups == [callid]
    assert trail.count("charge") == 1, trail
    hung = [t for t in trail if t.startswith("hung up")]
    assert hung == [f"hung up#{flow.starts}"], trail  # once, in B's copy
    assert f"finally#{running} dropped" in trail, trail
    # B's copy got the charge's receipt from the journal: it reached the await after it
    assert trail.index(f"hung up#{flow.starts}") > trail.index("charge"), trail


@pytest.mark.parametrize("flow_cache", [0, 10_000])
async def test_hangup_on_the_worker_running_the_copy_with_two_apps(
    store: SpyStore, control: FakeControl, make_app: Callable[..., App], flow_cache: int
) -> None:
    """Two Apps; the first callback on B, the slow step and the hang-up on A: the
    hang-up on the worker that runs the copy ends that copy."""
    a = make_app(handler_budget=0.3, flow_cache=flow_cache)
    b = make_app(handler_budget=0.3, flow_cache=flow_cache)
    flow = Pay()
    flow.register(a)
    flow.register(b)
    callid = CALL + 500 + flow_cache % 97
    r0 = await b.handle_callback(first(callid))
    hold = await within(a.handle_callback(report(callid, r0, "1")))
    await within(flow.entered.wait())
    running = flow.starts
    end = await a.handle_callback(report(callid, hold, status="HANGUP"))
    assert end.status == 200
    await cancelled_behind_the_hold(a)
    flow.gate.set()
    await wait_until(lambda: bool(flow.hangups))
    await settle_all(a, b)
    assert_ended_once(flow, running)
    assert flow.hangups == [callid]
