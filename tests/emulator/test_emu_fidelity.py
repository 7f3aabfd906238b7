"""Issue 12 item 4: races between a reply in flight and a hang-up or break, and the
three behaviours the spec leaves UNKNOWN that are now named settings.

Races are ordered with events: the app's reply is held until the test has hung up or
broken the call, so the interleaving is the same on any machine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from emu_helpers import SPEED, EmuFactory, ScriptedApp, cmd, tts
from starlette.responses import Response

from rtcontrol.emulator import Callee, Emulator, EmulatorSettings, Press, ScaledClock

OLD = {"step": "old"}
NEW = {"step": "new", "nested": {"n": [1, 2]}}


class Held:
    """A reply the app holds until released; ``asked`` fires when the POST arrives."""

    def __init__(self, reply: Any) -> None:
        self.reply = reply
        self.asked = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, body: dict[str, Any]) -> Any:
        self.asked.set()
        await self.release.wait()
        return self.reply


def final_post(requests: list[dict[str, Any]]) -> dict[str, Any]:
    statuses = [r["call_status"] for r in requests]
    assert statuses.count("HANGUP") == 1
    assert statuses[-1] == "HANGUP"
    return requests[-1]


# --- 1. variables are those of the latest valid reply ---------------------------------------
@pytest.mark.parametrize(
    "late_reply",
    [
        cmd("play", 2, NEW, media_id=tts("never played")),
        cmd("dance", 2, NEW),  # refused (unknown command) but a valid envelope
        cmd("hangup", 2, NEW),
    ],
    ids=["accepted", "refused", "hangup-command"],
)
async def test_hangup_during_the_reply_uses_the_replys_variables(
    make_emu: EmuFactory, late_reply: dict[str, Any]
) -> None:
    held = Held(late_reply)
    app = ScriptedApp(cmd("wait", 1, OLD, seconds=1), held)
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await held.asked.wait()
    assert emu.hangup_call(call.callid, {}) is True
    held.release.set()
    t = await call.wait()
    final = final_post(t.requests)
    assert final["variables"] == NEW
    assert t.executed == ["wait"]  # the late reply's command never ran
    assert t.ended_by == "api"


async def test_hangup_during_a_failed_reply_keeps_the_previous_variables(
    make_emu: EmuFactory,
) -> None:
    held = Held(Response(b"{not json", media_type="application/json"))
    app = ScriptedApp(cmd("wait", 1, OLD, seconds=1), held)
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await held.asked.wait()
    assert emu.hangup_call(call.callid) is True
    held.release.set()
    t = await call.wait()
    assert final_post(t.requests)["variables"] == OLD  # no valid reply since


async def test_hangup_during_a_retried_reply_uses_the_retry_that_succeeded(
    make_emu: EmuFactory,
) -> None:
    held = Held(Response(b"busy", status_code=503))
    app = ScriptedApp(cmd("wait", 1, OLD, seconds=1), held, cmd("play", 2, NEW, media_id=1))
    emu = make_emu(app, on_http_error="retry", max_retries=1)
    call = emu.start_call(emu.create_app(app.url).hash)
    await held.asked.wait()
    assert emu.hangup_call(call.callid) is True
    held.release.set()
    t = await call.wait()
    assert [r["call_status"] for r in t.requests] == ["INCOMING_CALL", "UP", "UP", "HANGUP"]
    assert t.requests[1]["variables"] == t.requests[2]["variables"] == OLD  # identical retry
    assert final_post(t.requests)["variables"] == NEW
    assert t.executed == ["wait"]


async def test_break_during_the_reply_is_not_queued_and_keeps_the_replys_variables(
    make_emu: EmuFactory,
) -> None:
    held = Held(cmd("wait", 2, NEW, seconds=1))
    app = ScriptedApp(cmd("wait", 1, OLD, seconds=1), held, cmd("hangup", 3, NEW))
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    await held.asked.wait()
    assert emu.break_call(call.callid) is False  # nothing runs while the app is asked
    held.release.set()
    t = await call.wait()
    assert t.executed == ["wait", "wait", "hangup"]
    assert t.requests[2]["variables"] == NEW
    assert (t.requests[2]["command_id"], t.requests[2]["command_error"]) == (2, "")


# --- 2a. hangup_repeats_report ---------------------------------------------------------------
READ = cmd("read", "ask", OLD, media_id=tts("Pick one"), max_digits=1, attempts=1, timeout_ms=5000)


@pytest.mark.parametrize("repeat", [True, False])
async def test_hangup_while_asked_repeats_the_report_or_not(
    make_emu: EmuFactory, repeat: bool
) -> None:
    held = Held(cmd("play", 2, NEW, media_id=1))
    app = ScriptedApp(READ, held)
    emu = make_emu(app, hangup_repeats_report=repeat)
    call = emu.start_call(emu.create_app(app.url).hash, Callee(actions=[Press("7")]))
    await held.asked.wait()
    assert t_request(call, 1)["command_result"] == "7"
    assert emu.hangup_call(call.callid) is True
    held.release.set()
    t = await call.wait()
    final = final_post(t.requests)
    reported = (final["command"], final["command_id"], final["command_result"])
    assert reported == (("read", "ask", "7") if repeat else ("", 0, ""))
    assert final["command_error"] == ""
    assert final["variables"] == NEW


@pytest.mark.parametrize("repeat", [True, False])
async def test_webhook_failure_repeats_the_report_or_not(
    make_emu: EmuFactory, repeat: bool
) -> None:
    app = ScriptedApp(READ, Response(b"oops", status_code=500))
    emu = make_emu(app, hangup_repeats_report=repeat)
    call = emu.start_call(emu.create_app(app.url).hash, Callee(actions=[Press("7")]))
    t = await call.wait()
    final = final_post(t.requests)
    reported = (final["command"], final["command_id"], final["command_result"])
    assert reported == (("read", "ask", "") if repeat else ("", 0, ""))
    assert final["command_error"] == "HTTP_ERROR"
    assert final["variables"] == OLD
    assert t.ended_by == "webhook"


def t_request(call: Any, index: int) -> dict[str, Any]:
    request: dict[str, Any] = call.transcript.requests[index]
    return request


# --- 2b. post_cancelled_outbound -------------------------------------------------------------
@pytest.mark.parametrize("post", [False, True])
async def test_outbound_cancelled_while_ringing_posts_per_setting(
    make_emu: EmuFactory, post: bool
) -> None:
    app = ScriptedApp()
    emu = make_emu(
        app, phonebook={"+33600000001": Callee(answer_delay=60)}, post_cancelled_outbound=post
    )
    request = emu.realtime(emu.create_app(app.url).hash, {"number": "+33600000001", "timeout": 100})
    call = emu.call_for_request(request)
    await call.wait_until(lambda t: any(e.text.startswith("dialing") for e in t.events))
    assert emu.hangup_call(call.callid) is True
    t = await call.wait()
    assert t.ended_by == "cancel"
    assert t.executed == []
    if not post:
        assert app.requests == []
        return
    (only,) = app.requests
    assert only["call_status"] == "HANGUP"
    assert (only["command"], only["command_id"], only["command_result"]) == ("", 0, "")
    assert only["request_hash"] == request
    assert only["callid"] == call.callid
    assert t.hangup_count == 1
    assert emu.hangup_call(call.callid) is False  # ended: one POST, nothing after it


# --- 2c. broadcast_status_answered ---------------------------------------------------------
class SignallingClock(ScaledClock):
    """A scaled clock that fires ``long_sleep`` when something sleeps over an hour."""

    def __init__(self, speed: float) -> None:
        super().__init__(speed)
        self.long_sleep = asyncio.Event()

    async def sleep(self, virtual: float) -> None:
        if virtual > 3600:
            self.long_sleep.set()
        await super().sleep(virtual)


@pytest.mark.parametrize(
    ("mode", "during", "after"),
    [("dial_status", "ANSWER", "ANSWER"), ("call_status", "UP", "HANGUP")],
)
async def test_broadcast_status_during_and_after(mode: str, during: str, after: str) -> None:
    clock = SignallingClock(SPEED)
    settings = EmulatorSettings(broadcast_status_answered=mode, media_durations={131: 10**6})
    book = {
        "+33612345678": Callee(answer_delay=1),
        "+33600000000": Callee("busy", answer_delay=1),
    }
    emu = Emulator(settings, clock=clock, phonebook=book)
    try:
        target = {"number": "+33612345678", "timeout": 30}
        endless = emu.broadcast(target, [131])
        assert emu.get_status(endless) in ("PENDING", "DIALING")
        await clock.long_sleep.wait()  # answered, the 131 message is playing
        assert emu.get_status(endless) == during
        assert emu.hangup_call(emu.transcripts[0].callid) is True
        t = await emu.wait_request(endless)
        assert t.ended_by == "api"
        assert emu.get_status(endless) == after

        short = emu.broadcast(target, [tts("Hello")])
        assert (await emu.wait_request(short)).ended_by == "completed"
        assert emu.get_status(short) == after

        busy = emu.broadcast({"number": "+33600000000", "timeout": 30}, [1])
        await emu.wait_request(busy)
        assert emu.get_status(busy) == "BUSY"  # unanswered: the same in both modes
    finally:
        await emu.aclose()


def test_new_settings_are_documented_unknowns() -> None:
    fields = EmulatorSettings.model_fields
    defaults = {
        "hangup_repeats_report": True,
        "post_cancelled_outbound": False,
        "broadcast_status_answered": "dial_status",
    }
    for name, default in defaults.items():
        assert fields[name].default == default
        assert (fields[name].description or "").startswith("UNKNOWN (§")
