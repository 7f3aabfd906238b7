"""An interrupt while a straight-line flow runs slow code behind the hold.

The flow is between two awaits: nothing it sent is running on the platform, only the
hold. The interrupt must reach the flow's *next* await (the command the slow code is
about to send), never the command it already got the report of.

* Before the flow's next command is ready: the break ends the hold, the caller is
  held again, and the interrupt waits for that hold. When the flow reaches its next
  await, the delivery breaks the new hold; the report of that hold applies the
  interrupt there: the command never runs, ``then`` runs, ``Interrupted`` is raised.
* After it is ready (delivered, its break sent): the interrupt sends no break of its
  own; the hold's report applies it at that same await.

Either way the flow catches ``Interrupted`` and goes on, on any worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Interrupted, LiveCall, play, tts
from rtcontrol.events import Disposition

from .kit import FakeControl, Recorder, body, first, report, step_of, within

CALL = 94_001
GATE: dict[int, asyncio.Event] = {}


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


def command(reply: Any) -> str:
    return str(body(reply)["command"])


async def to_agent(call: LiveCall) -> None:
    """A module-level sub-flow an interrupt may run."""
    await call.play(tts("An agent is free"))


async def lookup_then_play(call: LiveCall) -> None:
    await call.read(tts("Your number?"), max_digits=4)
    try:
        await GATE[call.id].wait()  # a slow lookup: the caller is on hold
        await call.play(tts("found you"))  # the await the interrupt reaches
        await call.play(tts("goodbye"))
    except Interrupted as exc:
        call.state["interrupted"] = exc.outcome is not None
        await call.dialout("+33100000009")


ACTIONS: dict[str, Any] = {
    "none": None,
    "command": play(tts("Transferring")),
    "subflow": to_agent,
}


async def then_dialout(app: App, reply: Any, then: str, callid: int) -> None:
    """From the reply that applied the interrupt, on to the flow's dialout."""
    if then == "command":
        assert media(reply) == "Transferring"
        reply = await within(app.handle_callback(report(callid, reply)))
    elif then == "subflow":
        assert media(reply) == "An agent is free"
        reply = await within(app.handle_callback(report(callid, reply)))
    assert command(reply) == "dialout"


@pytest.mark.parametrize("then", list(ACTIONS))
@pytest.mark.parametrize("workers", ["one", "two"])
async def test_an_interrupt_before_the_next_command_is_ready_reaches_its_await(
    make_app: Callable[..., App], control: FakeControl, then: str, workers: str
) -> None:
    callid = CALL + len(GATE)
    GATE[callid] = asyncio.Event()
    a = make_app(handler_budget=0.3)
    b = a if workers == "one" else make_app(handler_budget=0.3)
    events = Recorder(b)
    for app in {a, b}:
        app.call_flow(lookup_then_play, inbound=True)
    r = await a.handle_callback(first(callid))
    hold = await within(a.handle_callback(report(callid, r, "1234")))
    assert step_of(hold) == "@hold"
    assert await b.interrupt(callid, then=ACTIONS[then]) is True
    assert control.breaks == [callid]
    # The broken hold reports while the flow still runs: held again, not applied.
    again = await within(b.handle_callback(report(callid, hold)))
    assert step_of(again) == "@hold"
    assert events.last(callid) is Disposition.HOLD
    GATE[callid].set()
    await within(a.settle())
    assert control.breaks == [callid, callid]  # the delivery ended the second hold
    applied = await within(b.handle_callback(report(callid, again)))
    assert events.last(callid) is Disposition.INTERRUPT
    assert media(applied) != "found you"  # the command the flow was about to send
    await then_dialout(b, applied, then, callid)


@pytest.mark.parametrize("then", list(ACTIONS))
async def test_an_interrupt_after_the_next_command_was_delivered_reaches_its_await(
    make_app: Callable[..., App], control: FakeControl, then: str
) -> None:
    callid = CALL + len(GATE)
    GATE[callid] = asyncio.Event()
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    app.call_flow(lookup_then_play, inbound=True)
    r = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r, "1234")))
    GATE[callid].set()
    await within(app.settle())
    assert control.breaks == [callid]  # the delivery broke the hold
    assert await app.interrupt(callid, then=ACTIONS[then]) is True
    assert control.breaks == [callid]  # one break for the hold
    applied = await within(app.handle_callback(report(callid, hold)))
    assert events.last(callid) is Disposition.INTERRUPT
    assert media(applied) != "found you"
    await then_dialout(app, applied, then, callid)


async def test_two_interrupts_behind_one_hold_send_one_break_each_hold(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """A second interrupt replaces the first: no break of its own, and the re-armed
    break is still sent by the delivery (else the caller waits out the hold)."""
    callid = CALL + len(GATE)
    GATE[callid] = asyncio.Event()
    app = make_app(handler_budget=0.3)
    app.call_flow(lookup_then_play, inbound=True)
    r = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r, "1234")))
    await app.interrupt(callid, then=play(tts("first")))
    again = await within(app.handle_callback(report(callid, hold)))
    assert step_of(again) == "@hold"
    assert await app.interrupt(callid, then=play(tts("second"))) is True
    assert control.breaks == [callid]
    GATE[callid].set()
    await within(app.settle())
    assert control.breaks == [callid, callid]
    applied = await within(app.handle_callback(report(callid, again)))
    assert media(applied) == "second"
