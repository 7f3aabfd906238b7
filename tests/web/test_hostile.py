"""Property-based fuzzing of the request decoder through the real ASGI app (§4 B13).

Whatever the bytes, the callback route answers one of ``ALLOWED`` (never 500),
refusals are fixed messages that echo nothing, and a handler runs only for a
body that ``RTRequest.model_validate_json`` accepts on its own. Example counts are
moderate so the suite stays fast; set ``RTCONTROL_FUZZ_EXAMPLES`` for a long run.
"""

from __future__ import annotations

import json
import logging
import math
import os
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rtcontrol.protocol import CALLID_MAX

from .conftest import (
    ALLOWED,
    LOGIN,
    PASSWORD,
    Counter,
    LoopClient,
    assert_refusal,
    basic,
    counting_app,
    is_valid,
    rt_request,
)

EXAMPLES = int(os.environ.get("RTCONTROL_FUZZ_EXAMPLES", "150"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MARK = "QQ-fuzz-marker-8421"
MARK_NUMBER = 731_555_000_913

FIELDS = list(rt_request())
STATUSES = ["INCOMING_CALL", "UP", "HANGUP", "BUSY", "NOANSWER", "CONGESTION", "REJECTED"]

# ---------------------------------------------------------------- strategies

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, CALLID_MAX, CALLID_MAX + 1, 2**63, MARK_NUMBER]),
    st.floats(allow_nan=True, allow_infinity=True),
)
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["", MARK, "+33612345678", "1:main:start", "0", "é☎🎉", "\x00"]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=8,
)
keys = st.one_of(st.sampled_from(FIELDS), texts)


def field_value(name: str) -> st.SearchStrategy[Any]:
    """Mostly plausible values for one field, with hostile ones mixed in."""
    plausible: dict[str, st.SearchStrategy[Any]] = {
        "callid": st.integers(min_value=0, max_value=CALLID_MAX),
        "call_status": st.sampled_from(STATUSES),
        "command_id": st.one_of(st.integers(min_value=0, max_value=5), st.just("1:main:start")),
        "variables": st.dictionaries(texts, json_values, max_size=3),
        "request_hash": st.one_of(st.none(), texts),
    }
    return st.one_of(plausible.get(name, texts), json_values)


@st.composite
def near_valid(draw: st.DrawFn) -> dict[str, Any]:
    """A valid RT.Request with a few fields replaced, removed or added."""
    body = rt_request(callid=draw(st.integers(min_value=0, max_value=CALLID_MAX)))
    for _ in range(draw(st.integers(min_value=0, max_value=3))):
        name = draw(keys)
        action = draw(st.sampled_from(["set", "set", "delete"]))
        if action == "delete":
            body.pop(name, None)
        else:
            body[name] = draw(field_value(name) if name in FIELDS else json_values)
    return body


def dumps(value: Any) -> bytes:
    """JSON with NaN/Infinity literals allowed, in UTF-8 (lone surrogates escaped)."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mutated_bytes(draw: st.DrawFn) -> bytes:
    """Valid request bytes with a few bytes inserted, deleted or flipped."""
    data = bytearray(dumps(draw(near_valid())))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        if not data:
            break
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        action = draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = draw(st.one_of(st.integers(0, 255), st.sampled_from(list(b'{}[]",:\\0eE.-'))))
        if action == "insert":
            data.insert(at, byte)
        elif action == "delete":
            del data[at]
        else:
            data[at] = byte
    return bytes(data)


# ---------------------------------------------------------------- the property


def _contains_marker(body: bytes) -> list[str]:
    text = body.decode("utf-8", errors="replace")
    return [m for m in (MARK, str(MARK_NUMBER)) if m in text]


def check(client: LoopClient, counter: Counter, body: bytes) -> None:
    before = counter.total
    response = client.post(body)
    assert response.status_code in ALLOWED, (response.status_code, response.text)
    valid = is_valid(body)
    if valid:
        assert response.status_code == 200, (body, response.text)
        assert response.headers["content-type"] == "application/json"
        json.loads(response.content.decode("utf-8"))
    else:
        assert_refusal(response, (400, 422), markers=_contains_marker(body))
        assert counter.total == before, "a handler ran on an invalid request"


def _no_internal_errors(caplog: pytest.LogCaptureFixture) -> None:
    """The web layer's safety net (fallback on an internal error) never fired."""
    internal = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert not internal, internal[0].getMessage()
    assert "Recursion" not in caplog.text


@pytest.fixture
def fuzz_target(caplog: pytest.LogCaptureFixture) -> tuple[LoopClient, Counter]:
    caplog.set_level(logging.WARNING)
    counter = Counter()
    return LoopClient(counting_app(counter).asgi()), counter


def test_arbitrary_bytes(
    fuzz_target: tuple[LoopClient, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    client, counter = fuzz_target

    @FUZZ
    @given(st.binary(max_size=600))
    @example(b"")
    @example(b"\xef\xbb\xbf{}")
    @example(b'{"callid": 1, "call_status": "UP"}')
    def run(body: bytes) -> None:
        check(client, counter, body)

    with client:
        run()
    _no_internal_errors(caplog)


def test_arbitrary_json_values(
    fuzz_target: tuple[LoopClient, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    client, counter = fuzz_target

    @FUZZ
    @given(st.one_of(json_values, st.dictionaries(keys, json_values, max_size=8)))
    def run(value: Any) -> None:
        check(client, counter, dumps(value))

    with client:
        run()
    _no_internal_errors(caplog)


def test_near_valid_requests(
    fuzz_target: tuple[LoopClient, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    client, counter = fuzz_target
    valid_seen: list[bool] = []

    @FUZZ
    @given(near_valid())
    @example(rt_request(callid=float("nan")))
    @example(rt_request(variables={"x": [float("inf")]}))
    @example(rt_request(callid=CALLID_MAX + 1))
    @example(rt_request(callid=CALLID_MAX))
    @example(rt_request(variables={"_rtc": {"replay": ["play", "1:main:start", MARK, ""]}}))
    @example(rt_request(variables={"_rtc": {"replay": [None, None, None, None], "n": 10**30}}))
    @example(rt_request(variables={"_rtc": MARK}))
    @example(rt_request(command_id="1:main:start", command="play", call_status="UP"))
    @example(rt_request(command_id="999:nope:x", command="play", call_status="UP"))
    @example(rt_request(command_id=MARK, command="play", call_status="HANGUP"))
    def run(body: dict[str, Any]) -> None:
        data = dumps(body)
        valid_seen.append(is_valid(data))
        check(client, counter, data)

    with client:
        run()
    _no_internal_errors(caplog)
    # the strategy reaches both sides of the decoder
    assert any(valid_seen)
    assert not all(valid_seen)


def test_mutated_request_bytes(
    fuzz_target: tuple[LoopClient, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    client, counter = fuzz_target

    @FUZZ
    @given(mutated_bytes())
    def run(body: bytes) -> None:
        check(client, counter, body)

    with client:
        run()
    _no_internal_errors(caplog)


def test_arbitrary_headers(
    fuzz_target: tuple[LoopClient, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    """Random Authorization, Content-Type and Content-Length values: no 500, and a
    handler runs only with the right credentials and a JSON content type."""
    client, counter = fuzz_target
    header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
    authorization = st.one_of(
        header_text,
        st.sampled_from(
            [basic(LOGIN, PASSWORD), basic(LOGIN, PASSWORD, "basic"), basic(LOGIN, "x"), "Bearer x"]
        ),
        st.builds(
            lambda user, password: basic(user, password),
            st.binary(max_size=20),
            st.binary(max_size=20),
        ),
    )
    content_type = st.one_of(
        header_text,
        st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"]),
    )
    body = json.dumps(rt_request()).encode()
    content_length = st.one_of(
        st.just(str(len(body))),
        st.integers(min_value=0, max_value=2**70).map(str),
        header_text,
    )

    @FUZZ
    @given(authorization, content_type, content_length)
    def run(auth: str, ctype: str, length: str) -> None:
        before = counter.total
        response = client.post(
            body, {"Authorization": auth, "Content-Type": ctype, "Content-Length": length}
        )
        assert response.status_code in ALLOWED, (response.status_code, response.text)
        if response.status_code != 200:
            assert_refusal(response, ALLOWED - {200}, markers=[auth[6:]] if len(auth) > 12 else [])
            assert counter.total == before
        else:
            assert auth.split(" ", 1)[-1].strip() == basic(LOGIN, PASSWORD).split(" ", 1)[1]

    with client:
        run()
    _no_internal_errors(caplog)


def test_any_float_in_any_field(
    fuzz_target: tuple[LoopClient, Counter], caplog: pytest.LogCaptureFixture
) -> None:
    """Floats go everywhere: non-finite ones are 4xx, finite ones are 4xx or accepted."""
    client, counter = fuzz_target

    @settings(FUZZ, max_examples=max(EXAMPLES // 2, 1))
    @given(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(FIELDS))
    def run(value: float, field: str) -> None:
        before = counter.total
        check(client, counter, dumps(rt_request(**{field: value})))
        if not math.isfinite(value):
            assert counter.total == before

    with client:
        run()
    _no_internal_errors(caplog)
