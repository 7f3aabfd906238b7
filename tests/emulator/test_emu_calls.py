"""Call lifecycle: what the platform POSTs, field by field, inbound and outbound."""

from __future__ import annotations

import base64
import re

import httpx
from emu_helpers import EmuFactory, ScriptedApp, cmd, run_inbound, tts

from rtcontrol.emulator import Callee, Emulator, Press, ScaledClock
from rtcontrol.protocol import RTRequest

FIELDS = {
    "app",
    "callid",
    "request_hash",
    "cli_name",
    "cli_number",
    "date_started",
    "number",
    "command",
    "command_id",
    "command_result",
    "command_error",
    "call_status",
    "cdr_field",
    "variables",
}
DATETIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


async def test_inbound_happy_path_fields(make_emu: EmuFactory) -> None:
    app = ScriptedApp(
        cmd("play", 1, media_id=tts("Welcome")),
        cmd("hangup", 2),
    )
    emu = make_emu(app)
    hash_ = emu.create_app(app.url).hash
    t = await emu.place_call(
        hash_, Callee(name="Ann"), cli_number="+33611111111", cli_name="Ann", number="+33199999999"
    )

    first, after_play, last = app.requests
    assert set(first) == FIELDS
    assert first == {
        "app": hash_,
        "callid": t.callid,
        "request_hash": None,
        "cli_name": "Ann",
        "cli_number": "+33611111111",
        "date_started": first["date_started"],
        "number": "+33199999999",
        "command": "",
        "command_id": 0,
        "command_result": "",
        "command_error": "",
        "call_status": "INCOMING_CALL",
        "cdr_field": "",
        "variables": {},
    }
    assert DATETIME.fullmatch(first["date_started"])
    assert isinstance(first["callid"], int)
    assert after_play["call_status"] == "UP"
    assert (after_play["command"], after_play["command_id"]) == ("play", 1)
    assert after_play["command_result"] == "0"
    assert last["call_status"] == "HANGUP"
    assert (last["command"], last["command_id"]) == ("hangup", 2)
    for body in app.requests:
        RTRequest.model_validate(body)  # the project's own model accepts every POST
        assert body["date_started"] == first["date_started"]
    assert t.requests == app.requests
    assert t.commands == ["play", "hangup"]
    assert t.executed == ["play", "hangup"]
    assert t.hangup_count == 1
    assert t.final_status == "HANGUP"
    assert t.ended_by == "app"
    assert t.errors == []


async def test_inbound_first_status_is_a_setting(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    _, t = await run_inbound(make_emu, app, inbound_first_status="UP")
    assert [r["call_status"] for r in t.requests] == ["UP", "HANGUP"]


async def test_status_stays_incoming_until_a_command_runs(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("bogus", 1), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app)
    assert [r["call_status"] for r in t.requests] == ["INCOMING_CALL", "INCOMING_CALL", "HANGUP"]


async def test_outbound_call_fields(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    emu = make_emu(app, phonebook={"+447890123456": Callee(answer_delay=1)})
    hash_ = emu.create_app(app.url).hash
    request = emu.realtime(
        hash_,
        {"number": "+447890123456", "timeout": 30},
        {"cdr_field": "CUSTOM42", "cli": "+33100000000"},
    )
    assert re.fullmatch(r"[0-9A-Z]{8}", request)
    t = await emu.wait_request(request)

    first = app.requests[0]
    assert set(first) == FIELDS
    assert first["request_hash"] == request
    assert first["call_status"] == "UP"
    assert first["number"] == "+447890123456"
    assert first["cli_number"] == "+33100000000"
    assert first["cdr_field"] == "CUSTOM42"
    assert (first["command"], first["command_id"]) == ("", 0)
    assert app.requests[-1]["cdr_field"] == "CUSTOM42"
    assert t.direction == "outbound"
    assert t.hangup_count == 1
    assert emu.call_for_request(request).callid == first["callid"]


async def test_callids_increase(make_emu: EmuFactory) -> None:
    app = ScriptedApp(flow=lambda body: cmd("hangup", 1))
    emu = make_emu(app)
    hash_ = emu.create_app(app.url).hash
    a = await emu.place_call(hash_)
    b = emu.realtime(hash_, {"number": "+33600000001", "timeout": 10})
    c = await emu.place_call(hash_)
    tb = await emu.wait_request(b)
    assert a.callid < tb.callid < c.callid


async def test_unanswered_outbound_posts_once(make_emu: EmuFactory) -> None:
    app = ScriptedApp()
    book = {
        "+33600000001": Callee("busy", answer_delay=1),
        "+33600000002": Callee("noanswer"),
        "+33600000003": Callee("answer", answer_delay=20),  # rings past the timeout
        "+33600000004": Callee("rejected"),
    }
    emu = make_emu(app, phonebook=book)
    hash_ = emu.create_app(app.url).hash
    statuses = []
    for number in book:
        t = await emu.wait_request(emu.realtime(hash_, {"number": number, "timeout": 5}))
        assert len(t.requests) == 1
        assert t.hangup_count == 0
        assert t.ended_by == "unanswered"
        statuses.append(t.requests[0]["call_status"])
    assert statuses == ["BUSY", "NOANSWER", "NOANSWER", "REJECTED"]
    assert len(app.requests) == 4


async def test_unanswered_outbound_can_post_nothing(make_emu: EmuFactory) -> None:
    app = ScriptedApp()
    emu = make_emu(app, phonebook={"+33600000001": Callee("busy")}, post_unanswered_outbound=False)
    hash_ = emu.create_app(app.url).hash
    t = await emu.wait_request(emu.realtime(hash_, {"number": "+33600000001", "timeout": 5}))
    assert app.requests == []
    assert t.final_status == "UNANSWERED"


async def test_command_id_echoed_with_its_json_type(make_emu: EmuFactory) -> None:
    ids = [7, "ask_age", 2**53 + 1, "", "é-ü"]
    app = ScriptedApp(*[cmd("wait", i, seconds=1) for i in ids], cmd("hangup", 0))
    _, t = await run_inbound(make_emu, app)
    echoed = [r["command_id"] for r in t.requests[1:-1]]
    assert echoed == ids
    assert [type(x) for x in echoed] == [type(x) for x in ids]
    assert t.requests[-1]["command_id"] == 0


async def test_variables_echoed_exactly(make_emu: EmuFactory) -> None:
    tricky = {"n": 1.5, "big": 2**60, "s": "naïve ☎", "l": [None, True, {"x": []}], "e": {}}
    app = ScriptedApp(
        cmd("wait", 1, variables=tricky, seconds=1),
        cmd("wait", 2, variables={"step": 2}, seconds=1),
        cmd("hangup", 3, variables={"step": 3}),
    )
    _, t = await run_inbound(make_emu, app)
    assert [r["variables"] for r in t.requests] == [{}, tricky, {"step": 2}, {"step": 3}]


async def test_missing_variables_reset_or_keep(make_emu: EmuFactory) -> None:
    no_vars = {"command": "wait", "command_id": 2, "params": {"seconds": 1}}
    app = ScriptedApp(cmd("wait", 1, variables={"k": 1}, seconds=1), no_vars, cmd("hangup", 3))
    _, t = await run_inbound(make_emu, app)
    assert t.requests[2]["variables"] == {}

    app = ScriptedApp(cmd("wait", 1, variables={"k": 1}, seconds=1), no_vars, cmd("hangup", 3))
    _, t = await run_inbound(make_emu, app, missing_variables="keep")
    assert t.requests[2]["variables"] == {"k": 1}


async def test_basic_auth_sent_when_app_has_credentials(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    emu = make_emu(app)
    hash_ = emu.create_app(app.url, login="callr", password="s3cret:x").hash
    await emu.place_call(hash_)
    expected = "Basic " + base64.b64encode(b"callr:s3cret:x").decode()
    assert [h.get("authorization") for h in app.headers] == [expected, expected]
    assert app.headers[0]["content-type"] == "application/json"
    assert app.headers[0]["accept"] == "*/*"


async def test_no_auth_header_without_credentials(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    await run_inbound(make_emu, app)
    assert all("authorization" not in h for h in app.headers)


async def test_apps_edit_changes_the_url_of_the_next_call(make_emu: EmuFactory) -> None:
    app = ScriptedApp(flow=lambda body: cmd("hangup", 1))
    emu = make_emu(app)
    created = emu.create_app("http://app.test/wrong")
    emu.apps_edit(created.hash, None, {"url": app.url})
    t = await emu.place_call(created.hash, Callee(actions=[Press("1")]))
    assert t.errors == []
    assert len(app.requests) == 2


async def test_mounts_route_each_app_to_its_transport() -> None:
    one = ScriptedApp(cmd("hangup", 1))
    two = ScriptedApp(cmd("wait", 1, seconds=1), cmd("hangup", 2))
    mounts = {
        "http://one.test": httpx.ASGITransport(one.asgi),
        "http://two.test": httpx.ASGITransport(two.asgi),
    }
    async with Emulator(clock=ScaledClock(100), mounts=mounts) as emu:
        t1 = await emu.place_call(emu.create_app("http://one.test/callr").hash)
        t2 = await emu.place_call(emu.create_app("http://two.test/callr").hash)
    assert (len(one.requests), len(two.requests)) == (2, 3)
    assert (t1.commands, t2.commands) == (["hangup"], ["wait", "hangup"])
