"""The Call given to handlers: identity, parsed outcomes, variables and server-side state."""

from __future__ import annotations

from typing import Any

import pytest

from rtcontrol import (
    App,
    Call,
    CallStatus,
    Command,
    CommandFailed,
    Completed,
    DialFailed,
    Digits,
    Nothing,
    ReadTimeout,
    Recording,
    dialout,
    hangup,
    play,
    read,
    record,
    tts,
)

from .rig import APP_HASH, Platform, SpyStore

Seen = list[dict[str, Any]]


def snapshot(call: Call) -> dict[str, Any]:
    return {
        "id": call.id,
        "app_hash": call.app_hash,
        "number": call.number,
        "cli_number": call.cli_number,
        "cli_name": call.cli_name,
        "status": call.status,
        "is_outbound": call.is_outbound,
        "request_hash": call.request_hash,
        "cdr_field": call.cdr_field,
        "flow": call.flow,
        "step": call.step,
        "command": call.command,
        "outcome": call.outcome,
        "digits": call.digits,
        "timed_out": call.timed_out,
        "recording": call.recording,
        "variables": dict(call.variables),
        "state": dict(call.state),
        "repr": repr(call),
    }


async def test_identity_numbers_and_status(app: App, platform: Platform) -> None:
    seen: Seen = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        seen.append(snapshot(call))
        return play(tts("Hi")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        seen.append(snapshot(call))
        return hangup()

    line = platform.line(
        421889, number="+33900000000", cli_number="+447890123456", cdr_field="CDR42"
    )
    await line.start()
    await line.report("0")
    first, second = seen
    assert first["id"] == 421889
    assert first["app_hash"] == APP_HASH
    assert first["number"] == "+33900000000"
    assert first["cli_number"] == "+447890123456"
    assert first["cli_name"] == ""
    assert first["status"] is CallStatus.INCOMING_CALL
    assert first["is_outbound"] is False
    assert first["request_hash"] is None
    assert first["cdr_field"] == "CDR42"
    assert (first["flow"], first["step"]) == ("main", "start")
    assert first["outcome"] == Nothing()
    assert first["repr"] == "<Call 421889 main.start INCOMING_CALL>"
    assert second["status"] is CallStatus.UP
    assert (second["step"], second["command"]) == ("bye", "play")
    assert second["outcome"] == Completed("0")


@pytest.mark.parametrize(
    ("command", "result", "error", "outcome", "digits", "timed_out", "recording"),
    [
        (read(tts("code")), "42", "", Digits("42"), "42", False, None),
        (read(tts("code")), "TIMEOUT", "", ReadTimeout(), None, True, None),
        (read(tts("code")), "", "", ReadTimeout(), None, True, None),
        (record(), "rec-1234.wav", "", Recording("rec-1234.wav"), None, False, "rec-1234.wav"),
        (dialout("+33100000001"), "BUSY", "", DialFailed("BUSY"), None, False, None),
        (dialout("+33100000001"), "NOANSWER", "", DialFailed("NOANSWER"), None, False, None),
        (dialout("+33100000001"), "ANSWER", "", Completed("ANSWER"), None, False, None),
        (
            read(tts("code")),
            "",
            "INVALID_PARAMS",
            CommandFailed("INVALID_PARAMS"),
            None,
            False,
            None,
        ),
        (play(tts("hi")), "0", "", Completed("0"), None, False, None),
    ],
)
async def test_outcome_is_parsed_by_command(
    app: App,
    platform: Platform,
    command: Command,
    result: str,
    error: str,
    outcome: Any,
    digits: str | None,
    timed_out: bool,
    recording: str | None,
) -> None:
    seen: Seen = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return command.then(after)

    @app.step
    async def after(call: Call) -> Command:
        seen.append(snapshot(call))
        return hangup()

    line = platform.line()
    await line.start()
    await line.report(result, error=error)
    assert seen[0]["outcome"] == outcome
    assert seen[0]["digits"] == digits
    assert seen[0]["timed_out"] is timed_out
    assert seen[0]["recording"] == recording


async def test_variables_round_trip_through_the_platform(app: App, platform: Platform) -> None:
    seen: list[dict[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        seen.append(dict(call.variables))
        call.variables["lang"] = "fr"
        call.variables["visits"] = 1
        return read(tts("code")).then(second)

    @app.step
    async def second(call: Call) -> Command:
        seen.append(dict(call.variables))
        call.variables["visits"] += 1
        return play(tts("ok")).then(third)

    @app.step
    async def third(call: Call) -> Command:
        seen.append(dict(call.variables))
        return hangup()

    line = platform.line()
    first = await line.start()
    assert first["variables"] == {"lang": "fr", "visits": 1}
    nxt = await line.report("7")  # the platform echoes the variables untouched
    assert nxt["variables"] == {"lang": "fr", "visits": 2}
    last = await line.report("0")
    assert last["variables"] == {"lang": "fr", "visits": 2}
    assert seen == [{}, {"lang": "fr", "visits": 1}, {"lang": "fr", "visits": 2}]


async def test_variables_come_from_the_request_not_from_our_memory(
    app: App, platform: Platform
) -> None:
    """What the platform sends back is what the next handler sees."""
    seen: list[dict[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.variables["x"] = 1
        return read(tts("code")).then(second)

    @app.step
    async def second(call: Call) -> Command:
        seen.append(dict(call.variables))
        return hangup()

    line = platform.line()
    await line.start()
    await line.report("1", variables={"x": 1, "from_platform": [1, {"a": None}]})
    assert seen == [{"x": 1, "from_platform": [1, {"a": None}]}]


async def test_state_persists_across_callbacks_in_the_store(
    app: App, platform: Platform, store: SpyStore
) -> None:
    seen: list[dict[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        seen.append(dict(call.state))
        call.state["tries"] = 1
        call.state["path"] = ["start"]
        return read(tts("code")).then(again)

    @app.step
    async def again(call: Call) -> Command:
        seen.append({**call.state, "path": list(call.state["path"])})
        call.state["tries"] += 1
        call.state["path"].append("again")
        if call.state["tries"] < 3:
            return read(tts("code")).then(again)
        return hangup()

    line = platform.line()
    first = await line.start()
    assert "tries" not in first["variables"]  # state stays on the server
    await line.report("1")
    await line.report("2")
    assert seen == [
        {},
        {"tries": 1, "path": ["start"]},
        {"tries": 2, "path": ["start", "again"]},
    ]
    saved = await store.record(line.callid)
    assert saved["state"] == {"tries": 3, "path": ["start", "again", "again"]}


async def test_inbound_first_callback_may_be_up(app: App, platform: Platform) -> None:
    """The inbound first POST's status is UNKNOWN in the spec (INCOMING_CALL or UP)."""
    statuses: list[Any] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        statuses.append(call.status)
        return hangup()

    await platform.line().start("UP")
    await platform.line().start("INCOMING_CALL")
    assert statuses == [CallStatus.UP, CallStatus.INCOMING_CALL]
