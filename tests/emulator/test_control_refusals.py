"""What the control API says when it refuses: a machine ``code`` and a sentence for people.

The ``message`` names the field at fault and what it must be, in the control API's own
words (``to``, ``from``, ``url``...), never the CALLR token it comes from, and never
what was sent (but a well-formed app hash). Unknown routes and methods answer the same
JSON error shape. In-process: ``build_service_app`` over ``httpx.ASGITransport``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd

from rtcontrol.emulator import Emulator
from rtcontrol.emulator.control import build_service_app

ROOT = "http://callr.test"
API = ROOT + "/control/v1"


@pytest.fixture
async def api(make_emu: EmuFactory) -> AsyncIterator[tuple[Emulator, httpx.AsyncClient]]:
    app = ScriptedApp(cmd("hangup", "bye"))
    emu = make_emu(app, app_types=("REALTIME10", "CLICKTOCALL10"))
    emu.create_app(app.url)
    transport = httpx.ASGITransport(build_service_app(emu))
    async with httpx.AsyncClient(transport=transport, base_url=API) as client:
        yield emu, client


async def refusal(
    client: httpx.AsyncClient, method: str, path: str, body: Any = None, *, status: int = 400
) -> tuple[str, str]:
    """``(code, message)`` of a refused request, checking the error's shape."""
    response = await client.request(method, API + path, json=body)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"code", "message"}
    assert "[" not in error["message"]  # no "PROPERTY_VALUE_ERROR [target]" token
    return error["code"], error["message"]


async def test_an_unknown_app_is_named_only_when_it_is_a_hash(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    _, client = api
    assert await refusal(client, "POST", "/calls", {"app": "NOPE1234"}) == (
        "PROPERTY_VALUE_ERROR",
        "app: no REALTIME10 app with hash NOPE1234",
    )
    code, message = await refusal(client, "POST", "/calls", {"app": "<b>hi</b>"})
    assert (code, message) == (
        "PROPERTY_VALUE_ERROR",
        "app: not an app hash (8 capital letters and digits)",
    )
    outbound = {"app": "NOPE1234", "to": "+33612345678"}
    assert (await refusal(client, "POST", "/calls/outbound", outbound))[1] == (
        "app: no REALTIME10 app with hash NOPE1234"
    )


async def test_apps_that_cannot_take_calls_say_why(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    emu, client = api
    no_url = emu.create_app("").hash
    assert await refusal(client, "POST", "/calls", {"app": no_url}) == (
        "PROPERTY_VALUE_ERROR",
        f"app: app {no_url} has no callback URL",
    )
    other = emu.create_app("http://app.test/x", app_type="CLICKTOCALL10").hash
    assert await refusal(client, "POST", "/calls", {"app": other}) == (
        "BAD_APP_TYPE",
        f"app: {other} is a CLICKTOCALL10 app, not REALTIME10",
    )


@pytest.mark.parametrize(
    ("path", "body", "code", "message"),
    [
        ("/calls", {"to": "0612345678"}, "PROPERTY_VALUE_ERROR", "to: not an E.164 number"),
        ("/calls", {"from": "0612345678"}, "PROPERTY_VALUE_ERROR", "from: not an E.164 number"),
        ("/calls/outbound", {"to": "0612345678"}, "PROPERTY_VALUE_ERROR", "to: not an E.164"),
        (
            "/calls/outbound",
            {"to": "+33612345678", "timeout": 4},
            "PROPERTY_VALUE_ERROR",
            "timeout: must be whole seconds, 5 to 300",
        ),
        (
            "/calls/outbound",
            {"to": "+33612345678", "cli": "0612345678"},
            "PROPERTY_VALUE_ERROR",
            'cli: must be "BLOCKED" or an E.164 number',
        ),
        (
            "/calls/outbound",
            {"to": "+33612345678", "cdr_field": "no spaces"},
            "PROPERTY_VALUE_ERROR",
            "cdr_field: must be up to 32 letters and digits",
        ),
        ("/apps", {"url": "ftp://x"}, "PROPERTY_VALUE_ERROR", "url: must be an http://"),
        ("/apps", {"url": "http://a.test/", "name": " "}, "PROPERTY_VALUE_ERROR", "name: must"),
    ],
)
async def test_bad_values_are_named_in_the_apis_words(
    api: tuple[Emulator, httpx.AsyncClient],
    path: str,
    body: dict[str, Any],
    code: str,
    message: str,
) -> None:
    _, client = api
    got_code, got_message = await refusal(client, "POST", path, body)
    assert got_code == code
    assert got_message.startswith(message)
    assert "0612345678" not in got_message  # what was sent is not echoed
    if "E.164" in message:
        rule = "(+ then 2 to 15 digits, no leading 0: +33123456789)"
        assert got_message.endswith((rule, f'{rule} nor "BLOCKED"'))


async def test_a_body_that_is_not_an_object_says_what_it_must_be(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    _, client = api
    code, message = await refusal(client, "PUT", "/phonebook/+33600000001", "live")
    assert code == "INVALID_PARAM"
    assert message == (
        'the body must be a JSON object: {"callee": "live"} or {"callee": {a callee script}}'
    )
    assert "valid dictionary" not in message
    assert (await refusal(client, "POST", "/calls/1/dtmf", ["1"], status=404))[0] == (
        "NO_SUCH_CALL"
    )
    code, message = await refusal(client, "POST", "/apps", [])
    assert message.startswith("the body must be a JSON object: {")
    assert '"url"' in message


async def test_a_misnamed_field_is_named_with_the_fields_the_body_takes(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    _, client = api
    body = {"number": "+33612345678", "timeout": 30}  # calls.realtime's name, not ours
    assert await refusal(client, "POST", "/calls/outbound", body) == (
        "INVALID_PARAM",
        "'number' is not a field of this body: it takes app, to, timeout, cli, cdr_field",
    )
    odd = {"to": "+33612345678", "<script>": 1}
    assert (await refusal(client, "POST", "/calls/outbound", odd))[1].startswith(
        "a key is not a field of this body"
    )
    assert await refusal(client, "POST", "/calls/outbound", {}) == (
        "INVALID_PARAM",
        'to: required ({"to", "app"?, "timeout"?, "cli"?, "cdr_field"?})',
    )
    assert (await refusal(client, "POST", "/calls/1/speech", {"seconds": -1}, status=404))[0]


async def test_bad_types_say_what_the_field_must_be(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    _, client = api
    assert (await refusal(client, "POST", "/calls", {"callee": "busy"}))[1] == (
        'callee: must be "live" or a callee script (a JSON object)'
    )
    assert (await refusal(client, "POST", "/calls/outbound", {"to": 33612345678}))[1] == (
        "to: must be an E.164 number (+33123456789)"
    )


async def test_unknown_routes_and_methods_answer_the_json_error_shape(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    _, client = api
    code, message = await refusal(client, "GET", "/nope", status=404)
    assert code == "NOT_FOUND"
    assert message == "no such route in the control API (see GET /control/v1/)"
    assert (await refusal(client, "GET", "/calls/1/nope", status=404))[0] == "NOT_FOUND"
    code, message = await refusal(client, "DELETE", "/calls", status=405)
    assert code == "METHOD_NOT_ALLOWED"
    assert message == "this route takes GET, POST"


async def test_a_call_id_that_is_not_a_number_is_not_echoed(
    api: tuple[Emulator, httpx.AsyncClient],
) -> None:
    _, client = api
    assert await refusal(client, "GET", "/calls/abc<x>", status=404) == (
        "NO_SUCH_CALL",
        "no such call: a call id is a number",
    )
    assert await refusal(client, "GET", "/calls/999", status=404) == ("NO_SUCH_CALL", "no call 999")
