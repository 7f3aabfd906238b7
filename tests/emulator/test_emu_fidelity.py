"""Issue 12 item 4: races between a reply in flight and a hang-up or break.

Races are ordered with events: the app's reply is held until the test has hung up or
broken the call, so the interleaving is the same on any machine.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, tts
from starlette.responses import Response

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
