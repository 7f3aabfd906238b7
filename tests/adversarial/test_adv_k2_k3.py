"""K2/K3 (adversarial): a terminal event is acknowledged only once durable; on_hangup
exactly once per call, after the reply, with its own budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rtcontrol import App, Call, Command, Flow, play, read, tts
from rtcontrol.core import keys as rtkeys
from rtcontrol.core.hangups import GRACE
from rtcontrol.core.ports import Reply
from rtcontrol.errors import StoreUnavailable
from rtcontrol.events import CommandDelivered, Disposition, HangupHandled
from tests.core.kit import (
    EngineClock,
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    first,
    hangup_after,
    report,
    spawn,
    step_of,
    within,
)

CALL = 92_001
NUMBER = "+33612345678"


def counter_app(app: App) -> list[dict[str, Any]]:
    hangups: list[dict[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(more)

    @app.step
    async def more(call: Call) -> Command:
        call.state["n"] += 1
        return read(tts("More?"), max_digits=4).then(more)

    @app.step
    async def agent(call: Call) -> Command:
        call.state["agent"] = True
        return play(tts("Connecting"))

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append(dict(call.state))

    return hangups


async def test_acknowledged_hangup_whose_index_write_failed_is_still_recoverable(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """The store takes the record but fails the rtc:hangups index write once. The HANGUP
    is answered 200; if this worker then dies during on_hangup, another worker must
    still find the run (README: at least once if a worker dies during on_hangup).
    Either refuse (503) until indexed, or be indexed when acknowledged."""
    worker_a = make_app(hangup_budget=1.0)
    worker_b = make_app(hangup_budget=1.0, clock=EngineClock(wall_offset=1.0 + GRACE + 1.0))
    runs: list[str] = []
    started = asyncio.Event()
    release = asyncio.Event()

    @worker_a.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then("start")

    @worker_a.on_hangup
    async def stuck(call: Call) -> None:  # worker A "dies" during on_hangup
        runs.append("A")
        started.set()
        await release.wait()

    @worker_b.on_hangup
    async def again(call: Call) -> None:
        runs.append("B")

    r0 = await worker_a.handle_callback(first(CALL))
    real_index_add = store.index_add
    failed: list[str] = []

    async def flaky_index_add(index: str, member: str, score: float, *, ttl: float) -> None:
        if index == rtkeys.HANGUP_INDEX and not failed:
            failed.append(member)
            raise StoreUnavailable("index write timed out (test)")
        await real_index_add(index, member, score, ttl=ttl)

    store.index_add = flaky_index_add  # type: ignore[method-assign]
    reply = await within(worker_a.handle_callback(hangup_after(CALL, r0)))
    assert failed == [str(CALL)]
    try:
        if reply.status == 200:
            await within(started.wait())
            taken = await worker_b.engine.hangups.sweep()
            await within(worker_b.settle())
            assert taken == 1, "acknowledged hang-up is invisible to the janitor"
            assert runs == ["A", "B"]
    finally:
        release.set()
    await within(worker_a.settle(), 20)


async def test_busy_outbound_first_post_whose_write_fails_keeps_the_start_call_data(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """BUSY on the first POST of a started call; the store reads fine but the write
    fails: 503, kept and retried. When it is recorded, on_hangup must still be the
    started flow's, with its data (the binding must not be consumed by the failed try)."""
    app = make_app()
    app.serving = True
    seen: list[tuple[str, dict[str, Any]]] = []

    class Reminder(Flow):
        async def start(self, call: Call) -> Command:
            return play(tts("Your appointment"))

        async def on_hangup(self, call: Call) -> None:
            seen.append(("reminder", dict(call.state)))

    app.add_flow(Reminder, name="reminder")

    @app.on_hangup
    async def default(call: Call) -> None:
        seen.append(("main", dict(call.state)))

    request_hash = await app.start_call(NUMBER, flow="reminder", data={"ticket": 11})
    store.fail_writes = True
    reply = await within(app.handle_callback(first(CALL, status="BUSY", request_hash=request_hash)))
    assert reply.status == 503
    assert seen == []
    store.fail_writes = False
    await within(app.settle(), 20)
    assert seen == [("reminder", {"ticket": 11})]


async def test_on_hangup_whose_completion_cannot_be_saved_runs_again_with_the_same_key(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """on_hangup completed, but its worker could not mark it done (the store went down
    for longer than its retries): from the store's side that worker is gone, so another
    worker runs it again: at least once, as the README says, with the same key."""
    worker_a = make_app(hangup_budget=1.0)
    worker_b = make_app(hangup_budget=1.0, clock=EngineClock(wall_offset=1.0 + GRACE + 1.0))
    runs: list[tuple[str, str]] = []

    @worker_a.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then("start")

    @worker_a.on_hangup
    async def done_a(call: Call) -> None:
        runs.append(("A", call.idempotency_key))
        store.down = True  # the store goes down right after the hook did its work

    @worker_b.on_hangup
    async def done_b(call: Call) -> None:
        runs.append(("B", call.idempotency_key))

    r0 = await worker_a.handle_callback(first(CALL))
    assert (await worker_a.handle_callback(hangup_after(CALL, r0))).status == 200
    await within(worker_a.settle(), 30)  # completion retried, then given up
    store.down = False
    assert await worker_b.engine.hangups.sweep() == 1
    await within(worker_b.settle())
    assert runs == [("A", f"{CALL}:on_hangup"), ("B", f"{CALL}:on_hangup")]
    # ...and once marked done, never again
    assert await worker_b.engine.hangups.sweep() == 0


async def test_concurrent_hangup_copies_run_on_hangup_once(
    make_app: Callable[..., App], probe: Probe
) -> None:
    app = make_app()
    hangups = counter_app(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, "1"))
    replies = await within(
        asyncio.gather(*(app.handle_callback(hangup_after(CALL, r1)) for _ in range(5)))
    )
    await within(app.settle())
    assert all(r == Reply(b"{}") for r in replies)
    assert hangups == [{"n": 2}]
    assert events.dispositions(CALL).count(Disposition.HANGUP) == 1


async def test_hangup_during_an_interrupts_break_ends_the_call_once_and_no_action_runs(
    make_app: Callable[..., App], control: FakeControl, probe: Probe, store: SpyStore
) -> None:
    app = make_app()
    hangups = counter_app(app)
    r0 = await app.handle_callback(first(CALL))
    gate = asyncio.Event()
    control.break_gate = gate
    hung: list[asyncio.Task[Reply]] = []

    def platform(callid: int) -> None:  # the caller hangs up as the break arrives
        hung.append(spawn(app.handle_callback(hangup_after(CALL, r0))))

    control.on_break = platform
    try:
        interrupted = spawn(app.interrupt(CALL, then="agent"))
        await probe.wait("break")
        await probe.wait(f"lock:{CALL}", 3)  # the HANGUP waits for the interrupt's lock
    finally:
        gate.set()
    await within(interrupted)
    assert (await within(hung[0])) == Reply(b"{}")
    await within(app.settle())
    assert hangups == [{"n": 1}]
    record = await store.record(CALL)
    assert record["ended"] is True
    assert "interrupt" not in record
    assert control.breaks == [CALL]


async def test_hangup_while_an_on_time_step_runs_waits_and_sees_its_state(
    make_app: Callable[..., App], probe: Probe
) -> None:
    app = make_app(handler_budget=3.0)
    hangups: list[dict[str, Any]] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["n"] = 1
        return read(tts("Account?"), max_digits=4).then(lookup)

    @app.step
    async def lookup(call: Call) -> Command:
        entered.set()
        await gate.wait()
        call.state["looked_up"] = True
        return play(tts("Found"))

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append(dict(call.state))

    r0 = await app.handle_callback(first(CALL))
    try:
        step = spawn(app.handle_callback(report(CALL, r0, "1234")))
        await within(entered.wait())
        hang = spawn(app.handle_callback(hangup_after(CALL, r0)))
        await probe.wait(f"lock:{CALL}", 3)
    finally:
        gate.set()
    await within(step)
    assert (await within(hang)) == Reply(b"{}")
    await within(app.settle())
    assert hangups == [{"n": 1, "looked_up": True}]


async def test_hangup_refused_while_behind_the_hold_then_recorded_runs_once_no_delivery(
    make_app: Callable[..., App], store: SpyStore, control: FakeControl
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    hangups: list[int] = []
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        return play(tts("late"))

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append(call.id)

    hold = await within(app.handle_callback(first(CALL)))
    assert step_of(hold) == "@hold"
    store.fail_writes = True
    assert (await app.handle_callback(hangup_after(CALL, hold))).status == 503
    gate.set()
    store.fail_writes = False
    await within(app.settle(), 20)
    assert hangups == [CALL]
    assert events.of(CommandDelivered) == []
    assert control.breaks == []


async def test_on_hangup_runs_after_the_reply_even_for_a_first_post_hangup_when_slow(
    make_app: Callable[..., App],
) -> None:
    """NOANSWER on the first POST; the hook outlasts the handler budget; the reply
    comes back before the hook has even started (it runs in the background)."""
    app = make_app(handler_budget=0.2, hangup_budget=5.0)
    began = asyncio.Event()
    release = asyncio.Event()
    events = Recorder(app)

    @app.on_inbound
    async def start(call: Call) -> Command:
        return play(tts("never"))

    @app.on_hangup
    async def slow(call: Call) -> None:
        began.set()
        await release.wait()
        await asyncio.sleep(0.3)

    reply = await app.handle_callback(first(CALL, status="NOANSWER"))  # no extra task
    assert reply == Reply(b"{}")
    assert not began.is_set()
    await within(began.wait())
    release.set()
    await within(app.settle())
    assert events.of(HangupHandled) == [HangupHandled(CALL, "main", True, 1)]
