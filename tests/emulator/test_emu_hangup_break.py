"""Ends of calls and interruptions: one HANGUP POST, always; breaks land mid-command."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, run_inbound, tts
from starlette.responses import JSONResponse

from rtcontrol.emulator import Callee, HangUp, Press, RPCFault

LONG = tts("x" * 1000)  # 70 virtual seconds


def assert_single_hangup(t: Any) -> dict[str, Any]:
    """Exactly one HANGUP POST, and it is the last POST."""
    statuses = [r["call_status"] for r in t.requests]
    assert statuses.count("HANGUP") == 1, t.render()
    assert statuses[-1] == "HANGUP"
    last: dict[str, Any] = t.requests[-1]
    return last


@pytest.mark.parametrize(
    "callee",
    [
        Callee(hangup_during=3, hangup_delay=1.0),
        Callee(hangup_during="play", hangup_delay=1.0),
        Callee(actions=[Press("1"), HangUp(after=0.5)]),
        Callee(actions=[Press("1")], hangup_after=15.0),
    ],
    ids=["nth", "named", "action", "after"],
)
async def test_callee_hangs_up_mid_command(make_emu: EmuFactory, callee: Callee) -> None:
    app = ScriptedApp(
        cmd("read", 1, media_id=tts("Choose"), max_digits=1, attempts=1, timeout_ms=2000),
        cmd("wait", 2, seconds=1),
        cmd("play", 3, media_id=LONG) if callee.hangup_during else cmd("read", 3, media_id=LONG),
        cmd("play", 4, media_id=tts("never")),
    )
    _, t = await run_inbound(make_emu, app, callee)
    final = assert_single_hangup(t)
    assert (final["command"], final["command_id"]) == (t.executed[-1], 3)
    assert final["command_result"] == ""
    assert t.ended_by == "callee"
    assert t.executed[-1] in ("play", "read")
    assert t.duration < 30  # the 70 s prompt was cut short
    assert len(app.replies) == 1  # nothing was asked after the hang-up


async def test_hangup_command(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", "bye", variables={"k": "v"}))
    _, t = await run_inbound(make_emu, app)
    final = assert_single_hangup(t)
    assert final["command"] == "hangup"
    assert final["command_id"] == "bye"
    assert final["variables"] == {"k": "v"}
    assert t.ended_by == "app"


async def test_reply_to_hangup_post_is_ignored(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    app.final_reply = JSONResponse(cmd("play", 9, media_id=1))
    _, t = await run_inbound(make_emu, app)
    assert_single_hangup(t)
    assert t.commands == ["hangup"]
    assert t.events[-1].ignored
    assert t.errors == []


async def test_calls_hangup_during_a_command(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("play", 1, media_id=LONG), cmd("play", 2, media_id=1))
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await call.wait_command("play")
    assert emu.hangup_call(call.callid, {}) is True
    t = await call.wait()
    final = assert_single_hangup(t)
    assert (final["command"], final["command_id"]) == ("play", 1)
    assert t.ended_by == "api"
    assert t.duration < 30
    assert emu.hangup_call(call.callid, {}) is False  # already ended (setting)


async def test_calls_hangup_while_the_app_is_thinking(make_emu: EmuFactory) -> None:
    asked, release = asyncio.Event(), asyncio.Event()

    async def slow(body: dict[str, Any]) -> dict[str, Any]:
        asked.set()
        await release.wait()
        return cmd("play", 2, media_id=LONG)

    app = ScriptedApp(cmd("wait", 1, seconds=1), slow)
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await asked.wait()
    assert emu.hangup_call(call.callid) is True
    release.set()
    t = await call.wait()
    final = assert_single_hangup(t)
    assert (final["command"], final["command_id"]) == ("wait", 1)  # the last command run
    assert t.executed == ["wait"]  # the late reply's play never ran
    assert t.ended_by == "api"


async def test_unknown_callid(make_emu: EmuFactory) -> None:
    emu = make_emu()
    for method in (emu.hangup_call, emu.break_call):
        with pytest.raises(RPCFault) as info:
            method(123456789)
        assert info.value.message == "PROPERTY_VALUE_ERROR [callid]"


async def test_break_stops_a_long_play(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("play", "long", media_id=LONG), cmd("hangup", 2))
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await call.wait_command("play")
    assert call.running == "play"
    assert emu.break_call(call.callid, {}) is True
    t = await call.wait()
    after = t.requests[1]
    assert (after["command"], after["command_id"], after["call_status"]) == ("play", "long", "UP")
    assert (after["command_result"], after["command_error"]) == ("", "")
    assert t.executed == ["play", "hangup"]
    assert t.duration < 30
    assert_single_hangup(t)


async def test_break_payload_is_a_setting(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("read", 1, media_id=LONG), cmd("hangup", 2))
    emu = make_emu(app, break_result="BROKEN", break_error="BREAK")
    call = emu.start_call(emu.create_app(app.url).hash, Callee(actions=[Press("1", after=5)]))
    await call.wait_command("read")
    assert emu.break_call(call.callid)
    t = await call.wait()
    assert (t.requests[1]["command_result"], t.requests[1]["command_error"]) == ("BROKEN", "BREAK")


@pytest.mark.parametrize("when_idle", [False, True])
async def test_break_when_nothing_runs(make_emu: EmuFactory, when_idle: bool) -> None:
    asked, release = asyncio.Event(), asyncio.Event()

    async def slow(body: dict[str, Any]) -> dict[str, Any]:
        asked.set()
        await release.wait()
        return cmd("wait", 1, seconds=2)

    app = ScriptedApp(slow, cmd("hangup", 2))
    emu = make_emu(app, break_when_idle=when_idle)
    call = emu.start_call(emu.create_app(app.url).hash)
    await asked.wait()
    assert call.running is None
    assert emu.break_call(call.callid) is when_idle
    release.set()
    t = await call.wait()
    assert t.requests[1]["command"] == "wait"  # not broken: nothing was queued
    assert emu.break_call(call.callid) is when_idle  # ended call


async def test_break_during_a_bridge_returns_control(make_emu: EmuFactory) -> None:
    target = [{"number": "+33700000001", "timeout": 10}]
    app = ScriptedApp(cmd("dialout", 1, targets=target), cmd("hangup", 2))
    emu = make_emu(app, phonebook={"+33700000001": Callee(answer_delay=0.5)})
    call = emu.start_call(emu.create_app(app.url).hash)
    await call.wait_until(lambda t: any("bridged" in e.text for e in t.events))
    assert emu.break_call(call.callid)
    t = await call.wait()
    assert (t.requests[1]["command"], t.requests[1]["call_status"]) == ("dialout", "UP")
    assert t.executed == ["dialout", "hangup"]
    (leg,) = emu.legs.values()
    assert leg.ended
    assert emu.hangup_call(leg.callid) is False


async def test_hangup_of_a_bridged_leg_ends_both(make_emu: EmuFactory) -> None:
    target = [{"number": "+33700000001", "timeout": 10}]
    app = ScriptedApp(cmd("dialout", 1, targets=target))
    emu = make_emu(app, phonebook={"+33700000001": Callee(answer_delay=0.5)})
    call = emu.start_call(emu.create_app(app.url).hash)
    await call.wait_until(lambda t: any("bridged" in e.text for e in t.events))
    (leg,) = emu.legs.values()
    assert emu.hangup_call(leg.callid) is True
    t = await call.wait()
    final = assert_single_hangup(t)
    assert (final["command"], final["command_result"]) == ("dialout", "ANSWER")
    assert t.ended_by == "bridge"


async def test_outbound_cancelled_while_ringing(make_emu: EmuFactory) -> None:
    app = ScriptedApp()
    emu = make_emu(app, phonebook={"+33600000001": Callee(answer_delay=60)})
    request = emu.realtime(emu.create_app(app.url).hash, {"number": "+33600000001", "timeout": 100})
    call = emu.call_for_request(request)
    await call.wait_until(lambda t: bool(t.events))
    assert emu.break_call(call.callid) is False  # nothing to break while ringing
    assert emu.hangup_call(call.callid) is True
    t = await call.wait()
    assert app.requests == []
    assert t.ended_by == "cancel"


async def test_shutdown_still_sends_the_hangup_post(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("play", 1, media_id=LONG))
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await call.wait_command("play")
    await emu.aclose()
    t = await call.wait()
    assert_single_hangup(t)
    assert t.ended_by == "shutdown"
