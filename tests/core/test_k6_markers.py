"""K6: markers are written with the side effect they stand for.

An interrupt on the handler's own call is the handler's reply (no break); a slow
handler's command is delivered whatever it left behind; a hold whose worker is gone
ends in the fallback as soon as it reports.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable

import pytest

from rtcontrol import App, Call, Command, hangup, play, read, tts
from rtcontrol.errors import ApiError
from rtcontrol.events import CommandDelivered, Disposition

from .kit import (
    FakeClock,
    FakeControl,
    Recorder,
    SpyStore,
    body,
    command_id,
    first,
    hold_key,
    is_fallback,
    logged,
    report,
    spawn,
    step_of,
    within,
)

CALL = 76_001


def no_orphans(caplog: pytest.LogCaptureFixture) -> None:
    """No task died unobserved (asyncio logs it when the task is collected)."""
    gc.collect()
    text = caplog.text
    assert "Task exception was never retrieved" not in text
    assert "background task failed" not in text


# ------------------------------------------------------------------ (a) own interrupt


async def test_interrupt_of_its_own_call_from_a_step_is_its_reply_without_a_break(
    make_app: Callable[..., App], control: FakeControl, store: SpyStore
) -> None:
    app = make_app()
    events = Recorder(app)
    returned: list[bool] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        returned.append(await app.interrupt(call.id, then=hangup()))
        return play(tts("never sent")).then(choice)

    r0 = await app.handle_callback(first(CALL))
    reply = await within(app.handle_callback(report(CALL, r0, "1")), 2.0)  # no deadlock
    assert body(reply)["command"] == "hangup"
    assert step_of(reply) == "-"
    assert events.last(CALL) is Disposition.INTERRUPT
    assert returned == [False]
    assert control.breaks == []
    assert "interrupt" not in await store.record(CALL)
    assert await store.lock_is_free(CALL)


async def test_own_interrupt_with_a_step_runs_that_step_instead(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app()
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        assert await call.interrupt("operator") is False
        return play(tts("never sent"))

    @app.step
    async def operator(call: Call) -> Command:
        runs.append(f"operator:{call.interrupted}")
        return play(tts("Connecting"))

    r0 = await app.handle_callback(first(CALL))
    reply = await within(app.handle_callback(report(CALL, r0, "0")), 2.0)
    assert body(reply)["params"]["media_id"].endswith("Connecting")
    assert runs == ["operator:True"]
    assert control.breaks == []


@pytest.mark.parametrize("before_await", [False, True], ids=["after-await", "before-await"])
async def test_own_interrupt_from_a_slow_step_is_delivered_behind_the_hold(
    make_app: Callable[..., App], control: FakeControl, before_await: bool
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()
    returned: list[bool] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        if before_await:
            returned.append(await call.interrupt(hangup()))
        await gate.wait()
        if not before_await:
            returned.append(await call.interrupt(hangup()))
        return play(tts("never sent"))

    try:
        hold = await within(app.handle_callback(first(CALL)))
        assert step_of(hold) == "@hold"
    finally:
        gate.set()
    await within(app.settle())
    assert returned == [False]
    assert control.breaks == [CALL]  # the delivery's break, ending the hold
    delivered = await app.handle_callback(report(CALL, hold))
    assert body(delivered)["command"] == "hangup"
    assert events.last(CALL) is Disposition.DELIVERED


async def test_own_interrupt_with_a_step_from_a_slow_step_runs_that_step(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """Behind the hold as on time: ``interrupt(then=step)`` replaces the handler's reply."""
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        await call.interrupt("operator")
        return play(tts("mine"))

    @app.step
    async def operator(call: Call) -> Command:
        runs.append("operator")
        return play(tts("Connecting"))

    try:
        hold = await within(app.handle_callback(first(CALL)))
    finally:
        gate.set()
    await within(app.settle())
    delivered = await within(app.handle_callback(report(CALL, hold)))
    await within(app.settle())
    assert runs == ["operator"]
    assert body(delivered)["params"]["media_id"].endswith("Connecting")


# ------------------------------------------------------------------ (b) bad state behind the hold


def slow_app(app: App, gate: asyncio.Event, *, early: bool) -> asyncio.Event:
    """start -> read.then(slow); ``slow`` waits for ``gate`` and leaves a set in the state
    (``early``: before it starts waiting, i.e. before the hold is written)."""
    entered = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(slow)

    @app.step
    async def slow(call: Call) -> Command:
        if early:
            call.state["tags"] = {"vip"}
        entered.set()
        await gate.wait()
        call.state["n"] = 2
        call.state["tags"] = {"vip"}
        return play(tts("Your balance")).then(slow)

    return entered


async def test_slow_step_leaving_a_set_in_state_still_gets_the_fallback_delivered(
    make_app: Callable[..., App],
    control: FakeControl,
    store: SpyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()
    slow_app(app, gate, early=False)
    caplog.set_level(logging.INFO)
    r0 = await app.handle_callback(first(CALL))
    try:
        hold = await within(app.handle_callback(report(CALL, r0, "1234")))
        assert step_of(hold) == "@hold"
    finally:
        gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]  # the break is sent once
    assert events.of(CommandDelivered) == [CommandDelivered(CALL, "play", True)]
    errors = logged(caplog)
    assert len(errors) == 1, errors
    assert "main.slow" in errors[0]
    assert "call.state" in errors[0]
    assert (await store.record(CALL))["state"] == {"n": 1}

    delivered = await app.handle_callback(report(CALL, hold))  # the broken hold reports
    assert is_fallback(delivered)
    assert events.last(CALL) is Disposition.DELIVERED
    assert control.breaks == [CALL]
    no_orphans(caplog)


async def test_slow_step_that_put_a_set_in_state_before_its_deadline_is_held_then_fallback(
    make_app: Callable[..., App],
    control: FakeControl,
    store: SpyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The natural order (change the state, then await slow I/O): the state is already
    unstorable when the hold is written. The caller must still hear the hold, then the
    fallback; nothing may escape the engine."""
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()
    slow_app(app, gate, early=True)
    caplog.set_level(logging.INFO)
    r0 = await app.handle_callback(first(CALL))
    try:
        hold = await within(app.handle_callback(report(CALL, r0, "1234")))
        assert step_of(hold) == "@hold"
        assert events.last(CALL) is Disposition.HOLD
    finally:
        gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]
    delivered = await app.handle_callback(report(CALL, hold))
    assert is_fallback(delivered)
    assert (await store.record(CALL))["state"] == {"n": 1}
    assert len(logged(caplog)) == 1
    no_orphans(caplog)


async def test_slow_step_that_raises_behind_the_hold_gets_the_fallback_delivered(
    make_app: Callable[..., App], control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        raise RuntimeError("crm down")

    caplog.set_level(logging.INFO)
    try:
        hold = await within(app.handle_callback(first(CALL)))
    finally:
        gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]
    assert is_fallback(await app.handle_callback(report(CALL, hold)))
    errors = logged(caplog)
    assert len(errors) == 1
    assert "raised behind the hold" in errors[0]
    no_orphans(caplog)


async def test_refused_break_leaves_the_command_for_the_hold_to_deliver(
    make_app: Callable[..., App], control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()
    control.break_error = ApiError("calls.realtime_break: no such call")

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        return play(tts("Your balance"))

    try:
        hold = await within(app.handle_callback(first(CALL)))
    finally:
        gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]
    assert events.of(CommandDelivered) == [CommandDelivered(CALL, "play", False)]
    delivered = await app.handle_callback(report(CALL, hold))  # the hold ends by itself
    assert body(delivered)["params"]["media_id"].endswith("Your balance")
    assert events.last(CALL) is Disposition.DELIVERED
    no_orphans(caplog)


async def test_slow_step_past_the_background_timeout_gets_the_fallback(
    make_app: Callable[..., App], control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.2, background_timeout=0.4)
    cancelled: list[bool] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise
        return play(tts("never"))

    caplog.set_level(logging.INFO)
    hold = await within(app.handle_callback(first(CALL)))
    await within(app.settle())
    assert cancelled == [True]
    assert control.breaks == [CALL]
    assert is_fallback(await app.handle_callback(report(CALL, hold)))
    assert any("still running after" in m for m in logged(caplog))
    no_orphans(caplog)


# ------------------------------------------------------------------ (c) the worker is gone


async def test_hold_of_a_gone_worker_runs_the_step_again_with_the_same_key(
    make_app: Callable[..., App],
    control: FakeControl,
    store: SpyStore,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker running a slow step died: the hold's report runs the step again at once,
    from the report that started it (same values, same idempotency key), not the
    fallback and not after the background timeout."""
    app = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=1.0)
    events = Recorder(app)
    runs: list[tuple[str | None, str]] = []
    release = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(slow)

    @app.step
    async def slow(call: Call) -> Command:
        runs.append((call.digits, call.idempotency_key))
        await release.wait()
        return play(tts("Found it"))

    r0 = await app.handle_callback(first(CALL))
    hold = await within(app.handle_callback(report(CALL, r0, "1")))
    assert step_of(hold) == "@hold"
    token = (await store.record(CALL))["hold"]["token"]
    assert await store.get(hold_key(CALL, token)) is not None  # the worker says it is alive

    app.engine.deliveries.cancel(CALL)  # the worker is gone...
    await within(app.settle())
    assert app.engine.deliveries.running == 0
    clock.advance(4.0)  # ...and its alive key (3 leases) ran out
    assert await store.get(hold_key(CALL, token)) is None

    caplog.set_level(logging.WARNING, logger="rtcontrol")
    loop = asyncio.get_running_loop()
    began = loop.time()
    release.set()  # this time the step finishes in time
    reply = await within(app.handle_callback(report(CALL, hold)))
    assert loop.time() - began < 1.0  # at once, not after the 30 s background timeout
    assert not is_fallback(reply)
    assert body(reply)["params"]["media_id"].endswith("Found it")
    assert runs == [("1", f"{CALL}:slow:{command_id(r0)}")] * 2  # same values, same key
    assert events.last(CALL) is Disposition.RECOVERED
    assert any("running it again" in r.getMessage() for r in caplog.records)
    assert "hold" not in await store.record(CALL)
    assert control.breaks == []


async def test_hold_whose_alive_key_still_runs_is_held_again_then_runs_the_step_again(
    make_app: Callable[..., App], store: SpyStore, clock: FakeClock
) -> None:
    app = make_app(handler_budget=0.3, background_timeout=30.0, lock_lease=1.0)
    events = Recorder(app)
    starts = 0

    @app.on_inbound
    async def start(call: Call) -> Command:
        nonlocal starts
        starts += 1
        await asyncio.Event().wait()
        return play(tts("never"))

    hold = await within(app.handle_callback(first(CALL)))
    app.engine.deliveries.cancel(CALL)
    await within(app.settle())
    # Its key is still there (another worker might still run it): hold again.
    again = await within(app.handle_callback(report(CALL, hold)))
    assert events.last(CALL) is Disposition.HOLD
    assert step_of(again) == "@hold"
    assert command_id(again) != command_id(hold)
    assert starts == 1
    clock.advance(4.0)  # the key ran out: nobody runs it any more
    third = await within(app.handle_callback(report(CALL, again)))
    assert starts == 2  # run again here (and slow again: held)
    assert step_of(third) == "@hold"
    assert not is_fallback(third)


async def test_hangup_during_a_slow_step_cancels_it_and_nothing_is_delivered(
    make_app: Callable[..., App], control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    cancelled = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return play(tts("never"))

    caplog.set_level(logging.INFO)
    hold = await within(app.handle_callback(first(CALL)))
    assert (await app.handle_callback(report(CALL, hold, status="HANGUP"))).body == b"{}"
    await within(cancelled.wait())
    await within(app.settle())
    assert control.breaks == []
    assert events.of(CommandDelivered) == []
    no_orphans(caplog)


async def test_hold_reports_while_the_slow_step_still_runs_are_held_again(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        return play(tts("Done"))

    try:
        hold = await within(app.handle_callback(first(CALL)))
        again = await within(app.handle_callback(report(CALL, hold)))  # the 5 s hold ended
        assert events.last(CALL) is Disposition.HOLD
        assert step_of(again) == "@hold"
    finally:
        gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]
    delivered = spawn(app.handle_callback(report(CALL, again)))
    assert body(await within(delivered))["params"]["media_id"].endswith("Done")
    # the first hold's report, late: its original reply (the second hold), nothing runs
    late = await app.handle_callback(report(CALL, hold))
    assert late.body == again.body
    assert events.last(CALL) is Disposition.DUPLICATE


@pytest.mark.parametrize("slow", [False, True], ids=["on-time", "behind-the-hold"])
async def test_step_run_by_an_own_interrupt_sees_the_same_call_on_time_or_behind_the_hold(
    make_app: Callable[..., App], slow: bool
) -> None:
    """The step an own ``interrupt(then=step)`` runs is that step's run: its own name,
    ``interrupted`` set, and its own idempotency key (not the interrupting step's)."""
    app = make_app(handler_budget=0.3 if slow else 2.0)
    gate = asyncio.Event()
    seen: list[tuple[str, bool, str]] = []
    keys: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        keys.append(call.idempotency_key)
        if slow:
            await gate.wait()
        await call.interrupt("operator")
        return play(tts("mine"))

    @app.step
    async def operator(call: Call) -> Command:
        seen.append((call.step, call.interrupted, call.idempotency_key))
        return play(tts("Connecting"))

    try:
        reply = await within(app.handle_callback(first(CALL)))
    finally:
        gate.set()
    await within(app.settle())
    if slow:
        reply = await within(app.handle_callback(report(CALL, reply)))
    assert body(reply)["params"]["media_id"].endswith("Connecting")
    assert keys == [f"{CALL}:start:0"]
    assert seen == [("operator", True, f"{CALL}:operator:0")]
