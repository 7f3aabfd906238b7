"""S15, kind 4: an interrupt while a straight-line flow runs slow code behind the hold.

It must reach the flow's *next* await (that command never runs, ``then`` runs,
``Interrupted`` is raised there), with one break per hold, never the await before
(whose report was already delivered): whatever the flow does next (await, return,
raise), on one or two workers, with a second interrupt or a hang-up racing it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, CallHungUp, Interrupted, LiveCall, play, tts
from rtcontrol.events import Disposition
from tests.core.kit import (
    FakeControl,
    Recorder,
    body,
    first,
    is_fallback,
    report,
    step_of,
    within,
)

CALL = 154_001
GATE: dict[int, asyncio.Event] = {}
TRAIL: dict[int, list[str]] = {}


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


def command(reply: Any) -> str:
    return str(body(reply)["command"])


def new_call(n: int) -> int:
    callid = CALL + n
    GATE[callid] = asyncio.Event()
    TRAIL[callid] = []
    return callid


async def to_agent(call: LiveCall) -> None:
    """A module-level sub-flow that awaits twice (any worker finds it by name)."""
    await call.play(tts("An agent is free"))
    digits = await call.read(tts("Press 1 to accept"), max_digits=1)
    TRAIL[call.id].append(f"subflow read {digits}")


async def say_agent(call: LiveCall) -> None:
    await call.play(tts("An agent is free"))


async def lookup_then_play(call: LiveCall) -> None:
    TRAIL[call.id].append("start")
    digits = await call.read(tts("Your number?"), max_digits=4)
    TRAIL[call.id].append(f"read {digits}")
    try:
        await GATE[call.id].wait()  # slow code: the caller is on hold
        await call.play(tts("found you"))  # the await the interrupt must reach
        await call.play(tts("goodbye"))
    except Interrupted:
        TRAIL[call.id].append("interrupted")
        await call.dialout("+33100000009")
    except CallHungUp:
        TRAIL[call.id].append("hung up")
        raise


async def lookup_then_fail(call: LiveCall) -> None:
    TRAIL[call.id].append("start")
    try:
        await call.read(tts("Your number?"), max_digits=4)
    except Interrupted:
        TRAIL[call.id].append("interrupted at the read")
        raise
    await GATE[call.id].wait()
    raise LookupError("the lookup failed")


async def lookup_then_return(call: LiveCall) -> None:
    TRAIL[call.id].append("start")
    try:
        await call.read(tts("Your number?"), max_digits=4)
    except Interrupted:
        TRAIL[call.id].append("interrupted at the read")
        raise
    await GATE[call.id].wait()
    return  # the flow ends: the call hangs up


async def held_twice(app: App, callid: int, then: Any) -> tuple[Any, Any]:
    """First callback, the read's report (held: the flow runs slow code), the interrupt
    and the broken hold's report (held again, the interrupt re-armed)."""
    r = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r, "1234")))
    assert step_of(hold) == "@hold"
    assert await app.interrupt(callid, then=then) is True
    again = await within(app.handle_callback(report(callid, hold)))
    assert step_of(again) == "@hold"
    return hold, again


async def test_flow_raising_behind_the_hold_after_an_interrupt_gets_its_break_and_no_replay(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """The interrupt arrives while the flow runs slow code; the flow then raises (it
    never reaches an await). The second hold is owed a break (one per hold): the failure
    must be delivered, and the interrupt must never be applied at the read, whose report
    was delivered already (a second copy replaying the flow to get there)."""
    callid = new_call(1)
    app = make_app(handler_budget=0.3)
    app.call_flow(lookup_then_fail, inbound=True)
    _, again = await held_twice(app, callid, play(tts("Transferring")))
    GATE[callid].set()
    await within(app.settle())
    broke = list(control.breaks)
    reply = await within(app.handle_callback(report(callid, again)))
    assert TRAIL[callid] == ["start"], (TRAIL[callid], body(reply))
    assert broke == [callid, callid], "the second hold was never broken"
    assert is_fallback(reply) or media(reply) == "Transferring"


@pytest.mark.parametrize("then", ["command", "subflow"])
async def test_flow_returning_behind_the_hold_after_an_interrupt_runs_then(
    make_app: Callable[..., App], control: FakeControl, then: str
) -> None:
    """The flow returns instead of awaiting: its last command (the hang-up returning
    sends) is the await the interrupt reaches. It never runs; ``then`` runs (a command,
    or a sub-flow with its own awaits), once the hold was broken (one break per hold)."""
    callid = new_call(2 + (then == "subflow"))
    app = make_app(handler_budget=0.3)
    app.call_flow(lookup_then_return, inbound=True)
    action = play(tts("Transferring")) if then == "command" else say_agent
    _, again = await held_twice(app, callid, action)
    GATE[callid].set()
    await within(app.settle())
    assert control.breaks == [callid, callid]
    applied = await within(app.handle_callback(report(callid, again)))
    expected = "Transferring" if then == "command" else "An agent is free"
    assert command(applied) == "play", body(applied)
    assert media(applied) == expected
    assert "interrupted at the read" not in TRAIL[callid]
    bye = await within(app.handle_callback(report(callid, applied)))
    assert command(bye) == "hangup"


async def test_hangup_racing_an_interrupt_behind_the_hold_ends_the_flow_once(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """Interrupt (re-armed behind the hold), then the caller hangs up, then the flow's
    slow code ends: CallHungUp at its next await (``then`` never runs, Interrupted never
    raised), no break for an ended call, on_hangup once."""
    callid = new_call(4)
    app = make_app(handler_budget=0.3)
    app.call_flow(lookup_then_play, inbound=True)
    ended: list[int] = []

    @app.on_hangup
    async def done(call: Any) -> None:
        ended.append(call.id)

    _, again = await held_twice(app, callid, play(tts("Transferring")))
    end = await app.handle_callback(report(callid, again, status="HANGUP"))
    assert end.status == 200
    GATE[callid].set()
    await within(app.settle())
    assert TRAIL[callid] == ["start", "read 1234", "hung up"]
    assert ended == [callid]
    assert control.breaks == [callid]


async def test_second_interrupt_from_another_worker_behind_the_hold(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """A runs the flow; B takes both interrupts and every report. One break per hold;
    the second interrupt's action is the one that runs, at the flow's next await."""
    callid = new_call(5)
    a = make_app(handler_budget=0.3)
    b = make_app(handler_budget=0.3)
    for app in (a, b):
        app.call_flow(lookup_then_play, inbound=True)
    events = Recorder(b)
    r = await a.handle_callback(first(callid))
    hold = await within(a.handle_callback(report(callid, r, "1234")))
    assert await b.interrupt(callid, then=play(tts("first"))) is True
    again = await within(b.handle_callback(report(callid, hold)))
    assert step_of(again) == "@hold"
    assert await b.interrupt(callid, then=play(tts("second"))) is True
    assert control.breaks == [callid]
    GATE[callid].set()
    await within(a.settle())
    assert control.breaks == [callid, callid]
    applied = await within(b.handle_callback(report(callid, again)))
    assert events.last(callid) is Disposition.INTERRUPT
    assert media(applied) == "second"
    nxt = await within(b.handle_callback(report(callid, applied)))
    assert command(nxt) == "dialout"
    assert TRAIL[callid].count("interrupted") == 1


@pytest.mark.parametrize("workers", ["one", "two"])
async def test_subflow_with_two_awaits_runs_at_the_next_await(
    make_app: Callable[..., App], control: FakeControl, workers: str
) -> None:
    callid = new_call(6 + (workers == "two"))
    a = make_app(handler_budget=0.3)
    b = a if workers == "one" else make_app(handler_budget=0.3)
    for app in {a, b}:
        app.call_flow(lookup_then_play, inbound=True)
    r = await a.handle_callback(first(callid))
    hold = await within(a.handle_callback(report(callid, r, "1234")))
    assert await b.interrupt(callid, then=to_agent) is True
    again = await within(b.handle_callback(report(callid, hold)))
    GATE[callid].set()
    await within(a.settle())
    applied = await within(b.handle_callback(report(callid, again)))
    assert media(applied) == "An agent is free"
    ask = await within(b.handle_callback(report(callid, applied)))
    assert command(ask) == "read"
    nxt = await within(b.handle_callback(report(callid, ask, "1")))
    assert command(nxt) == "dialout"
    assert "subflow read 1" in TRAIL[callid]
    assert TRAIL[callid].count("interrupted") == 1
    assert control.breaks == [callid, callid]


async def test_delivery_between_the_interrupt_and_the_holds_report_sends_one_break(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """The interrupt breaks the hold; before the hold's report comes, the flow's next
    command is ready and delivered. That hold was broken once already: no second break;
    the report applies the interrupt at the flow's next await."""
    callid = new_call(8)
    app = make_app(handler_budget=0.3)
    app.call_flow(lookup_then_play, inbound=True)
    events = Recorder(app)
    r = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r, "1234")))
    assert await app.interrupt(callid, then=play(tts("Transferring"))) is True
    GATE[callid].set()
    await within(app.settle())
    assert control.breaks == [callid]
    applied = await within(app.handle_callback(report(callid, hold)))
    assert events.last(callid) is Disposition.INTERRUPT
    assert media(applied) == "Transferring"
    nxt = await within(app.handle_callback(report(callid, applied)))
    assert command(nxt) == "dialout"


async def test_second_hold_ending_by_itself_before_the_flow_is_ready_holds_again(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """The re-armed interrupt waits for the second hold; that hold ends by itself (its
    wait ran out) before the flow is ready: held a third time, the interrupt still
    waiting; the delivery breaks that hold; one break per hold."""
    callid = new_call(9)
    app = make_app(handler_budget=0.3)
    app.call_flow(lookup_then_play, inbound=True)
    _, again = await held_twice(app, callid, play(tts("Transferring")))
    third = await within(app.handle_callback(report(callid, again)))
    assert step_of(third) == "@hold"
    GATE[callid].set()
    await within(app.settle())
    assert control.breaks == [callid, callid]
    applied = await within(app.handle_callback(report(callid, third)))
    assert media(applied) == "Transferring"
    nxt = await within(app.handle_callback(report(callid, applied)))
    assert command(nxt) == "dialout"
    assert TRAIL[callid] == ["start", "read 1234", "interrupted"]


@pytest.mark.parametrize("flow_cache", [0, 1])
async def test_interrupt_behind_the_hold_with_a_small_cache(
    make_app: Callable[..., App], control: FakeControl, flow_cache: int
) -> None:
    callid = new_call(10 + flow_cache)
    app = make_app(handler_budget=0.3, flow_cache=flow_cache)
    app.call_flow(lookup_then_play, inbound=True)
    _, again = await held_twice(app, callid, play(tts("Transferring")))
    GATE[callid].set()
    await within(app.settle())
    assert control.breaks == [callid, callid]
    applied = await within(app.handle_callback(report(callid, again)))
    assert media(applied) == "Transferring"
    nxt = await within(app.handle_callback(report(callid, applied)))
    assert command(nxt) == "dialout"
    assert TRAIL[callid].count("interrupted") == 1
