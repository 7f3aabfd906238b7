"""S15, kind 2: cancellation inside straight-line flows, adversarial.

A flow's own cancellation (``asyncio.timeout``, ``asyncio.wait_for``, a task group, a
cancelled task it awaits, ``asyncio.shield``) must behave as in a plain asyncio task,
before or behind a hold, and whichever task drives the flow at that moment; the
framework's own cancellations are never taken for the flow's.

Each flow is also run as a plain asyncio task (``plain``) where that shows what
"as in a plain task" means.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, CallHungUp, LiveCall, tts
from rtcontrol.events import Disposition
from tests.core.kit import Recorder, body, first, is_fallback, report, step_of, within

CALL = 151_001


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


async def spin_until_cancelled(trail: list[str]) -> None:
    """Slow code that yields with ``asyncio.sleep(0)`` (a bare yield), as CPU-bound
    loops and many libraries do."""
    while True:  # noqa: ASYNC110 - the bare yield is the point
        await asyncio.sleep(0)


async def test_plain_task_reference_timeout_around_sleep0_loop() -> None:
    """In a plain task, asyncio.timeout ends a sleep(0) loop with TimeoutError."""
    trail: list[str] = []

    async def body_() -> str:
        try:
            async with asyncio.timeout(0.05):
                await spin_until_cancelled(trail)
        except TimeoutError:
            trail.append("timed out")
        return "went on"

    assert await within(asyncio.ensure_future(body_())) == "went on"
    assert trail == ["timed out"]


@pytest.mark.parametrize("where", ["in-time", "behind-a-hold"])
async def test_timeout_around_a_sleep0_loop_raises_timeout_error_in_the_flow(
    make_app: Callable[..., App], where: str
) -> None:
    """The timeout cancels the driving task while it sits at the flow's bare yield:
    the cancellation must be thrown into the flow (TimeoutError there), not escape
    the driver and fail the call with the fallback."""
    app = make_app(handler_budget=0.3 if where == "behind-a-hold" else 4.0)
    events = Recorder(app)
    trail: list[str] = []
    seconds = 0.6 if where == "behind-a-hold" else 0.05

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        await call.read(tts("number"), max_digits=4)
        try:
            async with asyncio.timeout(seconds):
                await spin_until_cancelled(trail)
        except TimeoutError:
            trail.append("timed out")
        await call.play(tts("we could not find you"))

    callid = CALL + (0 if where == "in-time" else 1)
    r0 = await app.handle_callback(first(callid))
    reply = await within(app.handle_callback(report(callid, r0, "12")))
    if where == "behind-a-hold":
        assert step_of(reply) == "@hold"
        await within(app.settle())
        reply = await within(app.handle_callback(report(callid, reply)))
    assert trail == ["timed out"]
    assert not is_fallback(reply)
    assert media(reply) == "we could not find you"
    assert events.last(callid) in (Disposition.REPLY, Disposition.DELIVERED)


async def test_wait_for_inside_a_flow_raises_timeout_error_there(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    trail: list[str] = []

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        try:
            await asyncio.wait_for(asyncio.Event().wait(), 0.05)
        except TimeoutError:
            trail.append("timed out")
        await call.play(tts("sorry"))

    reply = await within(app.handle_callback(first(CALL + 2)))
    assert media(reply) == "sorry"
    assert trail == ["timed out"]


async def test_awaiting_a_task_cancelled_elsewhere_raises_cancelled_error_in_the_flow(
    make_app: Callable[..., App],
) -> None:
    """A task the flow awaits is cancelled by someone else: the flow's await raises
    CancelledError (as in a plain task); the flow catches it and goes on."""
    app = make_app()
    trail: list[str] = []

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        child = asyncio.ensure_future(asyncio.Event().wait())
        asyncio.get_running_loop().call_later(0.05, child.cancel)
        try:
            await child
        except asyncio.CancelledError:
            trail.append("child cancelled")
        await call.play(tts("sorry"))

    reply = await within(app.handle_callback(first(CALL + 3)))
    assert media(reply) == "sorry"
    assert trail == ["child cancelled"]


async def test_shield_inside_a_timeout_times_out_and_the_inner_work_completes(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    trail: list[str] = []
    done = asyncio.Event()

    async def inner() -> None:
        await asyncio.sleep(0.15)
        trail.append("inner done")
        done.set()

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        try:
            async with asyncio.timeout(0.05):
                await asyncio.shield(inner())
        except TimeoutError:
            trail.append("timed out")
        await call.play(tts("sorry"))

    reply = await within(app.handle_callback(first(CALL + 4)))
    assert media(reply) == "sorry"
    await within(done.wait())
    assert trail == ["timed out", "inner done"]


@pytest.mark.parametrize("kind", ["timeout", "task-group"])
async def test_the_flows_own_cancellation_still_fires_after_a_hangup_behind_a_hold(
    make_app: Callable[..., App], kind: str
) -> None:
    """Behind a hold the caller hangs up: the framework abandons the callback's task and
    the flow goes on in the background. The flow's own ``asyncio.timeout`` (or its task
    group's failing child) must still cancel what the flow awaits, as in a plain task:
    TimeoutError (or the child's error) in the flow, then CallHungUp at its next await.
    It must not wait forever for a lookup that never answers."""
    app = make_app(handler_budget=0.3, hangup_budget=4.0)
    trail: list[str] = []
    entered = asyncio.Event()
    hung_up = asyncio.Event()

    async def broken() -> None:
        await asyncio.sleep(0.8)
        raise LookupError("no such customer")

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        await call.read(tts("number"), max_digits=4)
        try:
            if kind == "timeout":
                try:
                    async with asyncio.timeout(0.8):
                        entered.set()
                        await asyncio.Event().wait()
                except TimeoutError:
                    trail.append("own error")
            else:
                try:
                    async with asyncio.TaskGroup() as group:
                        group.create_task(broken())
                        entered.set()
                        await asyncio.Event().wait()
                except* LookupError:
                    trail.append("own error")
            await call.play(tts("found nothing"))
        except CallHungUp:
            trail.append("hung up")
            hung_up.set()
        finally:
            trail.append("finally")

    callid = CALL + 6 + (kind == "task-group")
    r0 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r0, "7")))
    assert step_of(hold) == "@hold"
    await within(entered.wait())
    end = await app.handle_callback(report(callid, hold, status="HANGUP"))
    assert end.status == 200
    await within(hung_up.wait(), 3.5)
    assert trail == ["own error", "hung up", "finally"]


async def test_flow_cancelling_itself_and_uncancelling_goes_on(
    make_app: Callable[..., App],
) -> None:
    """``asyncio.current_task().cancel()`` from inside the flow raises CancelledError
    at its next await, as in a plain task; the flow catches it, uncancels, goes on."""
    app = make_app()
    trail: list[str] = []

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        task = asyncio.current_task()
        assert task is not None
        task.cancel()
        try:
            await asyncio.sleep(0.01)
        except asyncio.CancelledError:
            task.uncancel()
            trail.append("cancelled")
        await call.play(tts("went on"))

    reply = await within(app.handle_callback(first(CALL + 8)))
    assert trail == ["cancelled"]
    assert media(reply) == "went on"


@pytest.mark.parametrize("kind", ["wait_for", "cancelled-task", "shield"])
async def test_the_flows_own_cancellations_behind_a_hold(
    make_app: Callable[..., App], kind: str
) -> None:
    """Behind a hold (the same driving task goes on), wait_for, a task cancelled
    elsewhere and shield behave as in a plain task, and the flow's command is delivered."""
    app = make_app(handler_budget=0.3)
    trail: list[str] = []

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        await call.read(tts("number"), max_digits=4)
        try:
            if kind == "wait_for":
                await asyncio.wait_for(asyncio.Event().wait(), 0.6)
            elif kind == "cancelled-task":
                child = asyncio.ensure_future(asyncio.Event().wait())
                asyncio.get_running_loop().call_later(0.6, child.cancel)
                await child
            else:
                async with asyncio.timeout(0.6):
                    await asyncio.shield(asyncio.Event().wait())
        except (TimeoutError, asyncio.CancelledError) as exc:
            trail.append(type(exc).__name__)
        await call.play(tts("sorry"))

    callid = CALL + 20 + ["wait_for", "cancelled-task", "shield"].index(kind)
    r0 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r0, "7")))
    assert step_of(hold) == "@hold"
    await within(app.settle())
    delivered = await within(app.handle_callback(report(callid, hold)))
    assert media(delivered) == "sorry"
    expected = "CancelledError" if kind == "cancelled-task" else "TimeoutError"
    assert trail == [expected]


@pytest.mark.parametrize("slow", ["event", "sleep0-loop"])
async def test_the_background_timeout_is_not_the_flows_own_cancellation(
    make_app: Callable[..., App], slow: str
) -> None:
    """The flow outlives ``RTCONTROL_BACKGROUND_TIMEOUT`` behind the hold: the caller
    gets the fallback, and the framework giving up is never seen by the flow as its own
    timeout or cancellation: the flow goes on in the background (what it started
    completes), whether its slow code awaits an event or yields with sleep(0)."""
    app = make_app(handler_budget=0.3, background_timeout=0.6)
    trail: list[str] = []
    gate = asyncio.Event()
    went_on = asyncio.Event()

    @app.inbound_call
    async def lookup(call: LiveCall) -> None:
        await call.read(tts("number"), max_digits=4)
        try:
            async with asyncio.timeout(30):
                if slow == "event":
                    await gate.wait()
                else:
                    while not gate.is_set():  # noqa: ASYNC110 - a bare yield on purpose
                        await asyncio.sleep(0)
        except TimeoutError:
            trail.append("own timeout")
        except asyncio.CancelledError:
            trail.append("cancelled")
            raise
        trail.append("went on")
        went_on.set()
        await call.play(tts("late"))

    callid = CALL + 30 + (slow != "event") * 5
    r0 = await app.handle_callback(first(callid))
    hold = await within(app.handle_callback(report(callid, r0, "7")))
    await within(app.settle())  # the background timeout passes: the fallback is pending
    delivered = await within(app.handle_callback(report(callid, hold)))
    assert is_fallback(delivered)
    gate.set()
    await within(went_on.wait())
    assert trail == ["went on"]


async def test_an_ending_flow_past_its_budget_never_sees_the_frameworks_cancellation(
    make_app: Callable[..., App],
) -> None:
    """The flow's cleanup after CallHungUp outlives ``RTCONTROL_HANGUP_BUDGET``: the
    framework drops it, and that is not a cancellation of the flow's own await."""
    app = make_app(handler_budget=4.0, hangup_budget=0.5)
    trail: list[str] = []
    gate = asyncio.Event()
    saved = asyncio.Event()

    @app.inbound_call
    async def survey(call: LiveCall) -> None:
        try:
            await call.read(tts("rate us"), max_digits=1)
        except CallHungUp:
            try:
                await gate.wait()  # a slow save
                trail.append("saved")
            except asyncio.CancelledError:
                trail.append("cancelled")
                raise
            finally:
                saved.set()

    callid = CALL + 31
    r0 = await app.handle_callback(first(callid))
    end = await app.handle_callback(report(callid, r0, status="HANGUP"))
    assert end.status == 200
    await within(app.settle())  # on_hangup ran: the flow was dropped past its budget
    gate.set()
    await within(saved.wait())
    assert trail == ["saved"]
