"""The emulator's control API over real HTTP on loopback: calls, live callees, the SSE stream.

Each test serves ``build_service_app(emulator)`` with uvicorn on a free port (SSE needs a real
server), the app under test in-process. Every wait is on an event of the stream, never
a sleep; live calls run at real speed with long timeouts, ended by the test's input.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from emu_helpers import SPEED, ScriptedApp, cmd, tts

from rtcontrol.commands import WAIT_KEY
from rtcontrol.emulator import Emulator, EmulatorSettings, LocalServer, ScaledClock
from rtcontrol.emulator.bus import EVENT_TYPES, EventBus
from rtcontrol.emulator.control import build_service_app
from rtcontrol.emulator.feed import reply_role, spoken
from rtcontrol.emulator.scripts import callee_from_json, callee_to_json, load_script

Event = dict[str, Any]
WAIT = 30.0  # seconds an event may take on a busy machine

PROMPT = "Press 1 for sales."
#: 40 s of prompt at real speed: a key sent as soon as the read starts lands in it.
LONG_PROMPT = "Press 1 for sales. " * 30


class Stream:
    """An SSE stream read in the background; ``wait`` for an event matching a test."""

    def __init__(self, client: httpx.AsyncClient, path: str) -> None:
        self.events: list[Event] = []
        self.closed = False
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._read(client, path))

    async def _read(self, client: httpx.AsyncClient, path: str) -> None:
        try:
            async with client.stream("GET", path, timeout=None) as response:
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/event-stream")
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        self.events.append(json.loads(line[6:]))
                        self._changed.set()
        finally:
            self.closed = True
            self._changed.set()

    async def wait(self, match: Callable[[Event], bool], what: str = "event") -> Event:
        async with asyncio.timeout(WAIT):
            while True:
                for event in self.events:
                    if match(event):
                        return event
                if self.closed:
                    raise AssertionError(f"stream closed before {what}: {self.types()}")
                self._changed.clear()
                await self._changed.wait()

    async def until_closed(self) -> list[Event]:
        async with asyncio.timeout(WAIT):
            await self._task
        return self.events

    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    async def close(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


def of(type_: str, **data: Any) -> Callable[[Event], bool]:
    return lambda e: e["type"] == type_ and all(e["data"].get(k) == v for k, v in data.items())


class Service:
    def __init__(self, emu: Emulator, client: httpx.AsyncClient, app: ScriptedApp) -> None:
        self.emu = emu
        self.client = client
        self.app = app
        self.streams: list[Stream] = []

    def stream(self, path: str) -> Stream:
        stream = Stream(self.client, path)
        self.streams.append(stream)
        return stream

    async def post(self, path: str, body: Any = None, status: int = 200) -> Any:
        response = await self.client.post(path, json=body)
        assert response.status_code == status, response.text
        return response.json()


ServiceFactory = Callable[..., Any]


@pytest.fixture
async def service() -> AsyncIterator[ServiceFactory]:
    made: list[tuple[Emulator, LocalServer, httpx.AsyncClient, Service]] = []

    async def factory(app: ScriptedApp, *, speed: float = SPEED, **settings: Any) -> Service:
        emu = Emulator(
            EmulatorSettings(**settings),
            clock=ScaledClock(speed),
            transport=httpx.ASGITransport(app.asgi),
        )
        emu.create_app(app.url)
        server = LocalServer(build_service_app(emu))
        await server.start()
        client = httpx.AsyncClient(base_url=server.url + "/control/v1", trust_env=False)
        found = Service(emu, client, app)
        made.append((emu, server, client, found))
        return found

    yield factory
    for emu, server, client, found in made:
        for stream in found.streams:
            await stream.close()
        await client.aclose()
        await emu.aclose()
        await server.stop()


def menu_app(**read: Any) -> ScriptedApp:
    params = {"media_id": tts(PROMPT), "max_digits": 1, "attempts": 1, "timeout_ms": 30_000}
    return ScriptedApp(cmd("read", "ask", {"step": 1}, **{**params, **read}), cmd("hangup", "bye"))


# ---------------------------------------------------------------- scripted calls


async def test_inbound_scripted_call_streams_every_step_in_order(service: ServiceFactory) -> None:
    svc = await service(menu_app())
    call = await svc.post(
        "/calls",
        {"from": "+33612345678", "to": "+33123456789", "callee": {"actions": [{"press": "1"}]}},
        201,
    )
    assert call["direction"] == "inbound"
    assert (call["from"], call["to"]) == ("+33612345678", "+33123456789")
    events = await svc.stream(f"/calls/{call['callid']}/events").until_closed()

    types = [e["type"] for e in events]
    assert types[0] == "call.started"
    assert types[-1] == "call.ended"
    assert {e["callid"] for e in events} == {call["callid"]}
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    posts = [e["data"] for e in events if e["type"] == "post"]
    assert [p["call_status"] for p in posts] == ["INCOMING_CALL", "UP", "HANGUP"]
    assert posts[1]["command"] == "read"
    assert posts[1]["result"] == "1"
    assert posts[1]["variables"] == {"step": 1}

    replies = [e["data"] for e in events if e["type"] == "reply"]
    first = replies[0]
    assert first["status"] == 200
    assert first["command"] == "read"
    assert first["role"] == "command"
    assert first["deadline_ms"] == 5000
    assert 0 < first["latency_ms"] < 5000
    assert first["margin_ms"] == pytest.approx(5000 - first["latency_ms"], abs=0.2)
    assert replies[-1]["ignored"] is True  # the reply to the HANGUP POST

    started = [e["data"] for e in events if e["type"] == "command.started"]
    assert [s["command"] for s in started] == ["read", "hangup"]
    assert started[0]["params"]["max_digits"] == 1
    assert started[0]["say"] == [{"text": PROMPT, "lang": "en-GB"}]
    ended = [e["data"] for e in events if e["type"] == "command.ended"]
    assert [(x["command"], x["result"]) for x in ended] == [("read", "1"), ("hangup", "")]
    assert ended[-1]["hangup"] is True
    # the command ends before the POST that reports it is shown
    read_end = types.index("command.ended")
    assert types[read_end + 1] == "post"
    assert any(e["type"] == "callee" and "presses '1'" in e["data"]["text"] for e in events)
    end = events[-1]["data"]
    assert (end["ended_by"], end["hangup_count"], end["posts"]) == ("app", 1, 3)

    transcript = (await svc.client.get(f"/calls/{call['callid']}/transcript")).json()
    assert transcript["executed"] == ["read", "hangup"]
    assert transcript["hangup_count"] == 1
    assert "HANGUP" in transcript["text"]
    listed = (await svc.client.get("/calls")).json()
    assert [(c["callid"], c["state"], c["ended_by"]) for c in listed] == [
        (call["callid"], "ended", "app")
    ]


async def test_a_break_is_an_event_of_its_own(service: ServiceFactory) -> None:
    svc = await service(
        ScriptedApp(cmd("wait", "w", **{WAIT_KEY: 30}), cmd("hangup", "h")), speed=1
    )
    call = await svc.post("/calls", {"callee": {}}, 201)
    stream = svc.stream(f"/calls/{call['callid']}/events")
    await stream.wait(of("command.started", command="wait"))
    assert svc.emu.break_call(call["callid"]) is True
    await stream.wait(lambda e: e["type"] == "break")
    events = await stream.until_closed()
    brk = next(e for e in events if e["type"] == "break")
    assert brk["data"]["command"] == "wait"
    ended = next(e for e in events if e["type"] == "command.ended")
    assert ended["data"]["command"] == "wait"
    assert ended["seq"] > brk["seq"]


async def test_holds_and_fallbacks_are_named_in_replies(service: ServiceFactory) -> None:
    svc = await service(
        ScriptedApp(
            cmd("wait", "3:menu:@hold", **{WAIT_KEY: 1}),
            cmd("play", "4:menu:@bye", media_id=tts("Sorry.")),
            cmd("hangup", "5:menu:-"),
        )
    )
    call = await svc.post("/calls", {}, 201)
    events = await svc.stream(f"/calls/{call['callid']}/events").until_closed()
    roles = [e["data"]["role"] for e in events if e["type"] == "reply" and not e["data"]["ignored"]]
    assert roles == ["hold", "fallback", "command"]
    assert reply_role(0) == "command"


async def test_global_stream_replays_from_since_then_goes_live(service: ServiceFactory) -> None:
    svc = await service(menu_app())
    first = await svc.post("/calls", {"callee": {"actions": [{"press": "2"}]}}, 201)
    await svc.stream(f"/calls/{first['callid']}/events").until_closed()
    kept = svc.emu.bus.events(first["callid"])
    middle = kept[len(kept) // 2].seq
    stream = svc.stream(f"/events?since={middle}")
    await stream.wait(lambda e: e["type"] == "call.ended", "the first call's end, replayed")
    second = await svc.post("/calls", {"callee": {"actions": [{"press": "1"}]}}, 201)
    await stream.wait(lambda e: e["type"] == "call.ended" and e["callid"] == second["callid"])
    seqs = [e["seq"] for e in stream.events]
    assert seqs[0] == middle + 1
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gap, no repeat


# ---------------------------------------------------------------- live callee (softphone)


async def test_live_callee_presses_a_key_during_the_prompt(service: ServiceFactory) -> None:
    svc = await service(menu_app(media_id=tts(LONG_PROMPT)), speed=1)
    call = await svc.post("/calls", {"callee": "live"}, 201)
    assert call["live"] is True
    stream = svc.stream(f"/calls/{call['callid']}/events")
    await stream.wait(of("command.started", command="read"))
    heard = await svc.post(f"/calls/{call['callid']}/dtmf", {"digits": "1"})
    assert heard == {"heard": True, "running": "read"}
    ended = await stream.wait(of("command.ended", command="read"))
    assert ended["data"]["result"] == "1"
    events = await stream.until_closed()
    assert events[-1]["data"]["ended_by"] == "app"
    assert svc.app.requests[1]["command_result"] == "1"
    texts = [e["data"]["text"] for e in events if e["type"] == "callee"]
    assert any("presses '1'" in t and "barge-in" in t for t in texts), texts


async def test_live_callee_hangs_up_during_a_read(service: ServiceFactory) -> None:
    svc = await service(menu_app(), speed=1)
    call = await svc.post("/calls", {"callee": "live"}, 201)
    stream = svc.stream(f"/calls/{call['callid']}/events")
    await stream.wait(of("command.started", command="read"))
    assert await svc.post(f"/calls/{call['callid']}/hangup") == {"done": True}
    events = await stream.until_closed()
    end = events[-1]["data"]
    assert (end["ended_by"], end["hangup_count"]) == ("callee", 1)
    assert [r["call_status"] for r in svc.app.requests].count("HANGUP") == 1
    late = await svc.client.post(f"/calls/{call['callid']}/dtmf", json={"digits": "1"})
    assert late.status_code == 409
    assert late.json()["error"]["code"] == "ENDED"


async def test_keys_with_no_read_running_are_not_heard(service: ServiceFactory) -> None:
    svc = await service(ScriptedApp(cmd("wait", "w", **{WAIT_KEY: 30})), speed=1)
    call = await svc.post("/calls", {"callee": "live"}, 201)
    stream = svc.stream(f"/calls/{call['callid']}/events")
    await stream.wait(of("command.started", command="wait"))
    assert (await svc.post(f"/calls/{call['callid']}/dtmf", {"digits": "5"}))["heard"] is False
    await stream.wait(lambda e: e["type"] == "callee" and "nobody listens" in e["data"]["text"])


async def test_live_record_ends_after_speech_then_silence(service: ServiceFactory) -> None:
    app = ScriptedApp(cmd("record", "rec", max_duration=300, silence=1), cmd("hangup", "bye"))
    svc = await service(app, speed=1)
    call = await svc.post("/calls", {"callee": "live"}, 201)
    stream = svc.stream(f"/calls/{call['callid']}/events")
    await stream.wait(of("command.started", command="record"))
    assert (await svc.post(f"/calls/{call['callid']}/speech", {"seconds": 3}))["heard"]
    ended = await stream.wait(of("command.ended", command="record"))
    name = ended["data"]["result"]
    assert name.endswith(".wav")
    assert svc.emu.recordings[name] >= 1.0  # at least the silence that ended it


async def test_bad_live_input_is_refused(service: ServiceFactory) -> None:
    svc = await service(menu_app(), speed=1)
    call = await svc.post("/calls", {"callee": "live"}, 201)
    stream = svc.stream(f"/calls/{call['callid']}/events")
    await stream.wait(of("command.started", command="read"))
    bad = await svc.client.post(f"/calls/{call['callid']}/dtmf", json={"digits": "1a"})
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "INVALID_PARAM")
    neg = await svc.client.post(f"/calls/{call['callid']}/speech", json={"seconds": -1})
    assert neg.status_code == 400
    await svc.post(f"/calls/{call['callid']}/hangup")
    await stream.until_closed()


# ---------------------------------------------------------------- outbound to the softphone


async def _ring(svc: Service, number: str = "+33612345678") -> tuple[dict[str, Any], Stream]:
    await svc.client.put(f"/phonebook/{number}", json={"callee": "live"})
    stream = svc.stream("/events?since=0")
    call = await svc.post("/calls/outbound", {"to": number, "timeout": 60}, 201)
    assert call["state"] == "ringing"
    await stream.wait(lambda e: e["type"] == "call.ringing" and e["callid"] == call["callid"])
    return call, stream


async def test_outbound_call_rings_the_softphone_until_answered(service: ServiceFactory) -> None:
    svc = await service(menu_app(), speed=1)
    call, stream = await _ring(svc)
    assert svc.app.requests == []  # nothing reaches the app while it rings
    assert (await svc.client.get(f"/calls/{call['callid']}")).json()["state"] == "ringing"
    assert await svc.post(f"/calls/{call['callid']}/answer") == {"done": True}
    await stream.wait(of("command.started", command="read"))
    await svc.post(f"/calls/{call['callid']}/dtmf", {"digits": "1"})
    end = await stream.wait(lambda e: e["type"] == "call.ended")
    assert end["data"]["ended_by"] == "app"
    first = svc.app.requests[0]
    assert (first["call_status"], first["request_hash"]) == ("UP", call["request_hash"])
    assert first["callid"] == call["callid"]
    again = await svc.client.post(f"/calls/{call['callid']}/answer")
    assert again.status_code == 409


async def test_declined_softphone_call_reports_busy(service: ServiceFactory) -> None:
    svc = await service(menu_app(), speed=1)
    call, stream = await _ring(svc)
    await svc.post(f"/calls/{call['callid']}/decline", {"as": "busy"})
    end = await stream.wait(lambda e: e["type"] == "call.ended")
    assert end["data"]["ended_by"] == "unanswered"
    assert [r["call_status"] for r in svc.app.requests] == ["BUSY"]


async def test_unanswered_softphone_call_times_out(service: ServiceFactory) -> None:
    svc = await service(menu_app(), speed=SPEED)  # 60 s of ringing in 0.6 s
    call, stream = await _ring(svc)
    end = await stream.wait(lambda e: e["type"] == "call.ended")
    assert end["callid"] == call["callid"]
    assert [r["call_status"] for r in svc.app.requests] == ["NOANSWER"]


async def test_calls_hangup_while_the_softphone_rings_cancels(service: ServiceFactory) -> None:
    svc = await service(menu_app(), speed=1)
    call, stream = await _ring(svc)
    assert svc.emu.hangup_call(call["callid"]) is True
    end = await stream.wait(lambda e: e["type"] == "call.ended")
    assert end["data"]["ended_by"] == "cancel"
    transcript = await svc.emu.wait_request(call["request_hash"])
    assert "cancelled while ringing" in transcript.render()


# ---------------------------------------------------------------- errors and scripts


async def test_errors_are_one_json_object(service: ServiceFactory) -> None:
    svc = await service(menu_app())
    missing = await svc.client.get("/calls/999")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NO_SUCH_CALL")
    bad = await svc.client.post("/calls", content=b"{not json")
    assert (bad.status_code, bad.json()["error"]["code"]) == (400, "INVALID_JSON")
    script = await svc.client.post("/calls", json={"callee": {"actions": [{"press": "x"}]}})
    assert (script.status_code, script.json()["error"]["code"]) == (400, "INVALID_CALLEE")
    number = await svc.client.post("/calls", json={"to": "0612345678"})
    assert (number.status_code, number.json()["error"]["code"]) == (400, "PROPERTY_VALUE_ERROR")
    scripted = await svc.post("/calls", {"callee": {"actions": [{"press": "1"}]}}, 201)
    refused = await svc.client.post(f"/calls/{scripted['callid']}/dtmf", json={"digits": "1"})
    assert refused.status_code == 409
    svc.emu.create_app("http://app.test/other")
    ambiguous = await svc.client.post("/calls", json={})
    assert ambiguous.status_code == 400
    assert "app" in ambiguous.json()["error"]["message"]


async def test_info_names_the_endpoints(service: ServiceFactory) -> None:
    svc = await service(menu_app())
    info = (await svc.client.get("/")).json()
    assert info["rpc_url"].endswith("/json-rpc/v1.1/")
    assert info["control_url"].endswith("/control/v1/")
    assert [a["url"] for a in info["apps"]] == [svc.app.url]
    page = await svc.client.get(info["page_url"])
    assert page.status_code == 200
    assert "softphone" in page.text.lower()
    rpc = await svc.client.post(
        info["rpc_url"],
        json={"jsonrpc": "2.0", "id": 1, "method": "system.get_timestamp", "params": []},
        headers={"Authorization": f"Api-Key {info['api_key']}"},
    )
    assert isinstance(rpc.json()["result"], int)


def test_callee_scripts_round_trip_and_refuse_nonsense(tmp_path: Any) -> None:
    data = {
        "answer_delay": 1,
        "actions": [{"press": "1#", "after": 2}, {"silence": True}, {"speak": 4}, {"hangup": 0}],
        "when_done": "hangup",
    }
    callee = callee_from_json(data)
    assert callee_from_json(callee_to_json(callee)) == callee
    for bad in ({"actions": [{"press": "1", "speak": 2}]}, {"answer": "maybe"}, {"x": 1}):
        with pytest.raises(ValueError, match="invalid callee script"):
            callee_from_json(bad)
    yaml_file = tmp_path / "callees.yaml"
    yaml_file.write_text(
        "default:\n  actions: [{press: '2'}]\nphonebook:\n  '+33600000009': {answer: busy}\n"
    )
    default, book = load_script(yaml_file)
    assert default is not None
    assert default.actions[0].digits == "2"  # type: ignore[union-attr]
    assert book["+33600000009"].answer == "busy"
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match=r"broken\.json"):
        load_script(broken)


def test_spoken_texts_and_event_types() -> None:
    assert spoken({"media_id": "TTS|TTS_FR-FR_AUDREY|Bonjour"}) == [
        {"text": "Bonjour", "lang": "fr-FR"}
    ]
    assert spoken({"media_id": 12}) == [{"text": "[media 12]", "lang": ""}]
    assert "call.ended" in EVENT_TYPES
    bus = EventBus(history=2)
    for i in range(3):
        bus.publish("platform", 1, float(i))
    assert [e.seq for e in bus.history] == [2, 3]


async def test_closing_the_emulator_ends_every_event_stream(service: ServiceFactory) -> None:
    svc = await service(menu_app())
    stream = svc.stream("/events")
    await svc.post("/calls", {"callee": {"actions": [{"press": "1"}]}}, 201)
    await stream.wait(lambda e: e["type"] == "call.ended")
    await svc.emu.aclose()
    await stream.until_closed()  # the server ended the response: no 2 s graceful wait
    assert stream.closed
