"""K13: ``call.idempotency_key`` is stable per report, across crashes; a lock left by a
crashed holder blocks its call for about one lease, not for a handler budget."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from rtcontrol import App, Call, Command, read, tts
from rtcontrol.core.hangups import GRACE
from rtcontrol.events import Disposition, HangupHandled

from .kit import (
    EngineClock,
    FakeClock,
    Recorder,
    SpyStore,
    body,
    call_key,
    first,
    hangup_after,
    lock_key,
    report,
    request,
    within,
)

CALL = 81_001


def keyed(app: App) -> list[tuple[str, str]]:
    """start -> loop -> loop ...; returns (step, idempotency key) of every run."""
    keys: list[tuple[str, str]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        keys.append(("start", call.idempotency_key))
        return read(tts("Code?"), max_digits=4).then(loop)

    @app.step
    async def loop(call: Call) -> Command:
        keys.append(("loop", call.idempotency_key))
        return read(tts("Again?"), max_digits=4).then(loop)

    @app.on_hangup
    async def done(call: Call) -> None:
        keys.append(("on_hangup", call.idempotency_key))

    return keys


async def test_same_report_handled_again_after_a_crash_has_the_same_key(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    keys = keyed(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, "1"))

    await store.delete(call_key(CALL))  # the record is lost (a crash, a failover)
    again = await app.handle_callback(report(CALL, r0, "1"))  # the platform retries it
    assert events.last(CALL) is Disposition.RECOVERED
    assert again.body == r1.body
    assert keys == [
        ("start", f"{CALL}:start:0"),
        ("loop", f"{CALL}:loop:1:main:loop"),
        ("loop", f"{CALL}:loop:1:main:loop"),
    ]


async def test_first_callback_run_again_after_a_crash_has_the_same_key(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    keys = keyed(app)
    await app.handle_callback(first(CALL))
    await store.delete(call_key(CALL))
    await app.handle_callback(first(CALL))
    assert keys == [("start", f"{CALL}:start:0"), ("start", f"{CALL}:start:0")]


async def test_different_reports_have_different_keys_and_on_hangup_its_own(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    keys = keyed(app)
    reply = await app.handle_callback(first(CALL))
    for digits in ("1", "1", "2"):  # the same step, the same result: still new reports
        reply = await app.handle_callback(report(CALL, reply, digits))
    await app.handle_callback(hangup_after(CALL, reply))
    await within(app.settle())
    loop_keys = [k for step, k in keys if step == "loop"]
    assert len(loop_keys) == 3
    assert len(set(loop_keys)) == 3
    assert keys[-1] == ("on_hangup", f"{CALL}:on_hangup")
    assert len({k for _, k in keys}) == len(keys)


async def test_on_hangup_taken_over_by_another_worker_has_the_same_key(
    make_app: Callable[..., App],
) -> None:
    """Worker A's on_hangup does not complete in time; worker B (same store, a later
    clock) runs it again: at-least-once in that case, with the same key."""
    worker_a = make_app(hangup_budget=1.0)
    worker_b = make_app(hangup_budget=1.0, clock=EngineClock(wall_offset=1.0 + GRACE + 1.0))
    events_b = Recorder(worker_b)
    runs: list[tuple[str, str]] = []
    started = asyncio.Event()
    release = asyncio.Event()

    @worker_a.on_inbound
    async def start_a(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then("start")

    @worker_a.on_hangup
    async def stuck(call: Call) -> None:
        runs.append(("A", call.idempotency_key))
        started.set()
        await release.wait()

    @worker_b.on_hangup
    async def again(call: Call) -> None:
        runs.append(("B", call.idempotency_key))

    r0 = await worker_a.handle_callback(first(CALL))
    await worker_a.handle_callback(hangup_after(CALL, r0))
    await within(started.wait())
    try:
        assert await worker_b.engine.hangups.sweep() == 1  # A's ticket is overdue for B
        await within(worker_b.settle())
    finally:
        release.set()
    await within(worker_a.settle())
    assert runs == [("A", f"{CALL}:on_hangup"), ("B", f"{CALL}:on_hangup")]
    assert events_b.of(HangupHandled) == [HangupHandled(CALL, "main", True, 2)]


# ------------------------------------------------------------------ a crashed lock holder


async def test_lock_of_a_crashed_holder_delays_a_callback_by_about_one_lease(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app(lock_lease=0.5, handler_budget=4.0, lock_wait=1.5)
    keys = keyed(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    await store.acquire(lock_key(CALL), lease=app.settings.lock_lease, wait=0.1)  # never freed

    loop = asyncio.get_running_loop()
    began = loop.time()
    reply = await within(app.handle_callback(report(CALL, r0, "1")))
    waited = loop.time() - began
    assert 0.3 < waited < 2.0  # about the 0.5 s lease, far from the 4 s budget
    assert events.last(CALL) is Disposition.REPLY
    assert body(reply)["command_id"] == "2:main:loop"
    assert [step for step, _ in keys] == ["start", "loop"]


async def test_lock_of_a_crashed_holder_with_a_long_lease_gets_a_replay_then_runs_once(
    make_app: Callable[..., App], store: SpyStore, clock: FakeClock
) -> None:
    app = make_app(lock_lease=3.0, handler_budget=4.0, lock_wait=0.3)
    keys = keyed(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    await store.acquire(lock_key(CALL), lease=app.settings.lock_lease, wait=0.1)

    loop = asyncio.get_running_loop()
    began = loop.time()
    held = body(await within(app.handle_callback(report(CALL, r0, "1"))))
    assert loop.time() - began < 2.0  # lock_wait, not the 3 s lease nor the 4 s budget
    assert events.last(CALL) is Disposition.REPLAY
    assert held["variables"]["_rtc"]["replay"] == ["read", "1:main:loop", "1", "", "UP"]

    clock.advance(3.5)  # the crashed holder's lease ran out
    replay = request(
        CALL, command="wait", command_id=held["command_id"], variables=held["variables"]
    )
    reply = await within(app.handle_callback(replay))
    assert body(reply)["command_id"] == "2:main:loop"
    assert [step for step, _ in keys] == ["start", "loop"]
    assert keys[1][1] == f"{CALL}:loop:1:main:loop"  # the replayed report's own key


async def test_hangup_behind_a_crashed_lock_waits_for_the_lease_and_is_recorded(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app(lock_lease=0.5, handler_budget=4.0)
    keys = keyed(app)
    r0 = await app.handle_callback(first(CALL))
    await store.acquire(lock_key(CALL), lease=app.settings.lock_lease, wait=0.1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    reply = await within(app.handle_callback(hangup_after(CALL, r0)))
    assert reply.status == 200
    assert reply.body == b"{}"
    assert loop.time() - began < 2.5  # the 0.5 s lease, not 6.5 s (budget+break+lease)
    await within(app.settle())
    assert keys[-1] == ("on_hangup", f"{CALL}:on_hangup")
    assert (await store.record(CALL))["ended"] is True
