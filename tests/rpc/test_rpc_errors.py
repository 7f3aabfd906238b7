"""Every way a call can fail maps to one exception of the tree, and none leaks a secret."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from rpc_fake import (
    API_KEY,
    LOGIN,
    PASSWORD,
    FakeAPI,
    Step,
    envelope,
    raw,
    result,
    rpc_error,
    status,
)

from rtcontrol.errors import (
    ApiError,
    AuthenticationError,
    HTTPStatusError,
    InvalidResponse,
    JSONRPCError,
    OutcomeUnknown,
    TransportError,
)
from rtcontrol.rpc import CallrClient

Call = Callable[[CallrClient], Awaitable[Any]]


async def test_connect_refused_is_a_transport_error(api: FakeAPI) -> None:
    refused = httpx.ConnectError("[Errno 111] Connection refused")
    api.then(refused)
    async with api.client(retries=0) as client:
        with pytest.raises(TransportError) as info:
            await client.realtime("4346423A", "+33612345678")
    assert not isinstance(info.value, OutcomeUnknown)
    assert info.value.__cause__ is refused
    assert info.value.method == "calls.realtime"
    assert "not sent" in str(info.value)


async def test_connect_timeout_is_a_transport_error(api: FakeAPI) -> None:
    api.then(httpx.ConnectTimeout("timed out"))
    async with api.client(retries=0) as client:
        with pytest.raises(TransportError) as info:
            await client.realtime_break(1)
    assert type(info.value) is TransportError
    assert isinstance(info.value.__cause__, httpx.ConnectTimeout)


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("timed out"),
        httpx.WriteTimeout("timed out"),
        httpx.ReadError("[Errno 104] Connection reset by peer"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
    ],
    ids=["read-timeout", "write-timeout", "reset", "disconnect"],
)
async def test_failure_after_sending_realtime_is_outcome_unknown(
    api: FakeAPI, client: CallrClient, failure: Exception
) -> None:
    api.then(failure)
    with pytest.raises(OutcomeUnknown) as info:
        await client.realtime("4346423A", "+33612345678")
    exc = info.value
    assert len(api.requests) == 1
    assert exc.__cause__ is failure
    assert exc.method == "calls.realtime"
    assert exc.request == api.bodies[0]
    assert "outcome unknown" in str(exc)
    assert "not retried" in str(exc)
    assert f"request id {api.bodies[0]['id']}" in str(exc)


@pytest.mark.parametrize("code", [401, 403])
async def test_refused_credentials(api: FakeAPI, client: CallrClient, code: int) -> None:
    api.then(status(code, b'{"error": "unauthorized"}'))
    with pytest.raises(AuthenticationError) as info:
        await client.get_timestamp()
    assert info.value.status_code == code
    assert len(api.requests) == 1  # never retried, even for an idempotent method


async def test_500_on_an_idempotent_method_is_http_status_error(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(status(500))
    with pytest.raises(HTTPStatusError) as info:
        await client.get_status("8242D945")
    assert type(info.value) is HTTPStatusError
    assert info.value.status_code == 500
    assert len(api.requests) == 1


@pytest.mark.parametrize("code", [500, 502, 503, 504])
async def test_5xx_on_a_non_idempotent_method_is_outcome_unknown(
    api: FakeAPI, client: CallrClient, code: int
) -> None:
    api.then(status(code))
    with pytest.raises(OutcomeUnknown) as info:
        await client.broadcast("+33612345678", [131])
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert info.value.__cause__.status_code == code
    assert f"HTTP {code}" in str(info.value)
    assert len(api.requests) == 1


async def test_4xx_on_a_non_idempotent_method_is_a_plain_status_error(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(status(404))
    with pytest.raises(HTTPStatusError) as info:
        await client.realtime("4346423A", "+33612345678")
    assert type(info.value) is HTTPStatusError
    assert info.value.status_code == 404


async def test_redirect_is_not_followed(api: FakeAPI, client: CallrClient) -> None:
    api.then(lambda body: httpx.Response(301, headers={"Location": "https://elsewhere.test/"}))
    with pytest.raises(HTTPStatusError) as info:
        await client.get_timestamp()
    assert info.value.status_code == 301
    assert len(api.requests) == 1


@pytest.mark.parametrize(
    "call",
    [lambda c: c.realtime("4346423A", "+33612345678"), lambda c: c.hangup(7)],
    ids=["non-idempotent", "idempotent"],
)
async def test_json_rpc_error_carries_code_message_data(
    api: FakeAPI, client: CallrClient, call: Call
) -> None:
    api.then(rpc_error(151, "PROPERTY_VALUE_ERROR [app]", {"field": "app"}))
    with pytest.raises(JSONRPCError) as info:
        await call(client)
    exc = info.value
    assert (exc.code, exc.rpc_message, exc.data) == (
        151,
        "PROPERTY_VALUE_ERROR [app]",
        {"field": "app"},
    )
    assert "PROPERTY_VALUE_ERROR [app]" in str(exc)
    assert len(api.requests) == 1  # never retried


async def test_json_rpc_error_without_data(api: FakeAPI, client: CallrClient) -> None:
    api.then(rpc_error(-32601, "Method not found"))
    with pytest.raises(JSONRPCError) as info:
        await client.call("nope.nope", [], idempotent=True)
    assert info.value.code == -32601
    assert info.value.data is None


async def test_json_rpc_error_with_null_id_is_still_the_servers_error(
    api: FakeAPI, client: CallrClient
) -> None:
    parse_error = (
        b'{"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}}'
    )
    api.then(raw(parse_error))
    with pytest.raises(JSONRPCError) as info:
        await client.get_timestamp()
    assert info.value.code == -32700


def _with_id(value: Any) -> Step:
    return lambda body: httpx.Response(
        200, json={"jsonrpc": "2.0", "id": value(body["id"]), "result": 1}
    )


INVALID: list[tuple[str, Step]] = [
    ("html", raw(b"<html><body>502 Bad Gateway</body></html>")),
    ("empty", raw(b"")),
    ("latin1", raw(b"\xff\xfe{")),
    ("array", raw(b"[]")),
    ("string", raw(b'"ok"')),
    ("nan", raw(b'{"jsonrpc": "2.0", "id": 1, "result": NaN}')),
    ("no-jsonrpc", lambda body: httpx.Response(200, json={"id": body["id"], "result": 1})),
    ("jsonrpc-1", envelope(jsonrpc="1.0", result=1)),
    ("missing-result", envelope()),
    ("result-and-error", envelope(result=1, error={"code": 1, "message": "x"})),
    ("missing-id", lambda body: httpx.Response(200, json={"jsonrpc": "2.0", "result": 1})),
    ("null-id", _with_id(lambda i: None)),
    ("wrong-id", _with_id(lambda i: i + 1)),
    ("string-id", _with_id(str)),
    ("float-id", _with_id(float)),
    ("error-wrong-id", envelope(id=-5, error={"code": 1, "message": "x"})),
    ("error-no-code", envelope(error={"message": "x"})),
    ("error-str-code", envelope(error={"code": "151", "message": "x"})),
    ("error-no-message", envelope(error={"code": 151})),
    ("error-not-object", envelope(error="PROPERTY_VALUE_ERROR")),
]


@pytest.mark.parametrize("step", [s for _, s in INVALID], ids=[n for n, _ in INVALID])
async def test_invalid_answers_raise_invalid_response(
    api: FakeAPI, client: CallrClient, step: Step
) -> None:
    api.then(step)
    with pytest.raises(InvalidResponse) as info:
        await client.get_timestamp()
    assert info.value.method == "system.get_timestamp"
    assert len(api.requests) == 1  # a garbled answer is not retried


async def test_bool_id_never_matches_integer_id(api: FakeAPI, client: CallrClient) -> None:
    # The first request of a fresh client has id 1, and True == 1 in Python.
    api.then(_with_id(lambda i: True))
    with pytest.raises(InvalidResponse, match="does not match"):
        await client.get_timestamp()
    assert api.bodies[0]["id"] == 1


@pytest.mark.parametrize(
    ("call", "answer"),
    [
        (lambda c: c.realtime("4346423A", "+33612345678"), 42),
        (lambda c: c.hangup(1), "true"),
        (lambda c: c.realtime_break(1), None),
        (lambda c: c.get_timestamp(), True),
        (lambda c: c.get_status("X"), 3),
        (lambda c: c.list_apps(), {"hash": "X"}),
        (lambda c: c.list_apps(), ["4346423A"]),
        (lambda c: c.create_app("IVR", None), {"name": "no hash"}),
        (lambda c: c.edit_app("4346423A", name="x"), "4346423A"),
    ],
)
async def test_result_of_the_wrong_type_is_invalid(
    api: FakeAPI, client: CallrClient, call: Call, answer: Any
) -> None:
    api.then(result(answer))
    with pytest.raises(InvalidResponse):
        await call(client)


# ----------------------------------------------------------------- no secret leaks

FAILURES: list[tuple[str, Step, Call]] = [
    ("refused", httpx.ConnectError("refused"), lambda c: c.get_timestamp()),
    ("read-timeout", httpx.ReadTimeout("slow"), lambda c: c.realtime("A", "+33612345678")),
    ("401", status(401), lambda c: c.get_timestamp()),
    ("500", status(500), lambda c: c.realtime("A", "+33612345678")),
    ("rpc-error", rpc_error(150, "FORBIDDEN"), lambda c: c.hangup(1)),
    ("garbage", raw(b"garbage"), lambda c: c.get_timestamp()),
    ("wrong-id", envelope(id=0, result=1), lambda c: c.get_timestamp()),
    (
        "create-timeout",
        httpx.ReadTimeout("slow"),
        lambda c: c.create_app("IVR", "https://x.example/cb", login="hook", password=PASSWORD),
    ),
    (
        "app-wrong-id",
        envelope(id=0, result={"hash": "X", "p": {"password": PASSWORD}}),
        lambda c: c.edit_app("X", password=PASSWORD),
    ),
]
SECRETS = [API_KEY, PASSWORD, base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()]


def _everything_said(exc: BaseException) -> str:
    parts = [str(exc), repr(exc), repr(vars(exc))]
    cause = exc.__cause__
    while cause is not None:
        parts += [str(cause), repr(cause)]
        request = getattr(cause, "_request", None)
        if request is not None:
            parts.append(repr(request.headers))
        cause = cause.__cause__
    return "\n".join(parts)


@pytest.mark.parametrize("auth", ["api-key", "basic"])
@pytest.mark.parametrize(("step", "call"), [f[1:] for f in FAILURES], ids=[f[0] for f in FAILURES])
async def test_errors_never_contain_credentials(
    api: FakeAPI, auth: str, step: Step, call: Call
) -> None:
    creds = (
        {"api_key": API_KEY}
        if auth == "api-key"
        else {"api_key": None, "login": LOGIN, "password": PASSWORD}
    )
    api.then(step)
    async with api.client(retries=0, **creds) as client:
        with pytest.raises(ApiError) as info:
            await call(client)
        said = _everything_said(info.value) + repr(client)
    for secret in SECRETS:
        assert secret not in said


async def test_outcome_unknown_hides_the_webhook_password(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown) as info:
        await client.create_app("IVR", "https://x.example/cb", login="hook", password=PASSWORD)
    sent = api.bodies[0]
    assert sent["params"][2]["password"] == PASSWORD  # the server did get it
    kept = info.value.request
    assert kept["params"][2] == {
        "url": "https://x.example/cb",
        "login": "hook",
        "password": "***",
        "data_format": "JSON",
    }
    assert kept["id"] == sent["id"]
