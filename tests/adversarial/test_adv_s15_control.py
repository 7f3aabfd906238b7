"""S15, kind 5: the emulator's control API under malformed or hostile input.

Every refusal is a 4xx ``{"error": {"code", "message"}}`` with a short message that does
not echo the input; never a 500; no call is lost (every call placed is still listed
and can be read). ``ControlClient`` keeps the API's status and code, and never calls a
refusal "unreachable".

The API is served in-process (``httpx.ASGITransport`` with ``raise_app_exceptions=False``,
so a crash shows as the 500 a real server would send).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rtcontrol.emulator import (
    CONTROL_PATH,
    Callee,
    ControlClient,
    Emulator,
    EmulatorSettings,
    ScaledClock,
)
from rtcontrol.emulator.control import build_control_app
from rtcontrol.errors import ControlError, ControlUnreachable
from tests.emulator.emu_helpers import ScriptedApp, cmd, tts

BASE = "http://callr.test" + CONTROL_PATH
#: A message longer than this is not "short".
SHORT = 200


def menu() -> ScriptedApp:
    read = cmd(
        "read", "ask", {"step": 1}, media_id=tts("Press 1."), max_digits=1, attempts=1,
        timeout_ms=30_000,
    )  # fmt: skip
    return ScriptedApp(read, cmd("hangup", "bye"))


class Api:
    def __init__(self, emu: Emulator, http: httpx.AsyncClient) -> None:
        self.emu = emu
        self.http = http

    async def send(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return await asyncio.wait_for(self.http.request(method, path, **kw), 10.0)

    async def live_call(self) -> int:
        r = await self.send("POST", "/calls", json={"callee": "live"})
        assert r.status_code == 201, r.text
        callid = int(r.json()["callid"])
        await self.emu.call(callid).wait_command("read")
        return callid


@pytest.fixture
async def api() -> AsyncIterator[Api]:
    app = menu()
    emu = Emulator(
        EmulatorSettings(), clock=ScaledClock(1.0), transport=httpx.ASGITransport(app.asgi)
    )
    emu.create_app(app.url)
    transport = httpx.ASGITransport(build_control_app(emu), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://callr.test") as http:
        yield Api(emu, http)
    await emu.aclose()


def refused(response: httpx.Response, *statuses: int, echo: str | None = None) -> dict[str, Any]:
    """A 4xx with one JSON error object and a short message (not echoing ``echo``)."""
    assert response.status_code != 500, f"500 for hostile input: {response.text[:200]}"
    assert 400 <= response.status_code < 500, response.status_code
    if statuses:
        assert response.status_code in statuses, (response.status_code, response.text[:200])
    data = response.json()
    error = data["error"]
    assert isinstance(error["code"], str)
    assert error["code"]
    message = error["message"]
    assert isinstance(message, str)
    assert len(message) <= SHORT, f"long message ({len(message)} chars): {message[:120]}..."
    if echo is not None:
        assert echo not in message, f"the message echoes the input: {message[:120]}"
    return dict(error)


async def no_call_lost(api: Api, callids: list[int]) -> None:
    listed = await api.send("GET", "/calls")
    assert listed.status_code == 200, listed.text[:200]
    ids = [c["callid"] for c in listed.json()]
    for callid in callids:
        assert callid in ids
        one = await api.send("GET", f"/calls/{callid}")
        assert one.status_code == 200, one.text[:200]


# ------------------------------------------------------------------ call ids in paths


@pytest.mark.parametrize("text", ["²", "¹²³", "1²", "①"])
@pytest.mark.parametrize("route", ["", "/transcript", "/events"])
async def test_a_call_id_of_unicode_digits_is_404_not_500(api: Api, text: str, route: str) -> None:
    """``str.isdigit()`` is True for superscripts; ``int()`` refuses them."""
    r = await api.send("GET", f"/calls/{text}{route}")
    refused(r, 404, 400)


@pytest.mark.parametrize("action", ["dtmf", "speech", "hangup", "answer", "decline"])
async def test_acting_on_a_unicode_digit_call_id_is_refused(api: Api, action: str) -> None:
    r = await api.send("POST", f"/calls/²/{action}", json={})
    refused(r, 404, 400)


@pytest.mark.parametrize("route", ["", "/transcript", "/hangup"])
async def test_a_call_id_of_thousands_of_digits_is_refused_without_echo(
    api: Api, route: str
) -> None:
    text = "9" * 5000
    method = "POST" if route == "/hangup" else "GET"
    r = await api.send(method, f"/calls/{text}{route}")
    refused(r, 404, 400, echo=text)


async def test_an_unknown_call_id_is_not_echoed_back(api: Api) -> None:
    text = "1234567890" * 20
    r = await api.send("GET", f"/calls/{text}")
    refused(r, 404, echo=text)


# ------------------------------------------------------------------ event streams


@pytest.mark.parametrize(
    "query",
    ["since=²", "since=" + "9" * 5000, "callid=²", "callid=" + "9" * 5000],
)
async def test_a_bad_since_or_callid_on_the_event_stream_is_400(api: Api, query: str) -> None:
    r = await api.send("GET", f"/events?{query}")
    refused(r, 400)


async def test_a_bad_last_event_id_header_is_400(api: Api) -> None:
    r = await api.send("GET", "/events", headers={"Last-Event-ID": "²".encode("latin-1")})
    refused(r, 400)


async def test_a_bad_since_on_a_calls_stream_is_400(api: Api) -> None:
    callid = await api.live_call()
    r = await api.send("GET", f"/calls/{callid}/events?since=²")
    refused(r, 400)
    await api.send("POST", f"/calls/{callid}/hangup")


# ------------------------------------------------------------------ bodies


@pytest.mark.parametrize(("depth", "status"), [(10_000, 400), (100_000, 413)])
async def test_deeply_nested_json_is_refused(api: Api, depth: int, status: int) -> None:
    """Nested too deep for the decoder: 400; past the body limit first: 413."""
    r = await api.send("POST", "/calls", content=b'{"a":' * depth + b"1" + b"}" * depth)
    refused(r, status)


@pytest.mark.parametrize("token", ["Infinity", "-Infinity", "NaN"])
async def test_non_json_numbers_in_a_callee_are_refused_and_the_phonebook_stays_usable(
    api: Api, token: str
) -> None:
    """``Infinity`` and ``NaN`` are not JSON. A callee that carries one must be refused
    (400), not stored and then fail every later read of the phonebook with a 500."""
    raw = f'{{"callee": {{"answer_delay": {token}}}}}'
    r = await api.send("PUT", "/phonebook/+33600000001", content=raw.encode())
    refused(r, 400)
    book = await api.send("GET", "/phonebook")
    assert book.status_code == 200, book.text[:200]
    dropped = await api.send("DELETE", "/phonebook/+33600000002")
    assert dropped.status_code == 200, dropped.text[:200]


@pytest.mark.parametrize("field", ["answer_delay", "hangup_after", "hangup_delay"])
async def test_an_infinite_delay_in_an_inbound_callee_is_refused(api: Api, field: str) -> None:
    raw = f'{{"callee": {{"{field}": Infinity}}}}'
    r = await api.send("POST", "/calls", content=raw.encode())
    refused(r, 400)


async def test_an_infinite_delay_in_a_keypress_is_refused(api: Api) -> None:
    raw = b'{"callee": {"actions": [{"press": "1", "after": Infinity}]}}'
    r = await api.send("POST", "/calls", content=raw)
    refused(r, 400)


async def test_a_huge_body_is_refused(api: Api) -> None:
    name = "x" * (16 * 1024 * 1024)
    r = await api.send("POST", "/calls", content=json.dumps({"cli_name": name}).encode())
    refused(r, 400, 413, echo="x" * 100)


async def test_bad_digits_are_refused_without_echoing_them(api: Api) -> None:
    callid = await api.live_call()
    hostile = "1" * 5000 + "<script>alert(1)</script>"
    r = await api.send("POST", f"/calls/{callid}/dtmf", json={"digits": hostile})
    refused(r, 400, echo="<script>")
    await no_call_lost(api, [callid])
    await api.send("POST", f"/calls/{callid}/hangup")


@pytest.mark.parametrize("raw", [b"[1]", b"null", b'"x"', b"1e999", b"\xff\xfe", b"{"])
async def test_bodies_that_are_not_objects_are_400(api: Api, raw: bytes) -> None:
    r = await api.send("POST", "/calls", content=raw)
    refused(r, 400)


@pytest.mark.parametrize(
    "payload",
    [
        {"seconds": -1},
        {"seconds": 1e308},
        {"seconds": "five"},
        {"seconds": None},
        {"seconds": [1]},
        {},
    ],
)
async def test_bad_speech_is_400_and_the_call_goes_on(api: Api, payload: Any) -> None:
    callid = await api.live_call()
    r = await api.send("POST", f"/calls/{callid}/speech", json=payload)
    refused(r, 400)
    ok = await api.send("POST", f"/calls/{callid}/dtmf", json={"digits": "1"})
    assert ok.status_code == 200, ok.text[:200]
    await no_call_lost(api, [callid])


async def test_nan_speech_is_400(api: Api) -> None:
    callid = await api.live_call()
    r = await api.send("POST", f"/calls/{callid}/speech", content=b'{"seconds": NaN}')
    refused(r, 400)
    await api.send("POST", f"/calls/{callid}/hangup")


# ------------------------------------------------------------------ calls' states


async def test_hanging_up_twice_and_acting_on_an_ended_call(api: Api) -> None:
    callid = await api.live_call()
    first = await api.send("POST", f"/calls/{callid}/hangup")
    assert first.status_code == 200
    assert first.json() == {"done": True}
    await asyncio.wait_for(api.emu.wait_call(callid), 10.0)
    second = await api.send("POST", f"/calls/{callid}/hangup")
    assert second.status_code == 200
    assert second.json() == {"done": False}
    refused(await api.send("POST", f"/calls/{callid}/dtmf", json={"digits": "1"}), 409)
    refused(await api.send("POST", f"/calls/{callid}/speech", json={"seconds": 1}), 409)
    refused(await api.send("POST", f"/calls/{callid}/answer"), 409)
    refused(await api.send("POST", f"/calls/{callid}/decline", json={"as": "busy"}), 409)
    await no_call_lost(api, [callid])


async def test_keys_on_a_scripted_call_are_409_and_it_goes_on(api: Api) -> None:
    r = await api.send("POST", "/calls", json={"callee": {"actions": [{"press": "1", "after": 5}]}})
    assert r.status_code == 201
    callid = r.json()["callid"]
    refused(await api.send("POST", f"/calls/{callid}/dtmf", json={"digits": "1"}), 409)
    refused(await api.send("POST", f"/calls/{callid}/speech", json={"seconds": 1}), 409)
    t = await asyncio.wait_for(api.emu.wait_call(callid), 30.0)
    assert t.executed == ["read", "hangup"]
    await no_call_lost(api, [callid])


async def test_keys_on_a_ringing_call_are_409_and_it_still_rings(api: Api) -> None:
    book = await api.send("PUT", "/phonebook/+33600000009", json={"callee": "live"})
    assert book.status_code == 200
    r = await api.send("POST", "/calls/outbound", json={"to": "+33600000009", "timeout": 60})
    assert r.status_code == 201, r.text
    callid = r.json()["callid"]
    refused(await api.send("POST", f"/calls/{callid}/dtmf", json={"digits": "1"}), 409)
    refused(await api.send("POST", f"/calls/{callid}/speech", json={"seconds": 1}), 409)
    refused(await api.send("GET", f"/calls/{callid}/transcript"), 409)
    refused(await api.send("POST", f"/calls/{callid}/decline", json={"as": "nope"}), 400)
    info = await api.send("GET", f"/calls/{callid}")
    assert info.json()["state"] == "ringing"
    declined = await api.send("POST", f"/calls/{callid}/decline", json={"as": "busy"})
    assert declined.json() == {"done": True}
    await no_call_lost(api, [callid])


@pytest.mark.parametrize("ring", [-5, 0, 10**30, 1.5, "thirty", True, None])
async def test_bad_ring_timeouts_are_400(api: Api, ring: Any) -> None:
    r = await api.send("POST", "/calls/outbound", json={"to": "+33600000001", "timeout": ring})
    refused(r, 400)


@pytest.mark.parametrize(
    "number", ["0612345678", "+33 6 12", "+٣٣٦١٢٣٤٥٦٧٨", "+3361234567812345678", "<b>+33</b>"]
)
async def test_bad_phone_numbers_are_400_without_echo(api: Api, number: str) -> None:
    r = await api.send("POST", "/calls", json={"from": number})
    refused(r, 400, echo=number)
    r = await api.send("POST", "/calls/outbound", json={"to": number})
    refused(r, 400, echo=number)


# ------------------------------------------------------------------ the client


@pytest.fixture
async def client(api: Api) -> AsyncIterator[ControlClient]:
    transport = httpx.ASGITransport(
        build_control_app(api.emu), root_path=CONTROL_PATH, raise_app_exceptions=False
    )
    async with ControlClient(BASE, transport=transport) as control:
        yield control


@pytest.mark.parametrize("number", ["+33/600000001", "a/b", "../apps", "+33600000001/x"])
async def test_a_number_with_a_slash_is_a_refusal_not_unreachable(
    client: ControlClient, number: str
) -> None:
    """``set_phone`` documents a 400 for a number that is not E.164. The API is there:
    the client must refuse the number (ValueError) or report the API's refusal
    (ControlError 4xx), never say it cannot reach the API."""
    for call in (lambda: client.set_phone(number, Callee()), lambda: client.drop_phone(number)):
        with pytest.raises((ControlError, ValueError)) as caught:
            await call()
        assert not isinstance(caught.value, ControlUnreachable), repr(caught.value)
        if isinstance(caught.value, ControlError):
            assert 400 <= caught.value.status < 500


async def test_the_client_gets_refusals_with_their_status_for_hostile_ids(
    client: ControlClient,
) -> None:
    with pytest.raises(ControlError) as caught:
        await client.call(9 * 10**50)
    assert not isinstance(caught.value, ControlUnreachable)
    assert caught.value.status == 404
    with pytest.raises(ControlError) as negative:
        await client.transcript(-1)
    assert not isinstance(negative.value, ControlUnreachable)
    assert negative.value.status in (400, 404)
    with pytest.raises(ControlError) as since:
        async for _ in client.events(since=-1):
            pass
    assert not isinstance(since.value, ControlUnreachable)
    assert since.value.status == 400
