"""K6 (adversarial): markers with their side effects; holds end promptly when nobody will
deliver; one break per command broken."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rtcontrol import App, Call, Command, hangup, play, read, tts
from rtcontrol.events import Disposition
from tests.core.kit import (
    FakeClock,
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    body,
    first,
    hangup_after,
    hold_key,
    is_fallback,
    report,
    step_of,
    within,
)

CALL = 96_001


async def test_interrupt_of_a_held_call_then_the_slow_handler_finishing_sends_one_break(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """The caller is on the hold of a slow handler; interrupt() records its action and
    breaks the hold. The slow handler then finishes before the hold's report arrives:
    its command is moot (the interrupt's action wins) and the hold is already broken,
    so no second realtime_break may be sent for the same command."""
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        return play(tts("Your balance"))

    hold = await within(app.handle_callback(first(CALL)))
    assert step_of(hold) == "@hold"
    assert await app.interrupt(CALL, then=hangup()) is True
    assert control.breaks == [CALL]
    gate.set()
    await within(app.settle())
    assert control.breaks == [CALL], "the hold was broken twice"
    reply = await app.handle_callback(report(CALL, hold))
    assert body(reply)["command"] == "hangup"
    assert events.last(CALL) is Disposition.INTERRUPT


async def test_delivery_break_then_interrupt_before_the_hold_reports_sends_one_break(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """Same command (the hold), other order: the delivery broke it, then interrupt()
    comes before its report. The hold is already broken: one break in all."""
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        return play(tts("Your balance"))

    hold = await within(app.handle_callback(first(CALL)))
    gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]
    await app.interrupt(CALL, then=hangup())
    assert control.breaks == [CALL], "the hold was broken twice"
    reply = await app.handle_callback(report(CALL, hold))
    assert body(reply)["command"] == "hangup"


def two_slow_steps(app: App, cancelled: dict[str, asyncio.Event]) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(slow1)

    @app.step
    async def slow1(call: Call) -> Command:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled["slow1"].set()
            raise
        return play(tts("never"))

    @app.step
    async def slow2(call: Call) -> Command:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled["slow2"].set()
            raise
        return play(tts("never"))


async def test_hold_of_a_dead_worker_runs_its_step_again_even_if_an_older_run_lives_here(
    make_app: Callable[..., App], store: SpyStore, clock: FakeClock
) -> None:
    """Worker A still runs slow1 (its hold was superseded by an interrupt). Worker B ran
    slow2 behind a new hold and died. The new hold's report reaches A: A must not take
    its own, older, unrelated run as proof that slow2's worker is alive."""
    events: dict[str, asyncio.Event] = {"slow1": asyncio.Event(), "slow2": asyncio.Event()}
    worker_a = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=1.0)
    worker_b = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=1.0)
    two_slow_steps(worker_a, events)
    two_slow_steps(worker_b, {"slow1": asyncio.Event(), "slow2": asyncio.Event()})
    Recorder(worker_a)

    r0 = await worker_a.handle_callback(first(CALL))
    hold1 = await within(worker_a.handle_callback(report(CALL, r0, "1")))  # slow1 on A
    assert step_of(hold1) == "@hold"
    await worker_a.interrupt(CALL, then=play(tts("Menu")).then("slow2"))
    menu = await within(worker_b.handle_callback(report(CALL, hold1)))  # action, on B
    assert body(menu)["command"] == "play"
    hold2 = await within(worker_b.handle_callback(report(CALL, menu)))  # slow2 on B
    assert step_of(hold2) == "@hold"

    worker_b.engine.deliveries.cancel(CALL)  # worker B dies
    await within(worker_b.settle())
    clock.advance(4.0)  # B's alive key (3 leases) ran out

    token2 = (await store.record(CALL))["hold"]["token"]
    reply = await within(worker_a.handle_callback(report(CALL, hold2)))
    # Not taken as alive: slow2 runs again here from its report (slow again: a new hold).
    assert not is_fallback(reply)
    assert step_of(reply) == "@hold"
    assert (await store.record(CALL))["hold"]["token"] != token2, (
        "held again: A's own unrelated run counted as B being alive"
    )
    assert worker_a.engine.deliveries.running == 2  # its old slow1, and slow2 run again


async def test_hangup_cancels_every_slow_handler_of_the_call(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """slow1 runs behind a hold; an interrupt moves the call on; slow2 then runs behind a
    new hold. HANGUP: neither may keep running (up to background_timeout)."""
    cancelled: dict[str, asyncio.Event] = {"slow1": asyncio.Event(), "slow2": asyncio.Event()}
    app = make_app(handler_budget=0.3, background_timeout=30.0)
    two_slow_steps(app, cancelled)
    r0 = await app.handle_callback(first(CALL))
    hold1 = await within(app.handle_callback(report(CALL, r0, "1")))
    await app.interrupt(CALL, then=play(tts("Menu")).then("slow2"))
    menu = await within(app.handle_callback(report(CALL, hold1)))
    hold2 = await within(app.handle_callback(report(CALL, menu)))
    assert step_of(hold2) == "@hold"

    assert (await app.handle_callback(hangup_after(CALL, hold2))).body == b"{}"
    await within(cancelled["slow2"].wait(), 3.0)
    await within(cancelled["slow1"].wait(), 3.0)


async def test_hold_reports_while_delivery_waits_for_the_lock_send_one_break(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        return play(tts("Done"))

    hold = await within(app.handle_callback(first(CALL)))
    again = await within(app.handle_callback(report(CALL, hold)))  # re-held
    assert step_of(again) == "@hold"
    gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]
    delivered = await app.handle_callback(report(CALL, again))
    assert body(delivered)["params"]["media_id"].endswith("Done")
    assert control.breaks == [CALL]


async def test_live_slow_handler_is_not_cut_short_by_an_older_runs_alive_key(
    make_app: Callable[..., App], store: SpyStore, probe: Probe
) -> None:
    """Worker A still runs slow1 (superseded by an interrupt) and keeps renewing the call's
    alive key with its token. Worker B runs slow2 behind the current hold, alive. The
    hold's report reaches worker C: B is alive, so the caller must be held again, not
    given the fallback because A's renewal overwrote B's token."""
    worker_a = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=0.5)
    worker_b = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=0.5)
    worker_c = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=0.5)
    for app in (worker_a, worker_b, worker_c):
        two_slow_steps(app, {"slow1": asyncio.Event(), "slow2": asyncio.Event()})
    recorder = Recorder(worker_c)

    r0 = await worker_a.handle_callback(first(CALL))
    hold1 = await within(worker_a.handle_callback(report(CALL, r0, "1")))  # slow1 on A
    token1 = (await store.record(CALL))["hold"]["token"]
    await worker_a.interrupt(CALL, then=play(tts("Menu")).then("slow2"))
    menu = await within(worker_b.handle_callback(report(CALL, hold1)))
    hold2 = await within(worker_b.handle_callback(report(CALL, menu)))  # slow2 on B, alive
    key = hold_key(CALL, token1)
    sets = probe.counts[f"set:{key}"]
    await probe.wait(f"set:{key}", sets + 1)  # A renews its own (superseded) run's key
    assert worker_b.engine.deliveries.running == 1  # B is alive and runs slow2

    reply = await within(worker_c.handle_callback(report(CALL, hold2)))
    assert not is_fallback(reply), "a live slow handler was cut short"
    assert recorder.last(CALL) is Disposition.HOLD
