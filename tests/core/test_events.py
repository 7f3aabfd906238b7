"""Typed events of one call with a slow step, and the metrics they drive."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable

from rtcontrol import App, Call, Command, hangup, play, read, tts
from rtcontrol.events import (
    CallbackAnswered,
    CallHeld,
    CallStarted,
    CallTerminated,
    CommandDelivered,
    Disposition,
    HangupHandled,
    HoldReason,
)

from .kit import FakeControl, Recorder, first, hangup_after, report, within

CALL = 82_001


def counter(text: str, outcome: str) -> float:
    found = re.search(rf'^rtcontrol_callbacks_total\{{outcome="{outcome}"\}} (\S+)$', text, re.M)
    assert found, f"no callbacks counter for {outcome}"
    return float(found.group(1))


async def test_events_of_a_call_with_a_slow_step_and_the_metrics_by_disposition(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()
    finished = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Account?"), max_digits=6).then(lookup)

    @app.step
    async def lookup(call: Call) -> Command:
        await gate.wait()
        return play(tts("Your balance")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return hangup()

    @app.on_hangup
    async def done(call: Call) -> None:
        finished.set()

    r0 = await app.handle_callback(first(CALL))
    try:
        hold = await within(app.handle_callback(report(CALL, r0, "123456")))
    finally:
        gate.set()
    await within(app.settle())
    delivered = await app.handle_callback(report(CALL, hold))
    await app.handle_callback(report(CALL, r0, "123456"))  # a late copy: duplicate
    last = await app.handle_callback(report(CALL, delivered))
    await app.handle_callback(hangup_after(CALL, last))
    await within(app.settle())
    assert finished.is_set()

    kinds = [type(e).__name__ for e in events.events]
    assert kinds == [
        "CallStarted",
        "CallbackAnswered",  # start
        "CallHeld",
        "CallbackAnswered",  # the hold
        "CommandDelivered",
        "CallbackAnswered",  # delivered
        "CallbackAnswered",  # duplicate
        "CallbackAnswered",  # bye
        "CallTerminated",
        "CallbackAnswered",  # hang-up
        "HangupHandled",
    ]
    assert events.of(CallStarted) == [CallStarted(CALL, "main", False)]
    assert events.of(CallHeld) == [CallHeld(CALL, "lookup", HoldReason.SLOW_HANDLER)]
    assert events.of(CommandDelivered) == [CommandDelivered(CALL, "play", True)]
    assert events.of(CallTerminated) == [CallTerminated(CALL, "main", "HANGUP", True)]
    assert events.of(HangupHandled) == [HangupHandled(CALL, "main", True, 1)]
    answered = events.of(CallbackAnswered)
    assert [a.disposition for a in answered] == [
        Disposition.REPLY,
        Disposition.HOLD,
        Disposition.DELIVERED,
        Disposition.DUPLICATE,
        Disposition.REPLY,
        Disposition.HANGUP,
    ]
    assert [a.step for a in answered] == ["start", "lookup", "@hold", "-", "bye", "on_hangup"]
    assert [a.command_id for a in answered][:3] == [0, "1:main:lookup", "2:main:@hold"]
    assert all(a.seconds >= 0 for a in answered)
    assert answered[1].seconds < 1.0  # the hold went out on time
    assert control.breaks == [CALL]

    text = app.metrics.render().decode()
    assert counter(text, "reply") == 2
    assert counter(text, "hold") == 1
    assert counter(text, "delivered") == 1
    assert counter(text, "duplicate") == 1
    assert counter(text, "hangup") == 1
    assert counter(text, "fallback") == 0
    assert counter(text, "stale") == 0  # every outcome is there, zero or not
    assert "rtcontrol_breaks_total 1.0" in text
    assert "rtcontrol_active_calls 0.0" in text
    assert "rtcontrol_handler_seconds_count 6.0" in text


async def test_subscriber_that_raises_never_reaches_the_call(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    seen: list[str] = []

    def broken(event: object) -> None:
        raise RuntimeError("dashboard down")

    app.events.subscribe(broken)
    unsubscribe = app.events.subscribe(lambda e: seen.append(type(e).__name__))

    @app.on_inbound
    async def start(call: Call) -> Command:
        return hangup()

    reply = await app.handle_callback(first(CALL))
    assert reply.body.startswith(b'{"command":"hangup"')
    assert seen == ["CallStarted", "CallbackAnswered"]
    unsubscribe()
    await app.handle_callback(first(CALL + 1))
    assert seen == ["CallStarted", "CallbackAnswered"]
    assert 'rtcontrol_callbacks_total{outcome="reply"} 2.0' in app.metrics.render().decode()
