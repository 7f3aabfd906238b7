"""``ControlClient``, the typed client of the control API: results, errors, the event stream,
and ``Transcript.from_json`` (what ``GET /calls/{id}/transcript`` turns back into).

In-process tests use ``httpx.ASGITransport(build_control_app(emu), root_path=CONTROL_PATH)``;
the event stream and the unreachable cases use real loopback servers. Waits are on events.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any

import httpx
import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, tts
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from rtcontrol import RtcontrolError
from rtcontrol.commands import WAIT_KEY, from_wire, hangup
from rtcontrol.emulator import (
    CONTROL_PATH,
    Callee,
    CallInfo,
    ControlClient,
    ControlEvent,
    Emulator,
    Event,
    HangUp,
    LiveCallee,
    LocalServer,
    Press,
    Speak,
    Transcript,
    build_service_app,
)
from rtcontrol.emulator.control import build_control_app
from rtcontrol.emulator.remote import _parse_sse
from rtcontrol.errors import ConfigurationError, ControlError, ControlUnreachable

WAIT = 30.0  # seconds an event may take on a busy machine
BASE = "http://callr.test" + CONTROL_PATH


def in_process(emu: Emulator) -> ControlClient:
    transport = httpx.ASGITransport(build_control_app(emu), root_path=CONTROL_PATH)
    return ControlClient(BASE, transport=transport)


def menu() -> ScriptedApp:
    read = cmd(
        "read", "ask", {"step": 1}, media_id=tts("Press 1."), max_digits=1, attempts=1,
        timeout_ms=30_000,
    )  # fmt: skip
    return ScriptedApp(read, cmd("hangup", "bye"))


@pytest.fixture
async def control(make_emu: EmuFactory) -> AsyncIterator[tuple[Emulator, ControlClient, str]]:
    app = menu()
    emu = make_emu(app)
    async with in_process(emu) as client:
        app_hash = await client.create_app(app.url)
        yield emu, client, app_hash


# ---------------------------------------------------------------- typed results


async def test_the_routes_answer_typed_results(
    control: tuple[Emulator, ControlClient, str],
) -> None:
    emu, client, app_hash = control
    info = await client.info()
    assert info.rpc_url == "http://callr.test/json-rpc/v1.1/"
    assert info.control_url == BASE + "/"
    assert [(a.hash, a.type) for a in info.apps] == [(app_hash, "REALTIME10")]
    assert [a.hash for a in await client.apps()] == [app_hash]

    busy = Callee("busy", name="always busy")
    book = await client.set_phone("+33600000007", busy)
    assert book.numbers == {"+33600000007": busy}
    assert emu.phonebook["+33600000007"] == busy  # the emulator's own phonebook
    assert (await client.set_phone("+33600000008", "live")).live == ("+33600000008",)
    assert (await client.drop_phone("+33600000007")).numbers == {}

    placed = await client.place_inbound(
        Callee(answer_delay=0, actions=[Press("1")]), from_="+33600000042", to="+33100000000"
    )
    assert isinstance(placed, CallInfo)
    assert (placed.direction, placed.state, placed.app) == ("inbound", "up", app_hash)
    assert (placed.from_, placed.to, placed.live) == ("+33600000042", "+33100000000", False)
    done = await emu.wait_call(placed.callid)
    assert done.executed == ["read", "hangup"]

    info_after = await client.call(placed.callid)
    assert (info_after.state, info_after.ended_by) == ("ended", "app")
    assert info_after.transcript == done
    assert [c.callid for c in await client.calls()] == [placed.callid]
    assert (await client.info()).last_event == emu.bus.history[-1].seq


async def test_an_outbound_call_gets_its_request_hash(
    control: tuple[Emulator, ControlClient, str],
) -> None:
    emu, client, _ = control
    await client.set_phone("+33600000001", Callee(answer_delay=0, actions=[Press("1")]))
    placed = await client.place_outbound("+33600000001", ring_timeout=20, cli="+33100000000")
    assert placed.direction == "outbound"
    assert placed.request_hash is not None
    t = await emu.wait_request(placed.request_hash)
    assert (t.callid, t.executed) == (placed.callid, ["read", "hangup"])
    assert (await client.transcript(placed.callid)) == t


async def test_a_live_callee_is_driven_through_the_client(
    control: tuple[Emulator, ControlClient, str],
) -> None:
    emu, client, _ = control
    placed = await client.place_inbound("live")
    assert placed.live is True
    call = emu.call(placed.callid)
    await call.wait_command("read")
    heard = await client.press(placed.callid, "1")
    assert (heard.heard, heard.running) == (True, "read")
    t = await emu.wait_call(placed.callid)
    assert t.executed == ["read", "hangup"]
    assert [r["command_result"] for r in t.requests if r["command"] == "read"] == ["1"]
    assert await client.hang_up(placed.callid) is False  # over already


async def test_a_transcript_from_the_client_has_said_and_ran(
    control: tuple[Emulator, ControlClient, str],
) -> None:
    """``said`` and ``ran`` are the transcript's own: the client's has them too."""
    emu, client, _ = control
    placed = await client.place_inbound(Callee(answer_delay=0, actions=[Press("1")]))
    done = await emu.wait_call(placed.callid)
    t = await client.transcript(placed.callid)
    assert t.said == ["Press 1."]
    read_params = menu().replies[0]["params"]
    assert t.ran == [from_wire("read", read_params), hangup()]
    assert (t.said, t.ran) == (done.said, done.ran)
    assert [c.name for c in t.ran] == t.executed


async def test_a_running_calls_transcript_gives_the_time_so_far(
    make_emu: EmuFactory,
) -> None:
    app = menu()
    emu = make_emu(app, speed=1)  # real time: the read waits for the live key
    async with in_process(emu) as client:
        await client.create_app(app.url)
        placed = await client.place_inbound("live")
        await emu.call(placed.callid).wait_command("read")
        info = await client.call(placed.callid)
        t = await client.transcript(placed.callid)
        assert info.state == "up"
        assert info.duration > 0.0
        assert info.transcript is not None
        assert info.transcript.duration == info.duration  # one clock reading, one answer
        assert t.duration >= info.duration  # read after it: later, never 0.0
        assert f"still running after {t.duration:.1f}s" in t.render()
        await client.hang_up(placed.callid)
        done = await emu.wait_call(placed.callid)
        assert (await client.transcript(placed.callid)).duration == done.duration


# ---------------------------------------------------------------- errors


async def test_refusals_keep_their_status_and_code(
    control: tuple[Emulator, ControlClient, str],
) -> None:
    _, client, _ = control
    with pytest.raises(ControlError) as bad_app:
        await client.place_inbound(app="ZZZZZZZZ")
    assert (bad_app.value.status, bad_app.value.code) == (400, "PROPERTY_VALUE_ERROR")
    assert not isinstance(bad_app.value, ControlUnreachable)
    with pytest.raises(ControlError) as bad_number:
        await client.set_phone("0612345678", Callee())
    assert (bad_number.value.status, bad_number.value.code) == (400, "INVALID_PARAM")
    assert "E.164" in bad_number.value.message
    with pytest.raises(ControlError) as unknown:
        await client.transcript(999)
    assert (unknown.value.status, unknown.value.code) == (404, "NO_SUCH_CALL")
    assert not isinstance(unknown.value, ControlUnreachable)
    scripted = await client.place_inbound(Callee(actions=[Press("1")]))
    with pytest.raises(ControlError) as not_live:
        await client.press(scripted.callid, "1")
    assert (not_live.value.status, not_live.value.code) == (409, "NOT_LIVE")
    with pytest.raises(ControlError) as not_ringing:
        await client.answer(scripted.callid)
    assert (not_ringing.value.status, not_ringing.value.code) == (409, "NOT_RINGING")
    with pytest.raises(ControlError) as stream_of_nothing:
        async for _ in client.events(999):
            pass
    assert stream_of_nothing.value.status == 404
    assert isinstance(not_live.value, RtcontrolError)


async def test_a_live_callee_object_cannot_travel(
    control: tuple[Emulator, ControlClient, str],
) -> None:
    _, client, _ = control
    with pytest.raises(ValueError, match='pass "live"'):
        await client.place_inbound(LiveCallee())
    with pytest.raises(ValueError, match="a callee is"):
        await client.set_phone("+33600000001", "busy")  # type: ignore[arg-type]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once it is closed


async def test_nothing_there_is_unreachable() -> None:
    async with ControlClient(f"http://127.0.0.1:{closed_port()}/control/v1") as client:
        with pytest.raises(ControlUnreachable) as caught:
            await client.calls()
        assert (caught.value.status, caught.value.code) == (0, "UNREACHABLE")
        assert "cannot reach the emulator's control API" in caught.value.message
        with pytest.raises(ControlUnreachable):
            async for _ in client.events():
                pass


def test_credentials_in_the_url_are_refused_and_never_shown() -> None:
    with pytest.raises(ConfigurationError) as caught:
        ControlClient("http://u:secretpw@127.0.0.1:1/control/v1")
    assert "must not hold credentials" in str(caught.value)
    assert "secretpw" not in str(caught.value)
    assert "secretpw" not in repr(caught.value)
    for bad in ("ftp://127.0.0.1/control/v1", "127.0.0.1:8765", "http://[::1"):
        with pytest.raises(ConfigurationError, match="http:// or https:// URL"):
            ControlClient(bad)


async def test_no_message_shows_a_urls_credentials() -> None:
    """Whatever httpx says of a failure, a URL's user and password are cut out of it."""

    class Leaky(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("via http://proxyuser:secretpw@proxy.test:3128/ refused")

    async with ControlClient(BASE, transport=Leaky()) as client:
        assert repr(client) == f"ControlClient({BASE!r})"
        with pytest.raises(ControlUnreachable) as caught:
            await client.info()
    assert "secretpw" not in caught.value.message
    assert "http://proxy.test:3128/" in caught.value.message


async def test_the_emulators_root_means_its_control_api(make_emu: EmuFactory) -> None:
    emu = make_emu()
    service = httpx.ASGITransport(build_service_app(emu))
    for root in ("http://callr.test", "http://callr.test/"):
        async with ControlClient(root, transport=service) as client:
            assert client.base_url == BASE
            assert (await client.info()).control_url == BASE + "/"
    async with ControlClient("http://callr.test/control", transport=service) as client:
        assert client.base_url == "http://callr.test/control"  # another path: as given
        with pytest.raises(ControlUnreachable) as elsewhere:
            await client.calls()
    assert elsewhere.value.message == (
        "no control API at http://callr.test/control/calls "
        "(the emulator serves it at http://callr.test/control/v1)"
    )


async def not_the_api(request: Request) -> Response:
    if request.url.path.endswith("/calls"):
        return PlainTextResponse("<html>bad gateway</html>", status_code=502)
    if request.url.path.endswith("/apps"):
        return PlainTextResponse("ok", status_code=200)
    return PlainTextResponse("Not Found", status_code=404)


async def test_another_server_is_not_the_control_api() -> None:
    other = Starlette(routes=[Route("/{path:path}", not_the_api, methods=["GET", "POST"])])
    async with ControlClient(BASE, transport=httpx.ASGITransport(other)) as client:
        with pytest.raises(ControlUnreachable) as missing:
            await client.info()
        assert (missing.value.status, missing.value.code) == (404, "NOT_CONTROL_API")
        assert missing.value.message.startswith("no control API at")
        with pytest.raises(ControlUnreachable) as html:
            await client.calls()
        assert (html.value.status, html.value.code) == (502, "NOT_CONTROL_API")
        assert "answered 502, not JSON" in html.value.message
        with pytest.raises(ControlUnreachable, match="answered 200, not JSON"):
            await client.apps()


# ---------------------------------------------------------------- the event stream


async def test_a_calls_event_stream_over_http_is_live_and_ends_with_the_call(
    make_emu: EmuFactory,
) -> None:
    app = menu()
    emu = make_emu(app, speed=1)  # real time: the call waits for the key
    server = LocalServer(build_service_app(emu))
    await server.start()
    try:
        async with ControlClient(server.url + CONTROL_PATH) as client:
            await stream_one_call_then_all(emu, client, app)
    finally:
        await server.stop()


async def stream_one_call_then_all(emu: Emulator, client: ControlClient, app: ScriptedApp) -> None:
    await client.create_app(app.url)
    placed = await client.place_inbound("live")
    seen: list[ControlEvent] = []
    async with asyncio.timeout(WAIT):
        async for event in client.events(placed.callid):
            seen.append(event)
            if event.type == "command.started" and event.data["command"] == "read":
                await client.press(placed.callid, "1")  # while the stream is open
    types = [e.type for e in seen]
    assert types[0] == "call.started"
    assert types[-1] == "call.ended"
    assert {e.callid for e in seen} == {placed.callid}
    assert [e.seq for e in seen] == sorted(e.seq for e in seen)
    assert [e.to_json() for e in seen] == [e.to_json() for e in emu.bus.events(placed.callid)]
    assert seen[-1].data["ended_by"] == "app"

    # the stream of every call, from a given event on, ends when the emulator closes
    since = seen[2].seq
    later: list[ControlEvent] = []
    second_ended = asyncio.Event()

    async def read_all() -> None:
        async with aclosing(client.events(since=since)) as events:
            async for event in events:
                later.append(event)
                if event.type == "call.ended" and event.callid != placed.callid:
                    second_ended.set()

    reader = asyncio.create_task(read_all())
    await client.place_inbound(Callee(answer_delay=0, actions=[Press("1")]))
    async with asyncio.timeout(WAIT):
        await second_ended.wait()
        await emu.aclose()
        await reader
    assert later[0].seq == since + 1
    assert [e.seq for e in later] == [e.seq for e in emu.bus.history if e.seq > since]


async def test_sse_parsing_skips_comments_and_joins_data_lines() -> None:
    event = {"seq": 7, "type": "post", "callid": 3, "at": 1.5, "data": {"a": 1}}
    text = json.dumps(event, indent=1)  # several data lines for one event
    lines = ["retry: 1000", "", ": keep-alive", "", "id: 7"]
    lines += [f"data: {line}" for line in text.splitlines()] + [""]
    lines += ['data: {"seq": 8']  # cut off before its blank line: dropped

    async def feed() -> AsyncIterator[str]:
        for line in lines:
            yield line

    got = [e async for e in _parse_sse(feed())]
    assert got == [ControlEvent(7, "post", 3, 1.5, {"a": 1})]
    with pytest.raises(ValueError, match="unknown event type"):
        ControlEvent.from_json({**event, "type": "nonsense"})


# ---------------------------------------------------------------- Transcript.from_json


async def test_transcripts_round_trip_through_json(make_emu: EmuFactory) -> None:
    """Every kind of event a real call records comes back equal, through JSON text."""
    replies: list[Any] = [
        cmd("read", "ask", {"n": 1, "nested": [1, {"x": None}]}, media_id=tts("Say 1"),
            max_digits=1, attempts=1, timeout_ms=3000),
        cmd("record", "rec", media_id=tts("After the beep"), max_duration=10, silence=2),
        {"command": "play", "command_id": 3, "params": {"media_id": "nope"}, "variables": {}},
    ]  # fmt: skip
    app = ScriptedApp(*replies)
    emu = make_emu(app, phonebook={"+33600000001": Callee(answer_delay=0, hangup_after=1)})
    app_hash = emu.create_app(app.url).hash
    inbound = await emu.place_call(
        app_hash, Callee(actions=[Press("1"), Speak(3), HangUp(1)]), cli_number="BLOCKED"
    )
    waiting = ScriptedApp(cmd("wait", "w", **{WAIT_KEY: 1}), Response(b"not json", 200))
    emu2 = make_emu(waiting)
    outbound_hash = emu2.realtime(
        emu2.create_app(waiting.url, login="l", password="p").hash,
        {"number": "+33600000002", "timeout": 20},
        {"cli": "+33100000000", "cdr_field": "x"},
    )
    outbound = await emu2.wait_request(outbound_hash)
    broadcast = await emu.wait_request(
        emu.broadcast({"number": "+33600000001", "timeout": 20}, [tts("Hello")])
    )
    kinds = {e.kind for t in (inbound, outbound) for e in t.events}
    assert kinds == {"request", "reply", "callee", "platform", "error"}
    assert any(e.ignored for e in inbound.events)
    assert any(e.kind == "reply" and e.data is None for e in outbound.events)  # not JSON

    for t in (inbound, outbound, broadcast):
        wire = json.loads(json.dumps(t.to_json()))
        back = Transcript.from_json(wire)
        assert back == t
        assert back.events is not t.events
        assert back.to_json() == t.to_json()  # derived keys and text included
        assert back.render() == t.render()
        assert back.listeners == []
    changed = json.loads(json.dumps(inbound.to_json()))
    changed["events"][1]["data"] = {"other": True}
    assert Transcript.from_json(changed) != inbound
    assert Event.from_json(inbound.events[0].to_json()) == inbound.events[0]
