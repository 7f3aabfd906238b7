"""Hang-up: on_hangup runs exactly once per call, whatever ended it; nothing leaks."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import pytest

from rtcontrol import App, Call, Command, Flow, hangup, play, read, tts, wait

from .rig import APP_HASH, FakeClient, FakeClock, Platform, Probe, SpyStore, step_of


def menu(app: App) -> list[tuple[str, str, str]]:
    """A two-step app; returns the on_hangup log: (status, command, result)."""
    hangups: list[tuple[str, str, str]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["started"] = True
        return read(tts("Press 1")).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        return play(tts("bye")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return hangup()

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append((str(call.status), call.command, call.result))

    return hangups


async def test_hangup_after_our_hangup_command(app: App, platform: Platform) -> None:
    hangups = menu(app)
    line = platform.line()
    await line.start()
    await line.report("1")
    assert (await line.report("0"))["command"] == "hangup"
    assert await line.hang_up() == {}
    assert hangups == [("HANGUP", "hangup", "")]


async def test_remote_hangup_during_a_command(app: App, platform: Platform) -> None:
    hangups = menu(app)
    line = platform.line()
    await line.start()
    # The caller hangs up during the read: the final POST carries the read's id.
    assert await line.hang_up(result="12") == {}
    assert hangups == [("HANGUP", "read", "12")]


async def test_duplicate_and_late_hangups_run_the_hook_once(app: App, platform: Platform) -> None:
    hangups = menu(app)
    line = platform.line()
    await line.start()
    body = line.report_body(status="HANGUP")
    first = await platform.post_raw(body)
    again = await platform.post_raw(body)  # the same HANGUP, re-sent
    late = await platform.post_raw(line.report_body("1"))  # anything after the end
    other = await platform.post_raw({**body, "command_id": "9:main:bye"})
    await app.settle()  # on_hangup runs after the reply
    assert first == again == late == other == b"{}"
    assert hangups == [("HANGUP", "read", "")]


@pytest.mark.parametrize("status", ["BUSY", "NOANSWER", "CONGESTION", "REJECTED"])
async def test_unanswered_outbound_call_runs_on_hangup_once(
    app: App, platform: Platform, store: SpyStore, status: str
) -> None:
    events: list[str] = []

    class Callback(Flow):
        async def start(self, call: Call) -> Command:
            events.append("start")
            return hangup()

        async def on_hangup(self, call: Call) -> None:
            events.append(f"on_hangup:{call.status}:{call.state}")

    app.add_flow(Callback)
    request_hash = await app.start_call(
        "+33612345678", flow=Callback, data={"ticket": 9}, app_hash=APP_HASH
    )
    line = platform.line(request_hash=request_hash)
    assert await line.start(status) == {}
    assert await line.start(status) == {}  # re-sent: still once
    assert events == [f"on_hangup:{status}:{{'ticket': 9}}"]
    assert await store.get(f"rtc:req:{request_hash}") is None


async def test_hangup_of_a_call_never_seen_runs_on_hangup(app: App, platform: Platform) -> None:
    hangups = menu(app)
    # The caller hung up before the first POST was answered: the first POST is a HANGUP...
    line = platform.line()
    assert await line.start("HANGUP") == {}
    # ...or the worker restarted mid-call (memory store): the echoed id still routes it.
    other = platform.line()
    other.current = {"command": "read", "command_id": "1:main:choice", "variables": {}}
    assert await other.hang_up(result="") == {}
    # ...or its command_id names a flow this app does not have: still a plain hang-up.
    ghost = platform.line()
    ghost.current = {"command": "play", "command_id": "4:ghost:step", "variables": {}}
    assert await ghost.hang_up() == {}
    assert hangups == [("HANGUP", "", ""), ("HANGUP", "read", ""), ("HANGUP", "play", "")]


async def test_failing_on_hangup_is_logged_and_answered(
    app: App, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return wait(5)

    @app.on_hangup
    async def done(call: Call) -> None:
        raise RuntimeError("crm down")

    line = platform.line()
    await line.start()
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        assert await line.hang_up() == {}
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert f"callid={line.callid}: on_hangup of main failed" in errors[0].getMessage()
    assert errors[0].exc_info is not None


async def test_hangup_while_a_slow_handler_runs_in_background(
    make_app: Callable[..., App],
    serve: Callable[[App], Platform],
    fake: FakeClient,
    store: SpyStore,
) -> None:
    app = make_app(handler_budget=0.05)
    hangups = menu(app)
    release = asyncio.Event()
    outcome: list[str] = []

    @app.step
    async def slow(call: Call) -> Command:
        try:
            await release.wait()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("finished")
        return hangup()

    @app.step
    async def to_slow(call: Call) -> Command:
        return wait(1).then(slow)

    line = serve(app).line()
    # the report of a `wait(1).then(slow)` (a call the store does not know: resumed
    # from its command_id; only the current command's report would run a step)
    line.current = {"command": "wait", "command_id": "1:main:slow", "variables": {}}
    held = await line.report("")
    assert step_of(held) == "@hold"
    assert await line.hang_up() == {}
    assert hangups == [("HANGUP", "wait", "")]
    await app.shutdown(timeout=2)
    assert outcome == ["cancelled"]  # the handler was stopped, nothing delivered later
    assert fake.breaks == []
    assert await line.hang_up() == {}  # a re-sent HANGUP: still once
    assert len(hangups) == 1


async def test_app_hangup_goes_through_calls_hangup(app: App, fake: FakeClient) -> None:
    assert await app.hangup(421889) is True
    assert fake.hangups == [421889]


async def test_memory_store_forgets_ended_calls_and_leaks_nothing(
    make_app: Callable[..., App],
    serve: Callable[[App], Platform],
    store: SpyStore,
    clock: FakeClock,
    probe: Probe,
) -> None:
    app = make_app(ended_ttl=5.0, call_ttl=60.0)
    hangups = menu(app)
    platform = serve(app)

    async def whole_call() -> None:
        line = platform.line()
        await line.start()
        await line.report("1")
        await line.report("0")
        await line.hang_up()

    async def abandoned_call() -> None:  # never hangs up (a lost HANGUP POST)
        await platform.line().start()

    await asyncio.gather(*(whole_call() for _ in range(60)), *(abandoned_call() for _ in range(20)))
    assert len(hangups) == 60
    assert store.lock_count == 0
    assert len(store) == 80  # ended calls are remembered a while, for late duplicates
    clock.advance(5.1)
    assert len(store) == 20  # ended calls forgotten after ended_ttl
    clock.advance(60.0)
    assert len(store) == 0  # abandoned calls after call_ttl
    assert store.lock_count == 0
    assert app.engine.deliveries.running == 0


async def test_interrupts_and_outbound_bindings_do_not_leak(
    make_app: Callable[..., App],
    serve: Callable[[App], Platform],
    store: SpyStore,
    clock: FakeClock,
    fake: FakeClient,
) -> None:
    app = make_app(ended_ttl=5.0, call_ttl=60.0)
    menu(app)

    @app.on_outbound
    async def out(call: Call) -> Command:
        return read(tts("Press 1")).then("choice")

    platform = serve(app)
    reports = platform.breaks_report(fake)
    for _ in range(20):
        request_hash = await app.start_call("+33612345678", app_hash=APP_HASH)
        line = platform.line(request_hash=request_hash)
        await line.start()
        await app.interrupt(line.callid, then=hangup())
        assert (await reports[-1])["command"] == "hangup"
        await line.hang_up()
    await app.start_call("+33612345678", app_hash=APP_HASH)  # never answered, no POST at all
    assert store.lock_count == 0
    clock.advance(61.0)
    assert len(store) == 0


async def test_hangup_while_a_handler_holds_the_call_runs_on_hangup_once(
    make_app: Callable[..., App],
    serve: Callable[..., Platform],
    probe: Probe,
    fake: FakeClient,
    store: SpyStore,
) -> None:
    """The caller hangs up while we still hold the call: the HANGUP outwaits its budget."""
    app = make_app(handler_budget=0.05)
    hangups = menu(app)
    release = asyncio.Event()

    @app.step
    async def slow(call: Call) -> Command:
        await release.wait()
        return hangup()

    line = serve(app).line()
    line.current = {"command": "wait", "command_id": "1:main:slow", "variables": {}}
    store.save_gate = asyncio.Event()
    first = asyncio.ensure_future(line.report(""))
    await probe.wait("save-gated")  # past its budget, holding the lock while it saves
    hang_up = asyncio.ensure_future(line.hang_up())
    await probe.wait(f"acquire:rtc:{{{line.callid}}}:lock", 2)
    # Still waiting for the lock after many times its own budget: not given up.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(hang_up), 0.15)
    store.save_gate.set()
    assert step_of(await first) == "@hold"
    assert await hang_up == {}
    assert hangups == [("HANGUP", "wait", "")]
    release.set()
    await app.shutdown(timeout=2)
    assert fake.breaks == []  # nothing delivered to a call that ended
