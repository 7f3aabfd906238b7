"""``CallHandle``: act on a call while it runs (wait for a command, interrupt, hang up).

Every wait is ordered by the call's own events (``wait_for``), never by sleeping.
"""

from __future__ import annotations

from typing import Any

import pytest

from rtcontrol import App, Call, CallEnded, Command, hangup, play, read, tts, wait
from rtcontrol.emulator import Callee, Press
from rtcontrol.testing import EmulatedPlatform, HandlerFailed

SPEED = 400.0


def hold_queue() -> App:
    """Hold (``wait``) forever, a message between holds; ``announce`` by interrupt."""
    app = App()

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return read(tts("Press 1 for the queue"), max_digits=1).then(queue)

    @app.on_outbound
    async def dialled(call: Call) -> Command:
        return wait(30).then(queue)

    @app.step
    async def queue(call: Call) -> Command:
        return wait(30).then(queue)

    @app.step
    async def announce(call: Call) -> Command:
        return play(tts("An agent is free.")).then(queue)

    @app.step
    async def broken(call: Call) -> Any:
        raise RuntimeError("no agent table")

    return app


async def test_wait_for_returns_the_command_and_orders_the_test_after_it() -> None:
    async with EmulatedPlatform(hold_queue(), speed=SPEED, strict=True) as p:
        handle = await p.start(Callee(actions=[Press("1")]))
        first = await handle.wait_for()  # any command: the first one
        assert first == read(tts("Press 1 for the queue"), max_digits=1)
        assert await handle.wait_for("wait", nth=2) == wait(30)
        assert handle.transcript.executed[:3] == ["read", "wait", "wait"]
        again = await handle.wait_for("read")  # already ran: returns at once
        assert again == first
        assert await handle.wait_for(step="queue", nth=2) == wait(30)
        assert handle.running in ("wait", None)
        assert await handle.hangup() is True
        t = await handle.ended()
        assert await handle.hangup() is False  # calls.hangup on an ended call
    assert t.ended_by == "api"
    assert t.hangup_count == 1
    assert t.executed[:1] == ["read"]
    assert set(t.executed[1:]) == {"wait"}


async def test_interrupt_runs_a_step_in_place_of_the_running_command() -> None:
    async with EmulatedPlatform(hold_queue(), speed=SPEED, strict=True) as p:
        handle = await p.start(Callee(actions=[Press("1")]))
        await handle.wait_for("wait")
        assert await handle.interrupt(then="announce") is True
        said = await handle.wait_for(step="announce")
        assert said == play(tts("An agent is free."))
        await handle.wait_for("wait", nth=2)  # back on hold after the message
        await handle.hangup()
        t = await handle.ended()
    assert t.executed[:4] == ["read", "wait", "play", "wait"]
    assert t.said == ["Press 1 for the queue", "An agent is free."]


async def test_an_outbound_handle_through_app_start_call() -> None:
    async with EmulatedPlatform(hold_queue(), speed=SPEED, strict=True) as p:
        handle = await p.start_outbound("+33699999999", Callee(answer_delay=1.0))
        assert handle.callid == p.emulator.calls[-1].callid
        assert handle.transcript.direction == "outbound"
        assert await handle.wait_for("wait") == wait(30)
        await handle.hangup()
        t = await handle.ended()
    assert t.direction == "outbound"
    assert t.ended_by == "api"


async def test_a_call_that_ends_first_raises_call_ended_with_its_transcript() -> None:
    async with EmulatedPlatform(hold_queue(), speed=SPEED, strict=True) as p:
        handle = await p.start(Callee(actions=[Press("1")], hangup_after=10))
        with pytest.raises(CallEnded) as info:
            await handle.wait_for("play")  # the queue never plays anything by itself
        t = await handle.ended()
    assert info.value.callid == handle.callid
    assert f"call {handle.callid} ended before 'play' ran 1 time(s)" in str(info.value)
    assert "ended by callee" in str(info.value)
    assert t.ended_by == "callee"


async def test_a_call_a_handler_ended_raises_handler_failed_from_wait_for() -> None:
    async with EmulatedPlatform(hold_queue(), speed=SPEED, strict=True) as p:
        handle = await p.start(Callee(actions=[Press("1")]))
        await handle.wait_for("wait")
        await handle.interrupt(then="broken")
        with pytest.raises(HandlerFailed) as info:
            await handle.wait_for("wait", nth=5)
    assert "RuntimeError: no agent table" in str(info.value)
    assert info.value.failures[0].step == "broken"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"nth": 0}, "nth counts from 1"), ({"command": "play", "step": "x"}, "not both")],
)
async def test_wait_for_refuses_what_cannot_be_meant(kwargs: dict[str, Any], match: str) -> None:
    app = App()

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return hangup()

    async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
        handle = await p.start()
        with pytest.raises(ValueError, match=match):
            await handle.wait_for(**kwargs)
        await handle.ended()
