"""Straight-line flows and cancellation: whose is it, and which copy does a hang-up end.

* A flow's own cancellation (``asyncio.timeout``, a task group whose child failed)
  is thrown into the flow, as a task would: ``TimeoutError`` or the group's
  exceptions reach the flow's code, and the call goes on.
* The framework's (the call ended behind a hold, a slow flow past its time) hands
  the flow over to the background; it is never taken as the flow's own.
* A hang-up while a copy runs between two commands (behind a hold) ends that copy,
  whatever ``RTCONTROL_FLOW_CACHE`` says: no second copy replays the flow and runs
  its side effects again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, LiveCall, tts
from rtcontrol.events import Disposition

from .kit import Recorder, body, first, report, step_of, within

CALL = 93_001


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


@pytest.mark.parametrize("where", ["first-callback", "after-a-read"])
async def test_asyncio_timeout_inside_a_flow_raises_timeout_error_there(
    make_app: Callable[..., App], where: str
) -> None:
    app = make_app()
    events = Recorder(app)
    trail: list[str] = []

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        if where == "after-a-read":
            await call.read(tts("number"), max_digits=4)
        try:
            async with asyncio.timeout(0.05):
                await asyncio.Event().wait()  # a lookup that never answers
        except TimeoutError:
            trail.append("timed out")
        await call.play(tts("we could not find you"))

    reply = await within(app.handle_callback(first(CALL)))
    if where == "after-a-read":
        reply = await within(app.handle_callback(report(CALL, reply, "12")))
    assert media(reply) == "we could not find you"
    assert trail == ["timed out"]
    assert events.last(CALL) is Disposition.REPLY


async def test_a_timeout_the_flow_does_not_catch_is_its_own_error(
    make_app: Callable[..., App],
) -> None:
    """Uncaught, the flow's TimeoutError is a flow error like any other: the fallback."""
    app = make_app()
    events = Recorder(app)

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        async with asyncio.timeout(0.05):
            await asyncio.Event().wait()
        await call.play(tts("unreachable"))

    reply = await within(app.handle_callback(first(CALL + 1)))
    assert media(reply) != "unreachable"
    assert events.last(CALL + 1) is Disposition.FALLBACK


async def test_a_task_group_whose_child_fails_reaches_the_flow(
    make_app: Callable[..., App],
) -> None:
    """A failing child cancels the task driving the flow: the group gets it, and the
    flow sees the child's error (``except*``)."""
    app = make_app()
    trail: list[str] = []

    async def broken() -> None:
        raise LookupError("no such customer")

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(broken())
                group.create_task(asyncio.Event().wait())  # cancelled by the group
        except* LookupError as errors:
            trail.append(str(errors.exceptions[0]))
        await call.play(tts("sorry"))

    reply = await within(app.handle_callback(first(CALL + 2)))
    assert media(reply) == "sorry"
    assert trail == ["no such customer"]


async def test_a_timeout_inside_slow_code_behind_a_hold_stays_the_flows(
    make_app: Callable[..., App],
) -> None:
    """Behind a hold the flow's own timeout still raises there, and its command is
    delivered: it is not taken for the framework giving up."""
    app = make_app(handler_budget=0.3)
    trail: list[str] = []
    entered = asyncio.Event()

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        await call.read(tts("number"), max_digits=4)
        try:
            async with asyncio.timeout(0.6):  # past the budget: the caller is held
                entered.set()
                await asyncio.Event().wait()
        except TimeoutError:
            trail.append("timed out")
        await call.play(tts("found nothing"))

    r0 = await app.handle_callback(first(CALL + 3))
    hold = await within(app.handle_callback(report(CALL + 3, r0, "7")))
    assert step_of(hold) == "@hold"
    await within(entered.wait())
    await within(app.settle())
    assert trail == ["timed out"]
    delivered = await within(app.handle_callback(report(CALL + 3, hold)))
    assert media(delivered) == "found nothing"


@pytest.mark.parametrize("flow_cache", [0, 10_000])
async def test_a_hang_up_behind_a_hold_ends_the_running_copy_only(
    make_app: Callable[..., App], flow_cache: int
) -> None:
    """The flow runs a slow once() behind a hold when the caller hangs up. With no
    cache to find it in, the hang-up used to replay a second copy, which ran the
    charge again; now it reaches the running copy's next await."""
    app = make_app(handler_budget=0.3, flow_cache=flow_cache)
    trail: list[str] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def charge() -> str:
        trail.append("charge")
        entered.set()
        await gate.wait()
        return "receipt-1"

    @app.inbound_call
    async def pay(call: LiveCall) -> None:
        try:
            await call.read(tts("confirm"), max_digits=1)
            receipt = await call.once(charge)
            trail.append(f"receipt:{receipt}")
            await call.play(tts("paid"))
        finally:
            trail.append("finally")

    r0 = await app.handle_callback(first(CALL + 4))
    hold = await within(app.handle_callback(report(CALL + 4, r0, "1")))
    assert step_of(hold) == "@hold"
    await within(entered.wait())
    end = await app.handle_callback(report(CALL + 4, hold, status="HANGUP"))
    assert end.status == 200
    gate.set()
    await within(app.settle())
    # With no cache, the copy that sent the read is dropped once it replied (its
    # ``finally`` runs then); the copy replayed for the report is the one that charges.
    dropped = ["finally"] if flow_cache == 0 else []
    assert trail == [*dropped, "charge", "receipt:receipt-1", "finally"]
