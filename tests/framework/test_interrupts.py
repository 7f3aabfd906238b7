"""Interrupts: record the action, break the running command, run the action on its report."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI

from rtcontrol import (
    App,
    Call,
    CallEnded,
    CallNotFound,
    Command,
    Flow,
    RegistrationError,
    conference,
    dialout,
    hangup,
    play,
    read,
    tts,
    wait,
)

from .rig import APP_HASH, FakeClient, FakeClock, Platform, Probe, SpyStore, step_of

MUSIC = tts("Please hold, an agent will answer")


class Queue:
    """A caller waits on hold music; a step or outside code takes them out."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.events: list[str] = []
        self.hangups = 0

        @app.on_inbound
        async def start(call: Call) -> Command:
            return play(MUSIC).then(music_ended)

        @app.step
        async def music_ended(call: Call) -> Command:
            self.events.append(f"music_ended:interrupted={call.interrupted}")
            return play(MUSIC).then(music_ended)

        @app.step
        async def agent_ready(call: Call) -> Command:
            self.events.append(
                f"agent_ready:interrupted={call.interrupted}:{call.command}:{call.outcome}"
            )
            return dialout("+33100000001").then(after_agent)

        @app.step
        async def after_agent(call: Call) -> Command:
            return hangup()

        @app.on_hangup
        async def done(call: Call) -> None:
            self.hangups += 1

        self.agent_ready = agent_ready


@pytest.fixture
def queue(app: App) -> Queue:
    return Queue(app)


async def test_interrupt_with_a_command(
    queue: Queue, platform: Platform, fake: FakeClient, store: SpyStore, probe: Probe
) -> None:
    line = platform.line()
    waiting = await line.start()
    fake.break_gate = asyncio.Event()
    interrupt = platform.spawn(queue.app.interrupt(line.callid, then=conference("room-7")))
    await probe.wait("break")
    # Recorded before the break was sent, targeting the command the call runs now.
    record = await store.record(line.callid)
    assert record["interrupt"]["target"] == waiting["command_id"] == "1:main:music_ended"
    assert record["interrupt"]["action"]["kind"] == "command"
    fake.break_gate.set()
    assert await interrupt is True
    assert fake.breaks == [line.callid]

    reply = await line.report("")  # the platform reports the broken play
    assert reply["command"] == "conference"
    assert reply["params"]["id"] == "room-7"
    assert reply["command_id"] == "2:main:-"
    assert queue.events == []  # the step the play was bound to did not run
    assert "interrupt" not in await store.record(line.callid)


@pytest.mark.parametrize("then", ["agent_ready", "function"])
async def test_interrupt_with_a_step_by_name_or_function(
    queue: Queue, platform: Platform, fake: FakeClient, then: str
) -> None:
    line = platform.line()
    await line.start()
    target: Any = queue.agent_ready if then == "function" else then
    assert await queue.app.interrupt(line.callid, then=target) is True
    reply = await line.report("")
    assert reply["command"] == "dialout"
    assert step_of(reply) == "after_agent"
    assert queue.events == ["agent_ready:interrupted=True:play:Completed(result='')"]


async def test_interrupt_with_a_flow_method(app: App, platform: Platform) -> None:
    class Hold(Flow):
        async def start(self, call: Call) -> Command:
            return wait(30).then(self.start)

        async def take(self, call: Call) -> Command:
            return hangup() if call.interrupted else play(tts("?"))

    flow = Hold()
    app.add_flow(flow, inbound=True)
    line = platform.line()
    await line.start()
    await app.interrupt(line.callid, then=flow.take)
    assert (await line.report(""))["command"] == "hangup"


@pytest.mark.parametrize(
    ("then", "message"),
    [
        ("no_such_step", "flow main has no step 'no_such_step'"),
        (read(MUSIC).then("no_such_step"), "flow main has no step 'no_such_step'"),
        (123, "interrupt\\(then=...\\) takes a command, a step name or a step"),
        ("not a name", "takes a command, a step name or a step"),
    ],
)
async def test_bad_interrupt_actions_are_refused_before_any_break(
    queue: Queue, platform: Platform, fake: FakeClient, store: SpyStore, then: Any, message: str
) -> None:
    line = platform.line()
    await line.start()
    with pytest.raises(RegistrationError, match=message):
        await queue.app.interrupt(line.callid, then=then)
    assert fake.breaks == []
    assert "interrupt" not in await store.record(line.callid)


# ---------------------------------------------------------------- race 1: break vs. our reply


async def test_interrupt_while_a_callback_is_processed_targets_the_new_command(
    app: App, platform: Platform, fake: FakeClient, probe: Probe
) -> None:
    """The interrupt waits for the call's lock, then breaks the command we just replied."""
    events: list[str] = []
    release, running = asyncio.Event(), asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(MUSIC).then(lookup)

    @app.step
    async def lookup(call: Call) -> Command:
        running.set()
        await release.wait()
        return play(MUSIC).then(music_ended)

    @app.step
    async def music_ended(call: Call) -> Command:
        events.append("music_ended")
        return hangup()

    @app.step
    async def agent_ready(call: Call) -> Command:
        events.append(f"agent_ready:{call.command}")
        return hangup()

    line = platform.line()
    await line.start()
    processing = platform.spawn(line.report("1"))
    await asyncio.wait_for(running.wait(), 2)
    interrupt = platform.spawn(app.interrupt(line.callid, then="agent_ready"))
    await probe.wait(f"acquire:rtc:{{{line.callid}}}:lock", 3)  # 2 callbacks, then the interrupt
    assert fake.breaks == []  # nothing is broken while we have not answered
    release.set()
    reply = await processing
    assert reply["command_id"] == "2:main:music_ended"
    assert await interrupt is True
    assert fake.breaks == [line.callid]
    assert (await line.report(""))["command"] == "hangup"  # the broken play's report
    assert events == ["agent_ready:play"]


async def test_break_finds_no_command_and_the_action_still_runs(
    queue: Queue, platform: Platform, fake: FakeClient
) -> None:
    """The command ended on its own just before the break: its report runs the action."""
    line = platform.line()
    await line.start()
    fake.break_result = False
    assert await queue.app.interrupt(line.callid, then="agent_ready") is False
    reply = await line.report("0")  # the play's normal end, reported after the break
    assert reply["command"] == "dialout"
    assert queue.events == ["agent_ready:interrupted=True:play:Completed(result='0')"]


async def test_report_in_flight_when_the_break_lands(
    queue: Queue, platform: Platform, fake: FakeClient, probe: Probe
) -> None:
    """The platform already POSTed the command's end while the break RPC was in flight."""
    line = platform.line()
    await line.start()
    fake.break_gate = asyncio.Event()
    fake.break_result = False
    interrupt = platform.spawn(queue.app.interrupt(line.callid, then="agent_ready"))
    await probe.wait("break")
    report = platform.spawn(line.report("0"))  # waits for the call's lock
    await probe.wait(f"acquire:rtc:{{{line.callid}}}:lock", 3)
    fake.break_gate.set()
    assert await interrupt is False
    assert (await report)["command"] == "dialout"
    assert queue.events == ["agent_ready:interrupted=True:play:Completed(result='0')"]


# ---------------------------------------------------------------- race 2: hang-up first


async def test_hangup_before_the_break_discards_the_interrupt(
    queue: Queue, platform: Platform, fake: FakeClient, store: SpyStore
) -> None:
    line = platform.line()
    await line.start()
    fake.break_result = False  # the caller was hanging up: nothing to break
    await queue.app.interrupt(line.callid, then="agent_ready")
    assert await line.hang_up() == {}  # the HANGUP reports the command we targeted
    assert queue.events == []  # the action did not run on a dead call
    assert queue.hangups == 1
    record = await store.record(line.callid)
    assert record["ended"] is True
    assert "interrupt" not in record
    with pytest.raises(CallEnded) as info:
        await queue.app.interrupt(line.callid, then="agent_ready")
    assert info.value.callid == line.callid
    assert fake.breaks == [line.callid]  # no second break for an ended call
    assert queue.hangups == 1


async def test_hangup_arrives_while_the_break_is_in_flight(
    queue: Queue, platform: Platform, fake: FakeClient, probe: Probe
) -> None:
    line = platform.line()
    await line.start()
    fake.break_gate = asyncio.Event()
    interrupt = platform.spawn(queue.app.interrupt(line.callid, then=hangup()))
    await probe.wait("break")
    hang_up = platform.spawn(line.hang_up())
    await probe.wait(f"acquire:rtc:{{{line.callid}}}:lock", 3)
    fake.break_gate.set()
    assert await interrupt is True
    assert await hang_up == {}
    assert queue.hangups == 1


async def test_interrupt_of_unknown_or_forgotten_calls(
    make_app: Callable[..., App],
    serve: Callable[..., Platform],
    fake: FakeClient,
    clock: FakeClock,
) -> None:
    app = make_app(ended_ttl=5.0)
    Queue(app)
    with pytest.raises(CallNotFound) as info:
        await app.interrupt(999_999, then=hangup())
    assert info.value.callid == 999_999
    line = serve(app).line()
    await line.start()
    await line.hang_up()
    with pytest.raises(CallEnded):
        await app.interrupt(line.callid)
    clock.advance(6)
    with pytest.raises(CallNotFound):
        await app.interrupt(line.callid)
    assert fake.breaks == []


# ---------------------------------------------------------------- race 3: two interrupts


async def test_second_interrupt_replaces_the_first_with_one_break(
    queue: Queue, platform: Platform, fake: FakeClient
) -> None:
    line = platform.line()
    await line.start()
    fake.break_result = True
    assert await queue.app.interrupt(line.callid, then=conference("first")) is True
    assert await queue.app.interrupt(line.callid, then="agent_ready") is True
    assert fake.breaks == [line.callid]  # one break only
    reply = await line.report("")
    assert reply["command"] == "dialout"  # the second action
    assert queue.events == ["agent_ready:interrupted=True:play:Completed(result='')"]


async def test_two_concurrent_interrupts_send_one_break(
    queue: Queue, platform: Platform, fake: FakeClient, probe: Probe
) -> None:
    line = platform.line()
    await line.start()
    fake.break_gate = asyncio.Event()
    first = platform.spawn(queue.app.interrupt(line.callid, then=conference("first")))
    await probe.wait("break")
    second = platform.spawn(queue.app.interrupt(line.callid, then=conference("second")))
    await probe.wait(f"acquire:rtc:{{{line.callid}}}:lock", 3)  # waits behind the first
    fake.break_gate.set()
    assert await first is True
    assert await second is True
    assert fake.breaks == [line.callid]
    assert (await line.report(""))["params"]["id"] == "second"


async def test_interrupt_after_the_previous_one_took_effect_breaks_again(
    queue: Queue, platform: Platform, fake: FakeClient
) -> None:
    line = platform.line()
    await line.start()
    reports = platform.breaks_report(fake)
    await queue.app.interrupt(line.callid, then=play(MUSIC).then("music_ended"))
    assert step_of(await reports[0]) == "music_ended"
    await queue.app.interrupt(line.callid, then="agent_ready")
    assert (await reports[1])["command"] == "dialout"
    assert fake.breaks == [line.callid, line.callid]


# ---------------------------------------------------------------- from anywhere


async def test_interrupt_from_another_route_of_the_same_api(
    queue: Queue, serve: Callable[..., Platform], fake: FakeClient
) -> None:
    app = queue.app
    api: FastAPI = app.asgi()

    @api.post("/agents/{callid}/ready")
    async def agent_ready(callid: int) -> dict[str, Any]:
        return {"broken": await app.interrupt(callid, then="agent_ready")}

    platform = serve(app, api)
    reports = platform.breaks_report(fake)
    line = platform.line()
    await line.start()
    response = await platform.http.post(f"/agents/{line.callid}/ready")
    assert response.status_code == 200
    assert response.json() == {"broken": True}
    assert (await reports[0])["command"] == "dialout"


async def test_interrupt_from_a_plain_task_and_from_another_calls_handler(
    app: App, platform: Platform, fake: FakeClient
) -> None:
    """A queue: the agent's call, when answered, takes the waiting caller off hold."""
    queue = Queue(app)

    @app.on_outbound
    async def agent_answered(call: Call) -> Command:
        await call.app.interrupt(call.state["caller"], then=conference("bridge"))
        return conference("bridge")

    reports = platform.breaks_report(fake)
    caller = platform.line()
    await caller.start()
    request_hash = await app.start_call(
        "+33100000001", data={"caller": caller.callid}, app_hash=APP_HASH
    )
    agent = await platform.line(request_hash=request_hash).start()
    assert agent["params"]["id"] == "bridge"
    assert (await reports[0])["params"]["id"] == "bridge"

    other = platform.line()
    await other.start()
    await asyncio.create_task(app.interrupt(other.callid, then="agent_ready"))
    assert (await reports[1])["command"] == "dialout"
    assert queue.events == ["agent_ready:interrupted=True:play:Completed(result='')"]


async def test_interrupt_during_a_slow_handlers_hold_wins(
    make_app: Callable[..., App],
    serve: Callable[..., Platform],
    fake: FakeClient,
    probe: Probe,
) -> None:
    app = make_app(handler_budget=0.05)
    release, finished = asyncio.Event(), asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        try:
            await release.wait()
            return play(MUSIC)
        finally:
            finished.set()

    @app.step
    async def agent_ready(call: Call) -> Command:
        return hangup()

    line = serve(app).line()
    assert step_of(await line.start()) == "@hold"
    await app.interrupt(line.callid, then="agent_ready")
    assert (await line.report(""))["command"] == "hangup"
    release.set()
    await asyncio.wait_for(finished.wait(), 2)
    await asyncio.wait_for(app.settle(), 2)
    assert fake.breaks == [line.callid]  # the late slow result breaks nothing
