"""What each method puts on the wire: envelope, positional params, headers, auth."""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from rpc_fake import API_KEY, API_URL, APP, LOGIN, PASSWORD, FakeAPI, result

from rtcontrol.errors import CommandError, ConfigurationError
from rtcontrol.media import Target, tts
from rtcontrol.rpc import AppInfo, BroadcastOptions, CallrClient, RealtimeOptions

OTHER_APP = {**APP, "hash": "9999ZZZZ", "package": {"name": "CLICKTOCALL10"}, "p": None}

Call = Callable[[CallrClient], Awaitable[Any]]

CASES: list[tuple[str, Call, str, list[Any], Any, Any]] = [
    (
        "realtime",
        lambda c: c.realtime(
            "4346423A",
            Target(number="+447890123456", timeout=45),
            RealtimeOptions(cdr_field="000CUSTOM42", cli="+33123456789"),
        ),
        "calls.realtime",
        [
            "4346423A",
            {"number": "+447890123456", "timeout": 45},
            {"cdr_field": "000CUSTOM42", "cli": "+33123456789"},
        ],
        "4260XMAQ",
        "4260XMAQ",
    ),
    (
        "realtime-defaults",
        lambda c: c.realtime("4346423A", "+447890123456"),
        "calls.realtime",
        ["4346423A", {"number": "+447890123456", "timeout": 30}, None],
        "4260XMAQ",
        "4260XMAQ",
    ),
    (
        "realtime_break",
        lambda c: c.realtime_break(421889),
        "calls.realtime_break",
        [421889, {}],
        True,
        True,
    ),
    ("hangup", lambda c: c.hangup(421889), "calls.hangup", [421889, {}], True, True),
    (
        "broadcast",
        lambda c: c.broadcast(
            "+33123456789",
            [131, tts("Hello world", "TTS_EN-GB_DANIEL")],
            BroadcastOptions(cdr_field="userData", loop=2),
        ),
        "calls.broadcast_1",
        [
            {"number": "+33123456789", "timeout": 30},
            [131, "TTS|TTS_EN-GB_DANIEL|Hello world"],
            {"cdr_field": "userData", "cli": "BLOCKED", "loop": 2},
        ],
        "8242D945",
        "8242D945",
    ),
    (
        "get_status",
        lambda c: c.get_status("8242D945"),
        "calls.get_status_1",
        ["8242D945"],
        "ANSWER",
        "ANSWER",
    ),
    (
        "create_app",
        lambda c: c.create_app("IVR", "https://ivr.example.com/cb", login="u", password="p"),
        "apps.create",
        [
            "REALTIME10",
            "IVR",
            {
                "url": "https://ivr.example.com/cb",
                "login": "u",
                "password": "p",
                "data_format": "JSON",
            },
        ],
        APP,
        AppInfo.model_validate(APP),
    ),
    (
        "create_app-no-params",
        lambda c: c.create_app("IVR", None),
        "apps.create",
        ["REALTIME10", "IVR", None],
        {**APP, "p": None},
        AppInfo(
            hash="4346423A",
            name="IVR",
            type="REALTIME10",
            date_creation=APP["date_creation"],
            date_update=APP["date_update"],
        ),
    ),
    (
        "edit_app-url",
        lambda c: c.edit_app("4346423A", url="https://new.example.com/cb"),
        "apps.edit",
        ["4346423A", None, {"url": "https://new.example.com/cb", "data_format": "JSON"}],
        APP,
        AppInfo.model_validate(APP),
    ),
    (
        "edit_app-name",
        lambda c: c.edit_app("4346423A", name="Renamed"),
        "apps.edit",
        ["4346423A", "Renamed", None],
        APP,
        AppInfo.model_validate(APP),
    ),
    (
        "list_apps",
        lambda c: c.list_apps(),
        "apps.get_list",
        [True],
        [APP, OTHER_APP],
        [AppInfo.model_validate(APP)],
    ),
    (
        "get_timestamp",
        lambda c: c.get_timestamp(),
        "system.get_timestamp",
        [],
        1_700_000_000,
        1_700_000_000,
    ),
]


@pytest.mark.parametrize(
    ("call", "method", "params", "answer", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_each_method_sends_exact_json_and_headers(
    api: FakeAPI,
    client: CallrClient,
    call: Call,
    method: str,
    params: list[Any],
    answer: Any,
    expected: Any,
) -> None:
    api.then(result(answer))
    assert await call(client) == expected
    [request] = api.requests
    assert request.method == "POST"
    assert str(request.url) == API_URL
    body = json.loads(request.content)
    assert body == {"jsonrpc": "2.0", "id": body["id"], "method": method, "params": params}
    assert type(body["id"]) is int
    headers = request.headers
    assert headers["Content-Type"] == "application/json-rpc; charset=utf-8"
    assert headers["Accept"] == "*/*"
    assert headers["Authorization"] == f"Api-Key {API_KEY}"
    assert headers["User-Agent"].startswith("rtcontrol/")
    assert " python/3." in headers["User-Agent"]


async def test_ids_are_fresh_integers_per_request(api: FakeAPI, client: CallrClient) -> None:
    for _ in range(3):
        await client.get_timestamp()
    ids = [body["id"] for body in api.bodies]
    assert len(set(ids)) == 3
    assert all(type(i) is int for i in ids)


async def test_basic_auth_header(api: FakeAPI) -> None:
    async with api.client(api_key=None, login=LOGIN, password=PASSWORD) as client:
        await client.get_timestamp()
    token = base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
    assert api.requests[0].headers["Authorization"] == f"Basic {token}"


async def test_largest_callid_is_sent_exactly(api: FakeAPI, client: CallrClient) -> None:
    top = 2**64 - 1
    assert await client.hangup(top) is True
    assert await client.realtime_break(top) is True
    for request in api.requests:
        assert b"[18446744073709551615," in request.content
        assert json.loads(request.content)["params"][0] == top


@pytest.mark.parametrize("callid", [-1, 2**64, True, 1.0, "421889", None])
async def test_out_of_range_callid_is_refused_before_sending(
    api: FakeAPI, client: CallrClient, callid: Any
) -> None:
    with pytest.raises(CommandError) as info:
        await client.hangup(callid)
    assert info.value.command == "calls.hangup"
    assert info.value.param == "callid"
    with pytest.raises(CommandError):
        await client.realtime_break(callid)
    assert api.requests == []


async def test_unicode_text_is_sent_as_utf8(api: FakeAPI, client: CallrClient) -> None:
    await client.broadcast("+33123456789", [tts("Appuyez sur étoile", "TTS_FR-FR_AUDREY")])
    assert "étoile".encode() in api.requests[0].content


async def test_generic_call_passes_params_through(api: FakeAPI, client: CallrClient) -> None:
    api.then(result({"x": 1}))
    got = await client.call("media.get_list", [0, 10], idempotent=True)
    assert got == {"x": 1}
    assert api.bodies[0]["method"] == "media.get_list"
    assert api.bodies[0]["params"] == [0, 10]


@pytest.mark.parametrize("params", [{"a": 1}, "x", None])
async def test_generic_call_refuses_named_params(
    api: FakeAPI, client: CallrClient, params: Any
) -> None:
    with pytest.raises(CommandError, match="positional"):
        await client.call("system.get_timestamp", params, idempotent=True)
    assert api.requests == []


async def test_generic_call_refuses_non_json_params(api: FakeAPI, client: CallrClient) -> None:
    with pytest.raises(CommandError) as info:
        await client.call("x.y", [float("nan"), {"password": PASSWORD}], idempotent=True)
    assert PASSWORD not in str(info.value)
    with pytest.raises(CommandError):
        await client.call("x.y", [object()], idempotent=True)
    assert api.requests == []


# ----------------------------------------------------------------- argument checks

BAD_ARGUMENTS: list[tuple[str, Call, str]] = [
    ("number", lambda c: c.realtime("4346423A", "0612345678"), "target.number"),
    ("ring", lambda c: c.realtime("4346423A", 42), "target"),
    ("app", lambda c: c.realtime("", "+33612345678"), "app"),
    ("app-space", lambda c: c.realtime(" 4346423A", "+33612345678"), "app"),
    ("app-inner-space", lambda c: c.realtime("4346 423A", "+33612345678"), "app"),
    (
        "options-kind",
        lambda c: c.realtime("4346423A", "+33612345678", BroadcastOptions()),
        "options",
    ),
    ("no-messages", lambda c: c.broadcast("+33612345678", []), "messages"),
    ("str-messages", lambda c: c.broadcast("+33612345678", "TTS|x"), "messages"),
    ("bad-media", lambda c: c.broadcast("+33612345678", [131, "hello"]), "messages[1]"),
    ("zero-media", lambda c: c.broadcast("+33612345678", [0]), "messages[0]"),
    (
        "broadcast-options",
        lambda c: c.broadcast("+33612345678", [1], RealtimeOptions()),
        "options",
    ),
    ("status-id", lambda c: c.get_status(""), "request_id"),
    ("app-url", lambda c: c.create_app("IVR", "ftp://x/cb"), "params.url"),
    ("app-url-host", lambda c: c.create_app("IVR", "https:///cb"), "params.url"),
    ("app-name", lambda c: c.create_app("  ", "https://x.example/cb"), "name"),
    ("edit-hash", lambda c: c.edit_app("", name="x"), "app"),
    ("edit-name", lambda c: c.edit_app("4346423A", name=""), "name"),
]


@pytest.mark.parametrize(
    ("call", "param"), [c[1:] for c in BAD_ARGUMENTS], ids=[c[0] for c in BAD_ARGUMENTS]
)
async def test_bad_arguments_raise_command_error_and_send_nothing(
    api: FakeAPI, client: CallrClient, call: Call, param: str
) -> None:
    with pytest.raises(CommandError) as info:
        await call(client)
    assert info.value.param == param
    assert api.requests == []


# ----------------------------------------------------------------- configuration


async def test_from_env_with_api_key(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLR_API_URL", "http://emulator.test/json-rpc/v1.1/")
    monkeypatch.setenv("CALLR_API_KEY", API_KEY)
    async with CallrClient.from_env(transport=httpx.MockTransport(api.handler)) as client:
        await client.get_timestamp()
    assert str(api.requests[0].url) == "http://emulator.test/json-rpc/v1.1/"
    assert api.requests[0].headers["Authorization"] == f"Api-Key {API_KEY}"


async def test_from_env_with_login(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLR_LOGIN", LOGIN)
    monkeypatch.setenv("CALLR_PASSWORD", PASSWORD)
    async with CallrClient.from_env(transport=httpx.MockTransport(api.handler)) as client:
        assert client.api_url == CallrClient.DEFAULT_URL
        await client.get_timestamp()
    assert api.requests[0].headers["Authorization"].startswith("Basic ")
    assert str(api.requests[0].url) == "https://api.callr.com/json-rpc/v1.1/"


async def test_from_env_overrides_replace_env_credentials(
    api: FakeAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CALLR_LOGIN", LOGIN)
    monkeypatch.setenv("CALLR_PASSWORD", PASSWORD)
    transport = httpx.MockTransport(api.handler)
    async with CallrClient.from_env(api_key="override", transport=transport) as client:
        await client.get_timestamp()
    assert api.requests[0].headers["Authorization"] == "Api-Key override"


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({}, "CALLR_API_KEY, or CALLR_LOGIN and CALLR_PASSWORD"),
        ({"CALLR_LOGIN": LOGIN}, "CALLR_PASSWORD is missing"),
        ({"CALLR_PASSWORD": PASSWORD}, "CALLR_LOGIN is missing"),
        ({"CALLR_API_KEY": "", "CALLR_LOGIN": ""}, "CALLR_API_KEY, or CALLR_LOGIN"),
        ({"CALLR_API_KEY": API_KEY, "CALLR_LOGIN": LOGIN}, "not both"),
    ],
)
def test_from_env_without_usable_credentials(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needle: str
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=needle) as info:
        CallrClient.from_env()
    assert PASSWORD not in str(info.value)
    assert API_KEY not in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({}, "no credentials"),
        ({"login": LOGIN}, "no credentials"),
        ({"api_key": API_KEY, "login": LOGIN, "password": PASSWORD}, "not both"),
        ({"api_key": API_KEY, "api_url": "ftp://api.test/"}, "api_url"),
        ({"api_key": API_KEY, "api_url": "https://u:p@api.test/"}, "must not hold credentials"),
        ({"login": "a:b", "password": PASSWORD}, "':'"),
        ({"api_key": API_KEY, "timeout": 0}, "timeout"),
        ({"api_key": API_KEY, "timeout": float("inf")}, "timeout"),
        ({"api_key": API_KEY, "retries": -1}, "retries"),
        ({"api_key": API_KEY, "retries": True}, "retries"),
        ({"api_key": API_KEY, "backoff": -0.1}, "backoff"),
    ],
)
def test_bad_configuration(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigurationError, match=needle):
        CallrClient(**kwargs)


async def test_per_call_timeout_must_be_positive(api: FakeAPI, client: CallrClient) -> None:
    with pytest.raises(ConfigurationError, match="timeout"):
        await client.get_timestamp(timeout=0)
    assert api.requests == []
