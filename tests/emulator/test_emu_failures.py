"""Webhook failures and spec-breaking replies: never accepted silently."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, run_inbound, tts
from starlette.responses import JSONResponse, PlainTextResponse, Response

from rtcontrol.emulator import Callee


def final(t: Any) -> dict[str, Any]:
    statuses = [r["call_status"] for r in t.requests]
    assert statuses.count("HANGUP") == 1, t.render()
    assert statuses[-1] == "HANGUP"
    last: dict[str, Any] = t.requests[-1]
    return last


async def never(body: dict[str, Any]) -> dict[str, Any]:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


async def test_late_reply_hangs_up_with_timeout(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("wait", 1, seconds=1), never, cmd("play", 3, media_id=1))
    _, t = await run_inbound(make_emu, app, reply_timeout=0.2)
    last = final(t)
    assert (last["command"], last["command_id"]) == ("wait", 1)
    assert (last["command_result"], last["command_error"]) == ("", "TIMEOUT")
    assert t.ended_by == "webhook"
    assert t.executed == ["wait"]
    assert any("no reply within 0.2s" in e for e in t.errors)
    assert t.latencies[1] == pytest.approx(0.2, abs=0.1)  # real seconds, not virtual


async def test_slow_but_in_time_reply_is_accepted(make_emu: EmuFactory) -> None:
    async def slow(body: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(0.05)
        return cmd("hangup", 1)

    _, t = await run_inbound(make_emu, ScriptedApp(slow), reply_timeout=1.0)
    assert t.ended_by == "app"
    assert t.errors == []


async def test_late_reply_retry_mode(make_emu: EmuFactory) -> None:
    app = ScriptedApp(never, cmd("hangup", 1))
    _, t = await run_inbound(make_emu, app, reply_timeout=0.2, on_late_reply="retry")
    assert [r["call_status"] for r in t.requests] == ["INCOMING_CALL", "INCOMING_CALL", "HANGUP"]
    assert t.requests[0] == t.requests[1]  # the same POST, repeated
    assert t.ended_by == "app"


async def test_retry_gives_up_after_max_retries(make_emu: EmuFactory) -> None:
    app = ScriptedApp(flow=lambda body: Response(status_code=503))
    _, t = await run_inbound(make_emu, app, on_http_error="retry", max_retries=2)
    assert len(t.requests) == 4  # first try, two retries, final HANGUP
    assert final(t)["command_error"] == "HTTP_ERROR"


@pytest.mark.parametrize(
    ("reply", "token"),
    [
        (Response(status_code=500), "HTTP_ERROR"),
        (Response(status_code=404), "HTTP_ERROR"),
        (Response(status_code=204), "HTTP_ERROR"),
        (PlainTextResponse("hello"), "INVALID_RESPONSE"),
        (Response(b'{"command": "hangup", "command_id": NaN, "params": {}}'), "INVALID_RESPONSE"),
        (Response(b"\xff\xfe"), "INVALID_RESPONSE"),
        (JSONResponse([cmd("hangup", 1)]), "INVALID_RESPONSE"),
        (JSONResponse({"command_id": 1, "params": {}, "variables": {}}), "INVALID_RESPONSE"),
        (JSONResponse({"command": "hangup", "params": {}, "variables": {}}), "INVALID_RESPONSE"),
        (JSONResponse(cmd("hangup", 1.0)), "INVALID_RESPONSE"),
        (JSONResponse(cmd("hangup", True)), "INVALID_RESPONSE"),
        (JSONResponse(cmd("hangup", None)), "INVALID_RESPONSE"),
        (JSONResponse({"command": "hangup", "command_id": 1, "variables": {}}), "INVALID_RESPONSE"),
        (JSONResponse({"command": "hangup", "command_id": 1, "params": []}), "INVALID_RESPONSE"),
        (JSONResponse(cmd("hangup", 1, variables=[1])), "INVALID_RESPONSE"),
        (JSONResponse({"command": 5, "command_id": 1, "params": {}}), "INVALID_RESPONSE"),
    ],
    ids=[
        "500",
        "404",
        "204",
        "text",
        "nan",
        "not-utf8",
        "array",
        "no-command",
        "no-id",
        "float-id",
        "bool-id",
        "null-id",
        "no-params",
        "params-array",
        "variables-array",
        "command-int",
    ],
)
async def test_broken_webhook_hangs_up(make_emu: EmuFactory, reply: Response, token: str) -> None:
    app = ScriptedApp(cmd("wait", "w", seconds=1), reply, cmd("hangup", 9))
    _, t = await run_inbound(make_emu, app)
    last = final(t)
    assert (last["command"], last["command_id"], last["command_error"]) == ("wait", "w", token)
    assert t.executed == ["wait"]
    assert t.ended_by == "webhook"
    assert t.errors


async def test_app_crash_under_asgi_transport_is_an_http_error(make_emu: EmuFactory) -> None:
    def crash(body: dict[str, Any]) -> dict[str, Any]:
        raise RuntimeError("bug in the app")

    _, t = await run_inbound(make_emu, ScriptedApp(crash))
    assert final(t)["command_error"] == "HTTP_ERROR"
    assert any("bug in the app" in e for e in t.errors)


async def test_missing_variables_can_be_refused(make_emu: EmuFactory) -> None:
    app = ScriptedApp({"command": "hangup", "command_id": 1, "params": {}})
    _, t = await run_inbound(make_emu, app, missing_variables="invalid_response")
    assert t.ended_by == "webhook"
    assert t.requests[-1]["command_error"] == "INVALID_RESPONSE"


async def test_missing_params_can_be_tolerated(make_emu: EmuFactory) -> None:
    app = ScriptedApp({"command": "hangup", "command_id": 1, "variables": {}})
    _, t = await run_inbound(make_emu, app, missing_params="empty")
    assert t.ended_by == "app"


@pytest.mark.parametrize(
    ("reply", "token"),
    [
        (cmd("dance", 2), "UNKNOWN_COMMAND"),
        (cmd("Play", 2, media_id=1), "UNKNOWN_COMMAND"),
        (cmd("read", 2, media_id=tts("x"), max_digits=21), "INVALID_PARAMS"),
        (cmd("read", 2, media_id=tts("x"), max_digits="4"), "INVALID_PARAMS"),
        (cmd("read", 2, media_id=tts("x"), max_digits=True), "INVALID_PARAMS"),
        (cmd("wait", 2, seconds=31), "INVALID_PARAMS"),
        (cmd("wait", 2, seconds=1, extra=1), "INVALID_PARAMS"),
        (cmd("play", 2), "INVALID_PARAMS"),
        (cmd("play", 2, media_id="TTS|bad voice|hi"), "INVALID_PARAMS"),
        (cmd("dialout", 2, targets=[{"number": "0612", "timeout": 30}]), "INVALID_PARAMS"),
        (cmd("dialout", 2, targets=[{"number": "+33612345678", "timeout": 3}]), "INVALID_PARAMS"),
        (cmd("record", 2, max_duration=301), "INVALID_PARAMS"),
        (cmd("send_dtmf", 2, digits="12a"), "INVALID_PARAMS"),
        (cmd("hangup", 2, now=True), "INVALID_PARAMS"),
    ],
)
async def test_spec_breaking_command_is_refused(
    make_emu: EmuFactory, reply: dict[str, Any], token: str
) -> None:
    reply["variables"] = {"kept": True}
    app = ScriptedApp(cmd("wait", 1, seconds=1), reply, cmd("hangup", 3))
    _, t = await run_inbound(make_emu, app)
    refused = t.requests[2]
    assert refused["call_status"] == "UP"  # the call stays up
    assert (refused["command"], refused["command_id"]) == (reply["command"], 2)
    assert (refused["command_result"], refused["command_error"]) == ("", token)
    assert refused["variables"] == {"kept": True}
    assert t.executed == ["wait", "hangup"]  # never executed
    assert t.commands == ["wait", reply["command"], "hangup"]
    assert len(t.errors) == 1


async def test_invalid_command_can_hang_up(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("dance", 1), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app, on_invalid_command="hangup")
    last = final(t)
    assert (last["command"], last["command_error"]) == ("dance", "UNKNOWN_COMMAND")
    assert t.ended_by == "invalid_command"


async def test_extra_reply_keys_are_reported(make_emu: EmuFactory) -> None:
    reply = cmd("hangup", 1) | {"comand": "typo"}
    _, t = await run_inbound(make_emu, ScriptedApp(reply))
    assert t.ended_by == "app"
    assert any("'comand'" in e.text for e in t.events if e.kind == "platform")


async def test_connection_refused_is_an_http_error(make_emu: EmuFactory) -> None:
    emu = make_emu()  # real HTTP transport, to a loopback port nobody listens on
    hash_ = emu.create_app("http://127.0.0.1:9/callr").hash
    t = await emu.place_call(hash_, Callee())
    assert t.ended_by == "webhook"
    assert t.requests[-1]["command_error"] == "HTTP_ERROR"
    assert t.hangup_count == 1


async def test_max_commands_guard(make_emu: EmuFactory) -> None:
    app = ScriptedApp(flow=lambda body: cmd("wait", 1, seconds=1))
    _, t = await run_inbound(make_emu, app, max_commands=5)
    assert t.executed == ["wait"] * 5
    assert t.ended_by == "max_commands"
    final(t)
