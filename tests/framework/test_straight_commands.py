"""Whole straight-line calls through the emulator: every REALTIME10 command awaited,
its typed result, helpers and sub-flows composed, and the hang-up reaching the flow."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from rtcontrol import (
    App,
    CallHungUp,
    Completed,
    DialFailed,
    LiveCall,
    tts,
)
from rtcontrol.emulator import Callee, HangUp, Press, Silence
from rtcontrol.testing import EmulatedPlatform, random_credentials

SPEED = 400.0
AGENT = "+33100000001"
BUSY = "+33100000002"
#: The smallest valid WAV file: a RIFF header and no samples.
WAV = base64.b64decode("UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA=")


async def ask_pin(call: LiveCall, tries: int = 3) -> str | None:
    """A plain async helper: composes with the flow like any coroutine."""
    for _ in range(tries):
        pin = await call.read(tts("Your PIN"), max_digits=4, attempts=1, timeout_ms=2000)
        if pin is not None and len(pin) == 4:
            return pin
    return None


def build(seen: list[Any], end: str = "hangup") -> App:
    app = App(**random_credentials())

    @app.inbound_call
    async def everything(call: LiveCall) -> None:
        seen.append(("pin", await ask_pin(call)))
        seen.append(("play", await call.play(tts("Hello"))))
        seen.append(("talk", await call.play_talk_detect(tts("Are you there?"))))
        seen.append(("wav", await call.play_wav_data(WAV)))
        seen.append(("record", file := await call.record(max_duration=5, silence=2)))
        if file:
            seen.append(("play_record", await call.play_record(file)))
        seen.append(("dtmf", await call.send_dtmf("12#")))
        seen.append(("wait", await call.wait(1)))
        seen.append(("silence", await call.wait_for_silence(500, 1, 3)))
        seen.append(("rec-on", await call.start_call_recording()))
        seen.append(("rec-off", await call.stop_call_recording()))
        seen.append(("busy", await call.dialout(BUSY)))
        if end == "hangup_callid":
            await call.hangup_callid(call.id)
        elif end == "dialout":
            seen.append(("agent", await call.dialout(AGENT)))  # the bridge ends the call
        elif end == "simple_conference":  # the caller leaves the room by hanging up
            await call.simple_conference("room-1")
        elif end == "conference":
            await call.conference("room-2", auto_leave_when_alone=True)
        else:
            await call.hangup()

    return app


@pytest.mark.parametrize(
    "end", ["hangup", "hangup_callid", "dialout", "simple_conference", "conference"]
)
async def test_every_command_is_awaited_with_its_typed_result(end: str) -> None:
    seen: list[Any] = []
    phonebook = {
        AGENT: Callee(answer_delay=1.0, hangup_after=2.0),
        BUSY: Callee(answer="busy"),
    }
    app = build(seen, end)
    caller = Callee(
        actions=[Press("12"), Press("1234")],
        hangup_during=end if "conference" in end else None,
        hangup_delay=1.0,
    )
    async with EmulatedPlatform(app, speed=SPEED, phonebook=phonebook) as p:
        t = await p.call(caller)
    assert t.errors == [], t.render()
    assert t.executed == [
        "read",
        "read",
        "play",
        "play_talk_detect",
        "play_wav_data",
        "record",
        *(["play_record"] if any(k == "play_record" for k, _ in seen) else []),
        "send_dtmf",
        "wait",
        "wait_for_silence",
        "start_call_recording",
        "stop_call_recording",
        "dialout",
        end,
    ], t.render()
    values = dict(seen)
    assert values["pin"] == "1234"
    assert isinstance(values["play"], Completed)
    assert isinstance(values["talk"], str)
    assert values["busy"] == DialFailed("BUSY")
    # A bridge that ends the call ends the flow: its await raises CallHungUp.
    assert "agent" not in values
    expected = {
        "dialout": "bridge",
        "simple_conference": "callee",
        "conference": "callee",
        "hangup_callid": "hangup_callid",
    }
    assert t.ended_by == expected.get(end, "app"), t.render()
    assert t.hangup_count == 1


async def test_a_caller_hanging_up_raises_in_the_flow_and_finally_runs() -> None:
    trail: list[str] = []
    app = App(**random_credentials())

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        try:
            while True:
                digits = await call.read(tts("Press a key"), max_digits=1, timeout_ms=2000)
                trail.append(f"digits:{digits}")
        except CallHungUp:
            trail.append("hung-up")
        finally:
            trail.append("finally")

    @app.on_hangup
    async def ended(call: Any) -> None:
        trail.append("on_hangup")

    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("5"), Silence(), HangUp(after=0.5)]))
        await app.settle()
    assert t.hangup_count == 1
    assert trail == ["digits:5", "digits:None", "hung-up", "finally", "on_hangup"]
