"""K4: a started call runs the flow and data ``start_call`` gave it, even when the
platform POSTs its first callback before ``calls.realtime`` has returned the hash."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, Flow, hangup, play, tts
from rtcontrol.core.ports import Reply
from rtcontrol.errors import ApiError, ConfigurationError, OutputError
from rtcontrol.events import CallHeld, CallStarted, Disposition, HoldReason

from .kit import (
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    body,
    first,
    request,
    spawn,
    within,
)

CALL = 74_001
OTHER = 74_002
NUMBER = "+33612345678"

Runs = list[tuple[str, dict[str, Any], bool]]


def reminder_app(app: App) -> Runs:
    """A "reminder" flow, and a default outbound handler. Returns (who, state, outbound)."""
    runs: Runs = []

    class Reminder(Flow):
        async def start(self, call: Call) -> Command:
            runs.append(("reminder", dict(call.state), call.is_outbound))
            return play(tts(f"Reminder {call.state.get('ticket')}")).then(self.done)

        async def done(self, call: Call) -> Command:
            return hangup()

    class Survey(Flow):
        async def start(self, call: Call) -> Command:
            runs.append(("survey", dict(call.state), call.is_outbound))
            return hangup()

    app.add_flow(Reminder, name="reminder")
    app.add_flow(Survey, name="survey")

    @app.on_outbound
    async def default(call: Call) -> Command:
        runs.append(("default", dict(call.state), call.is_outbound))
        return hangup()

    return runs


async def test_first_callback_before_realtime_returns_waits_for_its_binding(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    app = make_app(handler_budget=2.0)
    app.serving = True
    runs = reminder_app(app)
    events = Recorder(app)
    gate = asyncio.Event()
    callbacks: list[asyncio.Task[Reply]] = []

    async def platform(request_hash: str) -> None:
        # The platform calls back before calls.realtime has answered us.
        callbacks.append(spawn(app.handle_callback(first(CALL, request_hash=request_hash))))
        await gate.wait()

    control.before_return = platform
    started = spawn(app.start_call(NUMBER, flow="reminder", data={"ticket": 42}))
    try:
        await probe.wait("get:rtc:req:RQ000001")  # the callback looked: no binding yet
        assert not callbacks[0].done()
    finally:
        gate.set()
    request_hash = await within(started)
    assert request_hash == "RQ000001"
    reply = await within(callbacks[0])
    assert runs == [("reminder", {"ticket": 42}, True)]
    assert body(reply)["command_id"] == "1:reminder:done"
    assert events.of(CallStarted) == [CallStarted(CALL, "reminder", True)]
    assert events.last(CALL) is Disposition.REPLY


async def test_first_callback_held_until_start_call_binds_then_replayed(
    make_app: Callable[..., App], control: FakeControl, store: SpyStore
) -> None:
    app = make_app(handler_budget=0.4)  # the first callback waits 0.2 s, then holds
    app.serving = True
    runs = reminder_app(app)
    events = Recorder(app)
    gate = asyncio.Event()
    first_reply: asyncio.Future[Reply] = asyncio.get_running_loop().create_future()

    async def platform(request_hash: str) -> None:
        first_reply.set_result(await app.handle_callback(first(CALL, request_hash=request_hash)))
        await gate.wait()  # calls.realtime answers late

    control.before_return = platform
    started = spawn(app.start_call(NUMBER, flow="reminder", data={"ticket": 43}))
    try:
        held = body(await within(first_reply))
    finally:
        gate.set()
    request_hash = await within(started)
    assert held["command"] == "wait"
    assert held["command_id"] == "0:-:@replay"
    assert held["variables"]["_rtc"]["replay"] == ["", 0, "", "", "UP"]
    assert events.last(CALL) is Disposition.REPLAY
    assert events.of(CallHeld) == [CallHeld(CALL, "start", HoldReason.BINDING)]
    assert runs == []

    replay = request(
        CALL,
        request_hash=request_hash,
        command="wait",
        command_id=held["command_id"],
        call_status="UP",
        variables=held["variables"],
    )
    reply = await within(app.handle_callback(replay))
    assert runs == [("reminder", {"ticket": 43}, True)]
    assert body(reply)["command_id"] == "1:reminder:done"
    assert body(reply)["variables"] == {}  # the envelope never goes back out
    assert await store.get(f"rtc:req:{request_hash}") is None  # the binding was taken
    again = await within(app.handle_callback(replay))  # the replay, re-sent
    assert again.body == reply.body
    assert runs == [("reminder", {"ticket": 43}, True)]


async def test_start_call_refused_when_the_memory_store_is_not_served(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app()
    reminder_app(app)
    assert app.serving is False
    with pytest.raises(ConfigurationError, match="memory store"):
        await app.start_call(NUMBER, flow="reminder", data={"ticket": 1})
    assert control.realtime_calls == []  # refused before dialling anyone


async def test_two_calls_started_at_once_each_get_their_own_flow_and_data(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    app = make_app(handler_budget=2.0)
    app.serving = True
    runs = reminder_app(app)
    gates = {"RQ000001": asyncio.Event(), "RQ000002": asyncio.Event()}
    callbacks: dict[str, asyncio.Task[Reply]] = {}
    callids = {"RQ000001": CALL, "RQ000002": OTHER}

    async def platform(request_hash: str) -> None:
        req = first(callids[request_hash], request_hash=request_hash)
        callbacks[request_hash] = spawn(app.handle_callback(req))
        await gates[request_hash].wait()

    control.before_return = platform
    one = spawn(app.start_call(NUMBER, flow="reminder", data={"ticket": 1}))
    await probe.wait("realtime", 1)
    two = spawn(app.start_call("+33699999999", flow="survey", data={"poll": 2}))
    try:
        await probe.wait("get:rtc:req:RQ000001")
        await probe.wait("get:rtc:req:RQ000002")
    finally:
        gates["RQ000002"].set()  # the second answers first
        await within(two)
        gates["RQ000001"].set()
    await within(one)
    await within(asyncio.gather(*callbacks.values()))
    assert sorted(runs) == [("reminder", {"ticket": 1}, True), ("survey", {"poll": 2}, True)]


async def test_failed_start_leaves_nothing_in_flight_so_a_stray_callback_does_not_wait(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app(handler_budget=4.0)
    app.serving = True
    runs = reminder_app(app)
    control.realtime_error = ApiError("calls.realtime: refused", method="calls.realtime")
    with pytest.raises(ApiError):
        await app.start_call(NUMBER, flow="reminder", data={"ticket": 5})
    loop = asyncio.get_running_loop()
    began = loop.time()
    await within(app.handle_callback(first(CALL, request_hash="RQ000001")))
    assert loop.time() - began < 1.0  # not half the 4 s budget waiting for a binding
    assert runs == [("default", {}, True)]


async def test_start_call_data_that_cannot_be_stored_is_refused_before_dialling(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app()
    app.serving = True
    reminder_app(app)
    with pytest.raises(OutputError, match="start_call data"):
        await app.start_call(NUMBER, flow="reminder", data={"tags": {"a", "b"}})
    assert control.realtime_calls == []


async def test_first_callback_while_the_store_blinks_on_the_binding_is_held_not_raised(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """The call's lock was taken, then reading the binding failed: the caller must get a
    replay hold (the store is not ready), never an exception out of the engine."""
    app = make_app()
    app.serving = True
    runs = reminder_app(app)
    request_hash = await app.start_call(NUMBER, flow="reminder", data={"ticket": 8})
    store.blink = "rtc:req:"
    reply = await within(app.handle_callback(first(CALL, request_hash=request_hash)))
    held = body(reply)
    assert held["command"] == "wait"
    assert "_rtc" in held["variables"]
    store.blink = None
    replay = request(
        CALL,
        request_hash=request_hash,
        command="wait",
        command_id=held["command_id"],
        variables=held["variables"],
    )
    await within(app.handle_callback(replay))
    assert runs == [("reminder", {"ticket": 8}, True)]
