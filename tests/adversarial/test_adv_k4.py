"""K4 (adversarial): an event before the data that gives it context."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

from rtcontrol import App, Call, Command, Flow, hangup, play, tts
from rtcontrol.core.ports import Reply
from rtcontrol.errors import ApiError
from rtcontrol.events import Disposition
from tests.core.kit import (
    FakeControl,
    Probe,
    Recorder,
    body,
    first,
    request,
    spawn,
    within,
)

CALL = 94_001
NUMBER = "+33612345678"


def reminder_app(app: App) -> list[tuple[str, Any]]:
    runs: list[tuple[str, Any]] = []

    class Reminder(Flow):
        async def start(self, call: Call) -> Command:
            runs.append(("start", dict(call.state)))
            return play(tts("Reminder")).then(self.done)

        async def done(self, call: Call) -> Command:
            return hangup()

        async def on_hangup(self, call: Call) -> None:
            runs.append(("reminder.on_hangup", (str(call.status), dict(call.state))))

    app.add_flow(Reminder, name="reminder")

    @app.on_outbound
    async def default(call: Call) -> Command:
        runs.append(("default", dict(call.state)))
        return hangup()

    @app.on_hangup
    async def main_hangup(call: Call) -> None:
        runs.append(("main.on_hangup", (str(call.status), dict(call.state))))

    return runs


async def test_busy_first_post_while_realtime_is_slow_still_gets_the_flow_and_data(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    """The platform POSTs BUSY before calls.realtime has answered, and the answer takes
    longer than half the budget. A terminal POST cannot be held and replayed, but it
    can be refused (503) and kept until the binding is known: on_hangup must be the
    started flow's, with its data (README: on_hangup once per call, whatever ended it;
    a started call runs its flow with its data even if the platform calls back first)."""
    app = make_app(handler_budget=0.4)  # the terminal callback waits 0.2 s for the binding
    app.serving = True
    runs = reminder_app(app)
    gate = asyncio.Event()
    replies: list[asyncio.Task[Reply]] = []

    async def platform(request_hash: str) -> None:
        replies.append(
            spawn(app.handle_callback(first(CALL, status="BUSY", request_hash=request_hash)))
        )
        await gate.wait()

    control.before_return = platform
    started = spawn(app.start_call(NUMBER, flow="reminder", data={"ticket": 77}))
    await probe.wait("realtime")
    try:
        await within(asyncio.wait_for(asyncio.shield(replies[0]), 5.0))  # answered alone
    finally:
        gate.set()
    await within(started)
    await within(app.settle(), 20)
    assert runs == [("reminder.on_hangup", ("BUSY", {"ticket": 77}))]


async def test_copy_of_an_outbound_first_callback_waiting_for_its_binding_runs_start_once(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    app = make_app(handler_budget=2.0, lock_wait=0.05)
    app.serving = True
    runs = reminder_app(app)
    events = Recorder(app)
    gate = asyncio.Event()
    callbacks: list[asyncio.Task[Reply]] = []

    async def platform(request_hash: str) -> None:
        callbacks.append(spawn(app.handle_callback(first(CALL, request_hash=request_hash))))
        await probe.wait(f"get:rtc:req:{request_hash}")
        callbacks.append(spawn(app.handle_callback(first(CALL, request_hash=request_hash))))
        both.set()
        await gate.wait()

    both = asyncio.Event()
    control.before_return = platform
    started = spawn(app.start_call(NUMBER, flow="reminder", data={"ticket": 5}))
    await within(both.wait())
    try:
        copy = body(await within(callbacks[1]))  # lock busy: replayed
        assert copy["command"] == "wait"
    finally:
        gate.set()
    request_hash = await within(started)
    reply = await within(callbacks[0])
    assert runs == [("start", {"ticket": 5})]
    replay = request(
        CALL,
        request_hash=request_hash,
        command="wait",
        command_id=copy["command_id"],
        variables=copy["variables"],
    )
    again = await within(app.handle_callback(replay))
    assert again.body == reply.body
    assert events.last(CALL) is Disposition.DUPLICATE
    assert runs == [("start", {"ticket": 5})]


async def test_first_callback_waiting_for_a_start_call_that_then_fails_runs_the_default(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    app = make_app(handler_budget=2.0)
    app.serving = True
    runs = reminder_app(app)
    gate = asyncio.Event()
    callbacks: list[asyncio.Task[Reply]] = []

    async def platform(request_hash: str) -> None:
        callbacks.append(spawn(app.handle_callback(first(CALL, request_hash=request_hash))))
        await gate.wait()

    control.before_return = platform
    control.realtime_error = ApiError("calls.realtime: refused", method="calls.realtime")
    started = spawn(app.start_call(NUMBER, flow="reminder", data={"ticket": 6}))
    await probe.wait("get:rtc:req:RQ000001")
    gate.set()
    with contextlib.suppress(ApiError):
        await within(started)
    reply = await within(callbacks[0])
    assert body(reply)["command"] == "hangup"
    assert runs == [("default", {})]


async def test_noanswer_on_a_replayed_first_callback_uses_the_binding(
    make_app: Callable[..., App], store: Any
) -> None:
    """First POST (UP) gets a replay hold (store down); the binding exists; the call then
    ends (NOANSWER cannot follow UP, so HANGUP) carrying the envelope: the started flow's
    on_hangup runs with the data."""
    app = make_app()
    app.serving = True
    runs = reminder_app(app)
    request_hash = await app.start_call(NUMBER, flow="reminder", data={"ticket": 8})
    store.down = True
    held = body(await app.handle_callback(first(CALL, request_hash=request_hash)))
    store.down = False
    assert held["command"] == "wait"
    hang = request(
        CALL,
        request_hash=request_hash,
        command="wait",
        command_id=held["command_id"],
        call_status="HANGUP",
        variables=held["variables"],
    )
    assert (await app.handle_callback(hang)).body == b"{}"
    await within(app.settle())
    assert runs == [("reminder.on_hangup", ("HANGUP", {"ticket": 8}))]
