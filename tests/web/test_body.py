"""Body size, content type, JSON and schema policy of the callback route (§4 B1-B11)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rtcontrol.protocol import CALLID_MAX, MAX_VARIABLES_DEPTH

from .conftest import (
    AUTH,
    PASSWORD,
    TTS_TEXT,
    Counter,
    assert_refusal,
    client_for,
    counting_app,
    encode,
    post,
    rt_request,
)

LIMIT = 64 * 1024
MARK = "ZQX-mark-31337"  # planted in hostile inputs; must never come back in an error
MARK_NUMBER = 987654321987


def padded(size: int, **fields: Any) -> bytes:
    """A valid request of exactly ``size`` bytes (padding in an ignored field)."""
    body = encode(rt_request(pad="", **fields))
    body = encode(rt_request(pad="x" * (size - len(body)), **fields))
    assert len(body) == size
    return body


# ------------------------------------------------------------------- size (B1)


async def test_declared_length_above_the_limit_is_413(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    body = padded(LIMIT + 1)
    response = await post(client, body)
    assert assert_refusal(response, 413) == f"body larger than {LIMIT} bytes"
    assert counter.total == 0


async def test_huge_declared_length_without_a_body_is_413(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    for declared in ["70000", str(2**64), "9" * 5000, "1" + "0" * 4400]:
        response = await post(client, b"", {"Content-Length": declared})
        assert_refusal(response, 413, markers=[declared[:40]])
    assert counter.total == 0


@pytest.mark.parametrize(
    "declared",
    ["abc", "-1", "1e3", "0x10", "+10", "1.0", "10 20", "", "\uff11\uff12"],
    ids=["letters", "negative", "exponent", "hex", "plus", "float", "two", "empty", "fullwidth"],
)
async def test_malformed_content_length_is_400(
    client: httpx.AsyncClient, counter: Counter, declared: str
) -> None:
    response = await client.post(
        "/callback",
        content=encode(rt_request()),
        headers=[
            (b"authorization", AUTH["Authorization"].encode()),
            (b"content-type", b"application/json"),
            (b"content-length", declared.encode()),
        ],
    )
    assert assert_refusal(response, 400) == "invalid Content-Length"
    assert counter.total == 0


async def test_content_length_in_superscript_digits_is_400(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    """'²'.isdigit() is True but int('²') raises: this once answered 500."""
    response = await post(client, encode(rt_request()), {"Content-Length": b"\xb2"})  # type: ignore[dict-item]
    assert_refusal(response, 400)
    assert counter.total == 0


async def test_content_length_with_many_leading_zeros_is_read_as_a_number(
    client: httpx.AsyncClient,
) -> None:
    """5,000 characters would make int() refuse (CVE-2020-10735 limit): no 500."""
    body = encode(rt_request())
    response = await post(client, body, {"Content-Length": "0" * 5000 + str(len(body))})
    assert response.status_code == 200


async def test_exactly_the_limit_is_accepted(client: httpx.AsyncClient, counter: Counter) -> None:
    response = await post(client, padded(LIMIT))
    assert response.status_code == 200
    assert counter.calls == ["inbound"]


async def _chunks(body: bytes, size: int, sent: list[int] | None = None) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        if sent is not None:
            sent.append(start)
        yield body[start : start + size]


async def test_chunked_body_within_the_limit_is_accepted(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    body = padded(LIMIT)
    response = await client.post(
        "/callback",
        content=_chunks(body, 1000),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    assert counter.calls == ["inbound"]


async def test_chunked_body_crossing_the_limit_is_413_and_reading_stops(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    sent: list[int] = []
    chunk = 1024
    total = 4 * 1024 * 1024
    stream = _chunks(b"x" * total, chunk, sent)
    request = client.build_request(
        "POST", "/callback", content=stream, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await client.send(request)
    assert_refusal(response, 413)
    # the app stopped at the limit: the 4 MiB were never pulled from the client
    assert len(sent) * chunk <= LIMIT + 2 * chunk
    assert counter.total == 0
    await stream.aclose()


async def test_chunked_body_crossing_the_limit_in_one_chunk(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/callback",
        content=_chunks(padded(LIMIT + 1), LIMIT + 1),
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert_refusal(response, 413)


async def test_the_limit_is_a_setting(counter: Counter) -> None:
    api = counting_app(counter, max_body=2048).asgi()
    async with client_for(api) as c:
        assert (await post(c, padded(2048))).status_code == 200
        assert assert_refusal(await post(c, padded(2049)), 413) == "body larger than 2048 bytes"
        response = await c.post(
            "/callback",
            content=_chunks(padded(2049), 100),
            headers={**AUTH, "Content-Type": "application/json"},
        )
        assert_refusal(response, 413)
    assert counter.total == 1


# -------------------------------------------------------------- not a request (B2)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "body is not valid JSON"),
        (b" ", 400, "body is not valid JSON"),
        (b'{"app":', 400, "body is not valid JSON"),
        (b'{"callid": 1, "call_status": "UP"', 400, "body is not valid JSON"),
        (b'{"callid": 1, "call_status": "UP"} {}', 400, "body is not valid JSON"),
        (b"{'callid': 1}", 400, "body is not valid JSON"),
        (b'{"callid": 1, "call_status": "UP",}', 400, "body is not valid JSON"),
        (b"[]", 422, "body must be a JSON object"),
        (b'[{"callid": 1, "call_status": "UP"}]', 422, "body must be a JSON object"),
        (b"null", 422, "body must be a JSON object"),
        (b'"a bare string"', 422, "body must be a JSON object"),
        (b"42", 422, "body must be a JSON object"),
        (b"true", 422, "body must be a JSON object"),
        (b"NaN", 422, "body must be a JSON object"),
        (b"{}", 422, "invalid field: callid"),
        (b'{"callid": 1}', 422, "invalid field: call_status"),
    ],
)
async def test_not_a_request(
    client: httpx.AsyncClient, counter: Counter, app: Any, body: bytes, status: int, message: str
) -> None:
    response = await post(client, body)
    assert assert_refusal(response, status) == message
    assert counter.total == 0
    assert len(app.store) == 0


# ---------------------------------------------------------------- NaN, Infinity (B3)

NON_FINITE = ["NaN", "Infinity", "-Infinity"]


@pytest.mark.parametrize("literal", NON_FINITE)
@pytest.mark.parametrize("field", ["callid", "command_id", "app", "call_status"])
async def test_non_finite_numbers_in_fields(
    client: httpx.AsyncClient, counter: Counter, literal: str, field: str
) -> None:
    """A regression test for FastAPI's default 422 handler answering 500 on NaN."""
    body = encode(rt_request(**{field: "@@"})).replace(b'"@@"', literal.encode())
    response = await post(client, body)
    assert_refusal(response, 422, markers=[literal, "nan", "inf"])
    assert counter.total == 0


@pytest.mark.parametrize("literal", [*NON_FINITE, "1e400", "-1e400"])
@pytest.mark.parametrize(
    "template",
    ['{"k": @@}', '{"k": [1, 2, @@]}', '{"a": {"b": {"c": @@}}}', '{"list": [{"x": [@@]}]}'],
)
async def test_non_finite_numbers_inside_variables(
    client: httpx.AsyncClient, counter: Counter, literal: str, template: str
) -> None:
    variables = template.replace("@@", literal)
    body = encode(rt_request(variables="@@")).replace(b'"@@"', variables.encode())
    response = await post(client, body)
    assert assert_refusal(response, 422, markers=[literal, "nan", "inf"]) == (
        "invalid field: variables"
    )
    assert counter.total == 0


async def test_non_finite_number_in_an_ignored_field_is_harmless(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    """Unknown fields are dropped: a NaN there cannot reach a handler or a reply."""
    body = encode(rt_request(future="@@")).replace(b'"@@"', b"NaN")
    response = await post(client, body)
    assert response.status_code == 200
    assert counter.total == 1


# ------------------------------------------------------------------- nesting (B4)


def nested_variables(depth: int, kind: str = "list") -> bytes:
    """``variables`` holding a value ``depth`` containers deep."""
    opening, closing = (
        ("[" * depth, "]" * depth) if kind == "list" else ('{"a":' * depth, "}" * depth)
    )
    inner = f"{opening}{closing}" if kind == "list" else f"{opening}1{closing}"
    return encode(rt_request(variables="@@")).replace(b'"@@"', f'{{"v": {inner}}}'.encode())


@pytest.mark.parametrize("kind", ["list", "dict"])
async def test_nesting_up_to_the_documented_limit_is_accepted(
    client: httpx.AsyncClient, counter: Counter, kind: str
) -> None:
    response = await post(client, nested_variables(MAX_VARIABLES_DEPTH, kind))
    assert response.status_code == 200
    assert counter.total == 1
    reply = response.json()
    depth, value = 0, reply["variables"]["v"]
    while isinstance(value, list | dict) and value:
        value = value[0] if isinstance(value, list) else value["a"]
        depth += 1
    assert depth == (MAX_VARIABLES_DEPTH - 1 if kind == "list" else MAX_VARIABLES_DEPTH)


@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("depth", [MAX_VARIABLES_DEPTH + 1, 199, 200, 201, 1000, 10_000])
async def test_deep_nesting_is_refused_quickly(
    client: httpx.AsyncClient,
    counter: Counter,
    caplog: pytest.LogCaptureFixture,
    kind: str,
    depth: int,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await post(client, nested_variables(depth, kind))
    assert_refusal(response, (400, 422))
    assert counter.total == 0
    assert "Recursion" not in caplog.text


@pytest.mark.parametrize("kind", ["list", "dict"])
async def test_100k_levels_are_refused_without_recursion_error(
    counter: Counter, caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """10**5 levels do not fit in 64 KiB: raise the limit so the parser sees them."""
    caplog.set_level(logging.DEBUG)
    api = counting_app(counter, max_body=4 * 1024 * 1024).asgi()
    body = nested_variables(10**5, kind)
    async with client_for(api) as c:
        response = await post(c, body)
        assert_refusal(response, 400)
        # the same depth outside variables, and as the whole body
        assert_refusal(await post(c, b"[" * 10**5 + b"]" * 10**5), 400)
        assert_refusal(await post(c, b'{"a":' * 10**5 + b"1" + b"}" * 10**5), 400)
    assert counter.total == 0
    assert "Recursion" not in caplog.text


async def test_deep_nesting_in_the_default_limit_is_413(client: httpx.AsyncClient) -> None:
    assert_refusal(await post(client, nested_variables(10**5)), 413)


# ------------------------------------------------------------------ encodings (B8)


@pytest.mark.parametrize(
    "body",
    [
        b'{"callid": 1, "call_status": "UP", "app": "\xff\xfe"}',
        b'{"callid": 1, "call_status": "UP", "app": "\xc3\x28"}',
        b'{"callid": 1, "call_status": "UP", "app": "\xed\xa0\x80"}',  # UTF-8 of a surrogate
        b'{"callid": 1, "call_status": "UP", "app": "\xc0\xaf"}',  # overlong
        b'{"callid": 1, "call_status": "UP", "variables": {"\xff": 1}}',
        b"\xef\xbb\xbf" + json.dumps(rt_request()).encode(),  # BOM
        json.dumps(rt_request()).encode("utf-16"),
        json.dumps(rt_request()).encode("utf-32"),
        b'{"callid": 1, "call_status": "UP", "app": "\\ud800"}',  # lone high surrogate
        b'{"callid": 1, "call_status": "UP", "app": "\\udfff"}',  # lone low surrogate
        b'{"callid": 1, "call_status": "UP", "app": "\\ud800\\u0041"}',
        b'{"callid": 1, "call_status": "UP", "variables": {"\\udc00": 1}}',
        b'{"callid": 1, "call_status": "UP", "variables": {"k": ["\\ud83c"]}}',
        b'{"callid": 1, "call_status": "UP", "app": "\\x41"}',
        b'{"callid": 1, "call_status": "UP", "app": "\x00"}',  # raw control character
    ],
    ids=[
        "ff fe",
        "bad continuation",
        "encoded surrogate",
        "overlong",
        "invalid key",
        "BOM",
        "UTF-16",
        "UTF-32",
        "lone high surrogate",
        "lone low surrogate",
        "high surrogate then letter",
        "surrogate key",
        "surrogate in a list",
        "bad escape",
        "raw NUL",
    ],
)
async def test_bad_encodings_are_400(
    client: httpx.AsyncClient, counter: Counter, body: bytes
) -> None:
    assert assert_refusal(await post(client, body), 400) == "body is not valid JSON"
    assert counter.total == 0


async def test_escaped_surrogate_pairs_and_unicode_are_accepted(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    body = rb'{"callid": 5, "call_status": "INCOMING_CALL", "cli_name": "\ud83c\udf89 \u00e9",'
    body += '"variables": {"clé": "été ☎"}}'.encode()
    response = await post(client, body)
    assert response.status_code == 200
    assert counter.requests[0].request.cli_name == "🎉 é"
    assert response.json()["variables"] == {"clé": "été ☎"}


# -------------------------------------------------------------- content type (B9)


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "text/plain",
        "text/plain; charset=utf-8",
        "application/xml",
        "application/octet-stream",
        "application/jsonx",
        "application/json-rpc",
        "json",
        "application/json; charset=latin-1",
        "application/json; charset=utf-16",
        f"application/{MARK}",
    ],
)
async def test_wrong_content_type_is_415(
    client: httpx.AsyncClient, counter: Counter, content_type: str
) -> None:
    response = await post(client, rt_request(), {"Content-Type": content_type})
    assert assert_refusal(response, 415, markers=[MARK]) == (
        "content type must be application/json"
    )
    assert counter.total == 0


async def test_form_body_is_415(client: httpx.AsyncClient, counter: Counter) -> None:
    response = await client.post("/callback", data={"callid": "1"}, headers=AUTH)
    assert_refusal(response, 415)
    assert counter.total == 0


@pytest.mark.parametrize(
    "content_type",
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json;charset=UTF-8",
        'application/json; charset="utf-8"',
        "application/json; charset=utf8",
        "Application/JSON",
        "application/json; boundary=ignored",
        "text/json",
        "application/vnd.callr.realtime+json",
        "",
    ],
)
async def test_json_content_types_are_accepted(
    client: httpx.AsyncClient, counter: Counter, content_type: str
) -> None:
    response = await post(client, rt_request(), {"Content-Type": content_type})
    assert response.status_code == 200
    assert counter.total == 1


async def test_missing_content_type_is_read_as_json(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    request = client.build_request("POST", "/callback", content=encode(rt_request()), headers=AUTH)
    assert "content-type" not in request.headers
    response = await client.send(request)
    assert response.status_code == 200
    assert counter.total == 1


# ------------------------------------------------------------------- callid (B5)


@pytest.mark.parametrize(
    "literal",
    [
        "9" * 5000,
        "1" + "0" * 4400,
        "-1",
        "-0.5",
        str(2**64),
        str(2**64 + 1),
        str(2**100),
        str(-(2**63)),
        '"421889"',
        '""',
        "1e3",
        "1E3",
        "1.0",
        "421889.0",
        "4.21889e5",
        "true",
        "false",
        "null",
        "[]",
        "[421889]",
        "{}",
        '{"value": 421889}',
    ],
)
async def test_invalid_callid_is_refused(
    client: httpx.AsyncClient, counter: Counter, literal: str
) -> None:
    body = encode(rt_request(callid="@@")).replace(b'"@@"', literal.encode())
    response = await post(client, body)
    message = assert_refusal(
        response, (400, 422), markers=[literal[:30]] if len(literal) > 3 else []
    )
    assert message in ("invalid field: callid", "body is not valid JSON")
    assert counter.total == 0


async def test_missing_callid_is_refused(client: httpx.AsyncClient, counter: Counter) -> None:
    body = rt_request()
    del body["callid"]
    assert assert_refusal(await post(client, body), 422) == "invalid field: callid"
    assert counter.total == 0


@pytest.mark.parametrize("callid", [0, 1, 421889, 2**63, CALLID_MAX])
async def test_valid_callids_round_trip(
    client: httpx.AsyncClient, counter: Counter, callid: int
) -> None:
    response = await post(client, rt_request(callid=callid))
    assert response.status_code == 200
    assert counter.requests[0].request.callid == callid
    reply = json.loads(response.content)
    assert reply["command"] == "play"
    # the next callback of that call (the play ended) is routed to the same call
    follow = rt_request(
        callid=callid,
        call_status="UP",
        command="play",
        command_id=reply["command_id"],
        variables=reply["variables"],
    )
    assert (await post(client, follow)).status_code == 200
    assert [c.request.callid for c in counter.requests] == [callid, callid]


# ---------------------------------------------------------- other wrong types


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("app", MARK_NUMBER),
        ("app", [MARK]),
        ("cli_number", {"x": MARK}),
        ("command_id", 1.5),
        ("command_id", True),
        ("command_id", None),
        ("command_id", [MARK]),
        ("call_status", MARK_NUMBER),
        ("call_status", None),
        ("request_hash", MARK_NUMBER),
        ("variables", [MARK]),
        ("variables", MARK),
        ("variables", MARK_NUMBER),
    ],
)
async def test_wrong_types_name_the_field_only(
    client: httpx.AsyncClient, counter: Counter, field: str, value: Any
) -> None:
    response = await post(client, rt_request(**{field: value}))
    message = assert_refusal(response, 422, markers=[MARK, str(MARK_NUMBER)])
    assert message == f"invalid field: {field}"
    assert counter.total == 0


async def test_error_bodies_never_echo_phone_numbers(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    """B10: the default FastAPI 422 body would echo ``input``: ours does not."""
    body = rt_request(cli_number="+33699887766", number="+33155443322", callid="+33611223344")
    response = await post(client, body)
    assert_refusal(response, 422, markers=["99887766", "55443322", "11223344", "+33"])
    assert counter.total == 0


# ------------------------------------------------------ forward compatibility (B6, B7)


async def test_unknown_fields_are_accepted_and_ignored(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    body = rt_request(
        future_field={"nested": [MARK, MARK_NUMBER]},
        another=MARK,
        signature="sha256=" + MARK,
    )
    response = await post(client, body)
    assert response.status_code == 200
    assert counter.calls == ["inbound"]
    assert MARK not in response.text
    assert str(MARK_NUMBER) not in response.text


async def test_duplicate_keys_last_wins(client: httpx.AsyncClient, counter: Counter) -> None:
    body = (
        b'{"callid": 1, "callid": 2, "call_status": "UP", "call_status": "INCOMING_CALL",'
        b' "app": "first", "app": "last", "variables": {"k": 1, "k": 2}}'
    )
    response = await post(client, body)
    assert response.status_code == 200
    call = counter.requests[0]
    assert call.request.callid == 2
    assert call.request.app == "last"
    assert response.json()["variables"] == {"k": 2}


async def test_duplicate_key_invalid_then_valid_is_accepted(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    body = b'{"callid": "x", "callid": -1, "callid": 3, "call_status": "INCOMING_CALL"}'
    assert (await post(client, body)).status_code == 200
    assert counter.requests[0].request.callid == 3


async def test_duplicate_key_valid_then_invalid_is_refused(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    body = b'{"callid": 3, "callid": NaN, "call_status": "INCOMING_CALL"}'
    assert_refusal(await post(client, body), 422)
    assert counter.total == 0


# --------------------------------------------------------------- reply format (B11)


async def test_reply_is_utf8_json_and_unicode_round_trips(
    client: httpx.AsyncClient, counter: Counter
) -> None:
    variables = {"prénom": "Zoé", "emoji": "🎉☎", "cjk": "日本語", "escaped": '"\\\n\t'}
    response = await post(client, rt_request(variables=variables))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    reply = json.loads(response.content.decode("utf-8", errors="strict"))
    assert set(reply) == {"command", "command_id", "params", "variables"}
    assert reply["command"] == "play"
    assert reply["params"]["media_id"].endswith("|" + TTS_TEXT)
    assert reply["variables"] == variables
    assert TTS_TEXT.encode() in response.content or TTS_TEXT in reply["params"]["media_id"]


async def test_ended_call_reply_is_an_empty_json_object(
    client: httpx.AsyncClient, counter: Counter, app: Any
) -> None:
    response = await post(client, rt_request(call_status="HANGUP"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {}
    await app.settle()  # on_hangup runs after the reply
    assert counter.calls == ["hangup"]


async def test_a_failing_handler_still_answers_200_with_json(counter: Counter) -> None:
    app = counting_app(counter)

    @app.step
    async def explode(call: Any) -> Any:
        raise RuntimeError(MARK)

    api = app.asgi()
    async with client_for(api) as c:
        body = rt_request(command="play", command_id="1:main:explode", call_status="UP")
        response = await post(c, body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert MARK not in response.text
    assert "command" in response.json()


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
async def test_other_methods_are_405(client: httpx.AsyncClient, method: str) -> None:
    response = await client.request(method, "/callback", headers=AUTH)
    assert response.status_code == 405


async def test_client_disconnecting_mid_body_is_not_an_error(
    api: Any, counter: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    """A platform that hangs up mid-upload gets no traceback in our logs."""
    caplog.set_level(logging.DEBUG)
    incoming = [
        {"type": "http.request", "body": b'{"callid": 1,', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/callback",
        "raw_path": b"/callback",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", AUTH["Authorization"].encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("rt.test", 80),
        "state": {},
    }
    await api(scope, receive, send)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 400
    assert counter.total == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_an_internal_error_answers_the_fallback(
    app: Any, api: Any, counter: Counter, caplog: pytest.LogCaptureFixture, monkeypatch: Any
) -> None:
    """The web layer's last safety net: a bug in the core still gets the caller a reply."""

    async def broken(request: Any, **_: Any) -> Any:
        raise RuntimeError(MARK)

    monkeypatch.setattr(app, "handle_callback", broken)  # what the adapter calls
    async with client_for(api) as c:
        response = await post(c, rt_request(callid=4242, cli_number="+33699887766"))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    reply = response.json()
    assert reply["command"] == "play"  # the default apology
    assert MARK not in response.text
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "callid=4242" in errors[0].getMessage()
    assert "99887766" not in caplog.text
    assert PASSWORD not in caplog.text
