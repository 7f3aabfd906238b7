"""The JSON-RPC server: envelope rules, authentication, methods and their errors."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, tts

from rtcontrol.emulator import (
    DEFAULT_API_KEY,
    DEFAULT_LOGIN,
    DEFAULT_PASSWORD,
    RPC_PATH,
    Callee,
    Emulator,
    RPCFault,
)

API_KEY = {"Authorization": f"Api-Key {DEFAULT_API_KEY}"}
BASIC = "Basic " + base64.b64encode(f"{DEFAULT_LOGIN}:{DEFAULT_PASSWORD}".encode()).decode()


class Rpc:
    """A bare JSON-RPC caller (no rtcontrol.rpc: that client is tested elsewhere)."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.http = httpx.AsyncClient(
            transport=httpx.ASGITransport(emu.rpc_app), base_url="http://api.test"
        )
        self._id = 100

    async def raw(self, body: bytes | str, headers: dict[str, str] | None = None) -> httpx.Response:
        return await self.http.post(RPC_PATH, content=body, headers=headers or API_KEY)

    async def call(self, method: str, *params: Any) -> dict[str, Any]:
        self._id += 1
        body = {"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
        response = await self.raw(json.dumps(body))
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/json-rpc")
        answer: dict[str, Any] = response.json()
        assert answer["id"] == self._id
        assert answer["jsonrpc"] == "2.0"
        return answer

    async def result(self, method: str, *params: Any) -> Any:
        answer = await self.call(method, *params)
        assert "error" not in answer, answer
        return answer["result"]

    async def error(self, method: str, *params: Any) -> tuple[int, str]:
        answer = await self.call(method, *params)
        assert "result" not in answer, answer
        return answer["error"]["code"], answer["error"]["message"]


@pytest.fixture
async def rpc(make_emu: EmuFactory) -> AsyncIterator[Rpc]:
    client = Rpc(make_emu())
    yield client
    await client.http.aclose()


async def test_get_timestamp_with_both_auth_schemes(rpc: Rpc) -> None:
    for headers in (API_KEY, {"Authorization": BASIC}):
        body = '{"jsonrpc": "2.0", "id": 7, "method": "system.get_timestamp", "params": []}'
        response = await rpc.raw(body, headers)
        assert response.status_code == 200
        assert isinstance(response.json()["result"], int)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Api-Key wrong"},
        {"Authorization": "Basic " + base64.b64encode(b"emulator:wrong").decode()},
        {"Authorization": "Basic !!!"},
        {"Authorization": f"Session {DEFAULT_API_KEY}"},
    ],
)
async def test_bad_auth_is_http_401(rpc: Rpc, headers: dict[str, str]) -> None:
    body = '{"jsonrpc": "2.0", "id": 7, "method": "system.get_timestamp", "params": []}'
    response = await rpc.http.post(RPC_PATH, content=body, headers=headers)
    assert response.status_code == 401


async def test_get_is_not_allowed(rpc: Rpc) -> None:
    assert (await rpc.http.get(RPC_PATH, headers=API_KEY)).status_code == 405


@pytest.mark.parametrize(
    ("body", "code", "echo_id"),
    [
        ("{not json", -32700, False),
        ('{"jsonrpc": "2.0", "id": NaN, "method": "x", "params": []}', -32700, False),
        (
            '[{"jsonrpc": "2.0", "id": 1, "method": "system.get_timestamp", "params": []}]',
            -32600,
            False,
        ),
        ('"hello"', -32600, False),
        ('{"jsonrpc": "2.0", "method": "system.get_timestamp", "params": []}', -32600, False),
        (
            '{"jsonrpc": "2.0", "id": "1", "method": "system.get_timestamp", "params": []}',
            -32600,
            False,
        ),
        (
            '{"jsonrpc": "2.0", "id": true, "method": "system.get_timestamp", "params": []}',
            -32600,
            False,
        ),
        (
            '{"jsonrpc": "1.0", "id": 1, "method": "system.get_timestamp", "params": []}',
            -32600,
            True,
        ),
        ('{"id": 1, "method": "system.get_timestamp", "params": []}', -32600, True),
        ('{"jsonrpc": "2.0", "id": 1, "method": 5, "params": []}', -32600, True),
        ('{"jsonrpc": "2.0", "id": 1, "method": "calls.nope", "params": []}', -32601, True),
    ],
)
async def test_envelope_errors(rpc: Rpc, body: str, code: int, echo_id: bool) -> None:
    response = await rpc.raw(body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["error"]["code"] == code
    assert "result" not in answer
    assert answer["id"] == (1 if echo_id else None)


@pytest.mark.parametrize(
    "body",
    [
        '{"jsonrpc": "2.0", "id": 1, "method": "system.get_timestamp", "params": {}}',
        '{"jsonrpc": "2.0", "id": 1, "method": "system.get_timestamp"}',
    ],
)
async def test_params_must_be_an_array(rpc: Rpc, body: str) -> None:
    answer = (await rpc.raw(body)).json()
    assert answer["error"] == {"code": 150, "message": "INVALID_PARAM_FORMAT [params]"}


async def test_error_codes_are_configurable(make_emu: EmuFactory) -> None:
    client = Rpc(make_emu(rpc_error_codes={"PROPERTY_VALUE_ERROR": 42, "METHOD_NOT_FOUND": -1}))
    assert await client.error("calls.hangup", 1, {}) == (42, "PROPERTY_VALUE_ERROR [callid]")
    assert (await client.error("nope"))[0] == -1
    await client.http.aclose()


async def test_apps_create_edit_list(rpc: Rpc) -> None:
    app = await rpc.result("apps.create", "REALTIME10", "My app", {"url": "http://x.test/cb"})
    assert re.fullmatch(r"[0-9A-Z]{8}", app["hash"])
    assert app["name"] == "My app"
    assert app["package"]["name"] == "REALTIME10"
    assert app["p"] == {
        "url": "http://x.test/cb",
        "login": "",
        "password": "",
        "data_format": "JSON",
    }
    assert app["did"] == []
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", app["date_creation"])

    bare = await rpc.result("apps.create", "REALTIME10", "Later", None)
    assert bare["p"]["url"] == ""
    edited = await rpc.result("apps.edit", bare["hash"], None, {"url": "https://y.test/"})
    assert (edited["name"], edited["p"]["url"]) == ("Later", "https://y.test/")
    listed = await rpc.result("apps.get_list", True)
    assert [a["hash"] for a in listed] == [app["hash"], bare["hash"]]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ((5, "n", {}), "INVALID_PARAM_FORMAT [type]"),
        (("REALTIME10", None, {}), "INVALID_PARAM_FORMAT [name]"),
        (("REALTIME10",), "INVALID_PARAM_FORMAT [name]"),
        (("REALTIME10", "n", "url"), "INVALID_PARAM_FORMAT [params]"),
        (("REALTIME10", "n", {"url": "ftp://x"}), "PROPERTY_VALUE_ERROR [params.url]"),
        (("REALTIME10", "n", {"data_format": "XML"}), "PROPERTY_VALUE_ERROR [params.data_format]"),
        (("REALTIME10", "n", {"colour": "red"}), "PROPERTY_VALUE_ERROR [params.colour]"),
        (("REALTIME10", "n", {}, 4), "INVALID_PARAM_FORMAT [params]"),
        (("NOPE10", "n", {}), "Oops, Internal Error. ¯\\_(ツ)_/¯"),
    ],
)
async def test_apps_create_errors(rpc: Rpc, params: tuple[Any, ...], message: str) -> None:
    assert (await rpc.error("apps.create", *params))[1] == message


async def test_apps_edit_unknown_app(rpc: Rpc) -> None:
    assert await rpc.error("apps.edit", "ZZZZZZZZ", "x", None) == (
        151,
        "PROPERTY_VALUE_ERROR [app]",
    )


async def test_calls_realtime_errors(make_emu: EmuFactory) -> None:
    emu = make_emu(app_types=("REALTIME10", "OTHER10"))
    rpc = Rpc(emu)
    good = emu.create_app("http://a.test/cb").hash
    other = emu.create_app("http://a.test/cb", app_type="OTHER10").hash
    target = {"number": "+33612345678", "timeout": 30}
    cases = [
        (("NOPE1234", target, None), "PROPERTY_VALUE_ERROR [app]"),
        ((42, target, None), "INVALID_PARAM_FORMAT [app]"),
        ((other, target, None), "BAD_APP_TYPE"),
        ((good, None, None), "INVALID_PARAM_FORMAT [target]"),
        ((good,), "INVALID_PARAM_FORMAT [target]"),
        ((good, {"number": "0612345678", "timeout": 30}, None), "PROPERTY_VALUE_ERROR [target]"),
        ((good, {"number": "+33612345678", "timeout": 4}, None), "PROPERTY_VALUE_ERROR [target]"),
        ((good, target, {"cli": "0612"}), "PROPERTY_VALUE_ERROR [options.cli]"),
        ((good, target, {"cdr_field": None}), "PROPERTY_VALUE_ERROR [options.cdr_field]"),
        ((good, target, {"cdr_field": "x" * 33}), "PROPERTY_VALUE_ERROR [options.cdr_field]"),
        ((good, target, {"loop": 2}), "PROPERTY_VALUE_ERROR [options.loop]"),
        ((good, target, []), "INVALID_PARAM_FORMAT [options]"),
    ]
    for params, message in cases:
        assert (await rpc.error("calls.realtime", *params))[1] == message, params
    assert emu.calls == []
    await rpc.http.aclose()


async def test_realtime_break_and_hangup_over_rpc(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("play", 1, media_id=tts("x" * 1000)), cmd("wait", 2, seconds=30))
    emu = make_emu(app, phonebook={"+33612345678": Callee(answer_delay=0.5)})
    rpc = Rpc(emu)
    app_hash = emu.create_app(app.url).hash
    request = await rpc.result(
        "calls.realtime", app_hash, {"number": "+33612345678", "timeout": 30}, None
    )
    call = emu.call_for_request(request)
    await call.wait_command("play")
    assert await rpc.error("calls.realtime_break", call.callid) == (
        150,
        "INVALID_PARAM_FORMAT [options]",
    )
    assert await rpc.error("calls.realtime_break", call.callid, None) == (
        150,
        "INVALID_PARAM_FORMAT [options]",
    )
    assert await rpc.error("calls.realtime_break", "1", {}) == (
        150,
        "INVALID_PARAM_FORMAT [callid]",
    )
    assert await rpc.result("calls.realtime_break", call.callid, {}) is True
    await call.wait_command("wait")
    assert await rpc.result("calls.hangup", call.callid, {}) is True
    t = await call.wait()
    assert t.requests[1]["command"] == "play"
    assert (t.requests[-1]["command"], t.requests[-1]["call_status"]) == ("wait", "HANGUP")
    assert await rpc.result("calls.hangup", call.callid, {}) is False
    assert await rpc.result("calls.realtime_break", call.callid, {}) is False
    assert await rpc.error("calls.hangup", 1, {}) == (151, "PROPERTY_VALUE_ERROR [callid]")
    await rpc.http.aclose()


async def test_alias_dialr_call_realtime(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    emu = make_emu(app)
    rpc = Rpc(emu)
    app_hash = emu.create_app(app.url).hash
    request = await rpc.result(
        "dialr/call.realtime", app_hash, {"number": "+33612345678", "timeout": 30}
    )
    t = await emu.wait_request(request)
    assert t.requests[0]["request_hash"] == request
    await rpc.http.aclose()


async def test_broadcast_and_status(make_emu: EmuFactory) -> None:
    book = {
        "+33612345678": Callee(answer_delay=1),
        "+33600000000": Callee("busy", answer_delay=1),
    }
    emu = make_emu(phonebook=book)
    rpc = Rpc(emu)
    target = {"number": "+33612345678", "timeout": 30}
    messages = [131, tts("Hello world")]
    request = await rpc.result("calls.broadcast_1", target, messages, {"loop": 2, "cli": "BLOCKED"})
    assert await rpc.result("calls.get_status_1", request) in ("PENDING", "DIALING")
    t = await emu.wait_request(request)
    assert await rpc.result("calls.get_status_1", request) == "ANSWER"
    assert t.ended_by == "completed"
    assert [e.text for e in t.events if e.text.startswith("plays")] == [
        f"plays {m!r}" for m in messages * 2
    ]
    assert t.requests == []  # no webhook involved

    busy = await rpc.result("calls.broadcast_1", {"number": "+33600000000", "timeout": 30}, [1])
    await emu.wait_request(busy)
    assert await rpc.result("calls.get_status_1", busy) == "BUSY"

    assert (await rpc.error("calls.broadcast_1", target, [], None))[1] == (
        "PROPERTY_VALUE_ERROR [messages]"
    )
    assert (await rpc.error("calls.broadcast_1", target, ["hi"], None))[1] == (
        "PROPERTY_VALUE_ERROR [messages]"
    )
    assert (await rpc.error("calls.broadcast_1", target, "hi", None))[1] == (
        "INVALID_PARAM_FORMAT [messages]"
    )
    assert (await rpc.error("calls.get_status_1", "NOPE1234"))[1] == (
        "PROPERTY_VALUE_ERROR [request_id]"
    )
    await rpc.http.aclose()


async def test_python_api_raises_the_same_faults(make_emu: EmuFactory) -> None:
    emu = make_emu()
    with pytest.raises(RPCFault, match=r"PROPERTY_VALUE_ERROR \[app\]"):
        emu.realtime("NOPE1234", {"number": "+33612345678", "timeout": 30})
    with pytest.raises(RPCFault, match=r"PROPERTY_VALUE_ERROR \[app\]"):
        await emu.place_call("NOPE1234")
    app_without_url = emu.create_app()
    with pytest.raises(RPCFault, match=r"PROPERTY_VALUE_ERROR \[app\]"):
        emu.start_call(app_without_url.hash)
