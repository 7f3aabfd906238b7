"""How a transcript (and the live printer, which reads the same text) describes replies
that are not commands: ``HTTP 401, not a command``, ``HTTP 200, not JSON``, never
``None#null`` and never the body of a reply that is not JSON."""

from __future__ import annotations

from typing import Any

import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd
from starlette.responses import JSONResponse, Response

from rtcontrol.emulator import Callee, Event
from rtcontrol.emulator.printer import format_event
from rtcontrol.emulator.transcript import describe_raw_reply, describe_reply


def test_describe_reply_says_what_a_reply_was() -> None:
    command = cmd("read", "ask", media_id="TTS|V|Hi", max_digits=1)
    assert describe_reply(command) == 'read#"ask" {"media_id":"TTS|V|Hi","max_digits":1}'
    assert describe_reply(command, 200) == describe_reply(command)
    assert describe_reply({"error": "unauthorized"}, 401) == "HTTP 401, not a command"
    assert describe_reply({"error": "unauthorized"}) == 'not a command: {"error":"unauthorized"}'
    assert describe_reply([1, 2]) == "not a command: [1,2]"
    assert describe_reply({}) == "{}"
    assert describe_raw_reply(200, b"<html>secret</html>") == "HTTP 200, not JSON"
    assert describe_raw_reply(500, b"oops") == "HTTP 500, not JSON"
    assert describe_raw_reply(200, b"") == "(empty)"
    assert describe_raw_reply(401, b" ") == "HTTP 401, empty"


@pytest.mark.parametrize(
    ("final", "text"),
    [
        (JSONResponse({"error": "unauthorized"}, status_code=401), "HTTP 401, not a command"),
        (Response(b"<html>nope</html>", status_code=200), "HTTP 200, not JSON"),
        (Response(b"Unauthorized", status_code=401), "HTTP 401, not JSON"),
        (Response(b"", status_code=200), "(empty)"),
        (JSONResponse({}), "{}"),
    ],
)
async def test_an_ignored_final_reply_is_described_for_what_it_was(
    make_emu: EmuFactory, final: Response, text: str
) -> None:
    app = ScriptedApp(cmd("hangup", "bye"))
    app.final_reply = final
    emu = make_emu(app)
    t = await emu.place_call(emu.create_app(app.url).hash, Callee(answer_delay=0))
    ignored = [e for e in t.events if e.kind == "reply" and e.ignored]
    assert [e.text for e in ignored] == [text]
    assert "None#null" not in t.render()
    assert "nope" not in t.render()  # a body that is not JSON is not shown
    printed = [format_event(e).plain for e in emu.bus.events(t.callid) if e.type == "reply"]
    assert printed[-1].endswith(f"[ignored] {text}")


async def test_a_json_reply_without_a_command_says_so(make_emu: EmuFactory) -> None:
    app = ScriptedApp({"hello": "world"})
    emu = make_emu(app)
    t = await emu.place_call(emu.create_app(app.url).hash, Callee(answer_delay=0))
    replies: list[Event] = [e for e in t.events if e.kind == "reply" and not e.ignored]
    assert replies[0].text == 'not a command: {"hello":"world"}'
    data: Any = replies[0].data
    assert data == {"hello": "world"}
