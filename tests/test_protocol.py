"""RT.Request / RT.Response wire models, checked against the spec (§5.2, §5.3, §6)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from rtcontrol.commands import dialout, play, read
from rtcontrol.media import tts
from rtcontrol.protocol import (
    CALLID_MAX,
    MAX_VARIABLES_DEPTH,
    CallStatus,
    RTRequest,
    RTResponse,
    check_json_value,
)

# §5.2, verbatim: first POST of an outbound call.
SPEC_FIRST_POST = """{
  "app": "4346423A",
  "callid": 421889,
  "request_hash": "4260XMAQ",
  "cli_name": "",
  "cli_number": "",
  "date_started": "2012-01-09 17:27:55",
  "number": "+447890123456",
  "command": "",
  "command_id": 0,
  "command_result": "",
  "command_error": "",
  "call_status": "UP",
  "cdr_field": "000CUSTOMFIELD42",
  "variables": {}
}"""

# §5.2, verbatim: a later POST after a read that collected "42".
SPEC_READ_POST = """{"app": "4346423A", "callid": 421889, "request_hash": "4260XMAQ",
 "cli_name": "", "cli_number": "",
 "date_started": "2012-01-09 17:27:55", "number": "+447890123456",
 "command": "read", "command_id": 1, "command_result": "42", "command_error": "",
 "call_status": "UP", "cdr_field": "000CUSTOMFIELD42", "variables": {"step": "ask_age"}}"""

FIELDS = [
    "app",
    "callid",
    "request_hash",
    "cli_name",
    "cli_number",
    "date_started",
    "number",
    "command",
    "command_id",
    "command_result",
    "command_error",
    "call_status",
    "cdr_field",
    "variables",
]
TEXT_FIELDS = [
    "app",
    "cli_name",
    "cli_number",
    "date_started",
    "number",
    "command",
    "command_result",
    "command_error",
    "cdr_field",
]


def request(**overrides: Any) -> dict[str, Any]:
    """The spec's first POST as a dict, with some fields replaced."""
    data: dict[str, Any] = json.loads(SPEC_FIRST_POST)
    data.update(overrides)
    return data


def parse(**overrides: Any) -> RTRequest:
    return RTRequest.model_validate_json(json.dumps(request(**overrides)))


def with_raw(field: str, raw: str) -> str:
    """The spec's first POST with one field's raw JSON text replaced."""
    data = request()
    del data[field]
    body = json.dumps(data)
    return body[:-1] + f', "{field}": {raw}}}'


# --- RT.Request: the spec's examples -----------------------------------------------


def test_spec_first_post_parses_all_14_fields() -> None:
    req = RTRequest.model_validate_json(SPEC_FIRST_POST)
    assert list(RTRequest.model_fields) == FIELDS
    assert req.app == "4346423A"
    assert req.callid == 421889
    assert req.request_hash == "4260XMAQ"
    assert req.cli_name == ""
    assert req.cli_number == ""
    assert req.date_started == "2012-01-09 17:27:55"
    assert req.number == "+447890123456"
    assert req.command == ""
    assert req.command_id == 0
    assert req.command_result == ""
    assert req.command_error == ""
    assert req.call_status is CallStatus.UP
    assert req.cdr_field == "000CUSTOMFIELD42"
    assert req.variables == {}
    assert req.is_first
    assert req.is_outbound


def test_spec_read_post_parses() -> None:
    req = RTRequest.model_validate_json(SPEC_READ_POST)
    assert req.command == "read"
    assert req.command_id == 1
    assert req.command_result == "42"
    assert req.command_error == ""
    assert req.variables == {"step": "ask_age"}
    assert not req.is_first


@pytest.mark.parametrize("body", [SPEC_FIRST_POST, SPEC_READ_POST])
def test_spec_examples_reserialise_identically(body: str) -> None:
    req = RTRequest.model_validate_json(body)
    assert json.loads(req.model_dump_json()) == json.loads(body)
    assert RTRequest.model_validate_json(req.model_dump_json()) == req


def test_inbound_request_hash_is_null() -> None:
    req = RTRequest.model_validate_json(with_raw("request_hash", "null"))
    assert req.request_hash is None
    assert not req.is_outbound
    assert json.loads(req.model_dump_json())["request_hash"] is None


def test_request_hash_must_be_string_or_null() -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(with_raw("request_hash", "42"))


# --- command_id --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("0", 0), ("1", 1), ("99999999999", 99999999999), ('"ask_age"', "ask_age"), ('"1"', "1")],
)
def test_command_id_keeps_its_json_type(raw: str, expected: int | str) -> None:
    req = RTRequest.model_validate_json(with_raw("command_id", raw))
    assert req.command_id == expected
    assert type(req.command_id) is type(expected)
    dumped = req.model_dump_json()
    assert f'"command_id":{raw}' in dumped
    assert json.loads(dumped)["command_id"] == expected
    assert type(json.loads(dumped)["command_id"]) is type(expected)


@pytest.mark.parametrize("raw", ["1.0", "true", "null", "[1]", "{}"])
def test_command_id_refuses_other_json_types(raw: str) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(with_raw("command_id", raw))


def test_is_first() -> None:
    assert parse(command="", command_id=0).is_first
    assert parse(command="", command_id="").is_first
    assert not parse(command="read", command_id=1).is_first
    assert not parse(command="read", command_id="ask_age").is_first
    assert not parse(command="", command_id=5).is_first
    assert not parse(command="", command_id="0").is_first  # "0" is a label, not falsy JSON


# --- callid ------------------------------------------------------------------------


@pytest.mark.parametrize("callid", [0, 1, 421889, 2**63, CALLID_MAX])
def test_callid_accepted(callid: int) -> None:
    req = RTRequest.model_validate_json(with_raw("callid", str(callid)))
    assert req.callid == callid
    assert type(req.callid) is int


def test_callid_max_round_trips_exactly() -> None:
    assert CALLID_MAX == 18446744073709551615
    req = RTRequest.model_validate_json(with_raw("callid", "18446744073709551615"))
    assert req.callid == 18446744073709551615
    dumped = req.model_dump_json()
    assert '"callid":18446744073709551615' in dumped
    assert RTRequest.model_validate_json(dumped).callid == 2**64 - 1
    assert RTRequest.model_validate_json(dumped) == req


@pytest.mark.parametrize(
    "raw",
    ["-1", "18446744073709551616", "1.0", "1e3", "421889.0", "true", "false", '"421889"', "null"],
)
def test_callid_refused(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        RTRequest.model_validate_json(with_raw("callid", raw))
    assert "callid" in str(info.value)


@pytest.mark.parametrize("callid", [-1, 2**64, 1.0, True, "421889", None])
def test_callid_refused_from_python(callid: Any) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate(request(callid=callid))


@pytest.mark.parametrize("field", ["callid", "call_status"])
def test_callid_and_call_status_are_required(field: str) -> None:
    data = request()
    del data[field]
    with pytest.raises(ValidationError) as info:
        RTRequest.model_validate_json(json.dumps(data))
    assert field in str(info.value)


# --- string fields -----------------------------------------------------------------


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_string_field_null_reads_as_empty(field: str) -> None:
    req = RTRequest.model_validate_json(with_raw(field, "null"))
    assert getattr(req, field) == ""
    assert json.loads(req.model_dump_json())[field] == ""


@pytest.mark.parametrize("field", TEXT_FIELDS)
@pytest.mark.parametrize("raw", ["5", "true", "[]", "{}"])
def test_string_field_refuses_non_strings(field: str, raw: str) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(with_raw(field, raw))


@pytest.mark.parametrize("field", TEXT_FIELDS)
def test_missing_string_field_reads_as_empty(field: str) -> None:
    data = request()
    del data[field]
    assert getattr(RTRequest.model_validate(data), field) == ""


def test_unicode_string_fields_preserved() -> None:
    req = parse(cli_name="Ren\u00e9e \U0001f600 \u738b", command_result="\u0661\u0662")
    assert req.cli_name == "Ren\u00e9e \U0001f600 \u738b"
    assert req.command_result == "\u0661\u0662"
    assert RTRequest.model_validate_json(req.model_dump_json().encode("utf-8")) == req


# --- call_status -------------------------------------------------------------------

SPEC_STATUSES = ["INCOMING_CALL", "UP", "HANGUP", "BUSY", "NOANSWER", "CONGESTION", "REJECTED"]


def test_call_status_values_match_the_spec() -> None:
    assert [s.value for s in CallStatus] == SPEC_STATUSES


@pytest.mark.parametrize("status", SPEC_STATUSES)
def test_known_call_status_becomes_enum(status: str) -> None:
    req = parse(call_status=status)
    assert isinstance(req.call_status, CallStatus)
    assert req.call_status is CallStatus(status)
    assert req.call_status == status
    assert json.loads(req.model_dump_json())["call_status"] == status


@pytest.mark.parametrize("status", ["RINGING", "up", "", "ANSWER", "VOICEMAIL_DETECTED"])
def test_unknown_call_status_kept_as_string(status: str) -> None:
    req = parse(call_status=status)
    assert not isinstance(req.call_status, CallStatus)
    assert type(req.call_status) is str
    assert req.call_status == status
    assert json.loads(req.model_dump_json())["call_status"] == status


@pytest.mark.parametrize("raw", ["5", "true", "null", "[]"])
def test_call_status_must_be_a_string(raw: str) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(with_raw("call_status", raw))


@pytest.mark.parametrize(
    ("status", "ended"),
    [
        (CallStatus.INCOMING_CALL, False),
        (CallStatus.UP, False),
        (CallStatus.HANGUP, True),
        (CallStatus.BUSY, True),
        (CallStatus.NOANSWER, True),
        (CallStatus.CONGESTION, True),
        (CallStatus.REJECTED, True),
    ],
)
def test_call_status_ended(status: CallStatus, ended: bool) -> None:
    assert status.ended is ended


# --- variables ---------------------------------------------------------------------


def test_variables_any_nested_json_object() -> None:
    variables = {
        "step": "ask_age",
        "n": 3,
        "f": 1.5,
        "big": 2**70,
        "ok": True,
        "none": None,
        "list": [1, "two", [3, {"four": 4}]],
        "obj": {"a": {"b": {"c": ["d"]}}},
        "unicode \u00e9": "\U0001f600",
    }
    req = parse(variables=variables)
    assert req.variables == variables
    assert json.loads(req.model_dump_json())["variables"] == variables


def test_variables_null_reads_as_empty_object() -> None:
    req = RTRequest.model_validate_json(with_raw("variables", "null"))
    assert req.variables == {}
    assert json.loads(req.model_dump_json())["variables"] == {}


@pytest.mark.parametrize("raw", ["[]", '"x"', "5", "true", "[{}]"])
def test_variables_must_be_an_object(raw: str) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(with_raw("variables", raw))


@pytest.mark.parametrize(
    "raw",
    [
        '{"x": NaN}',
        '{"x": Infinity}',
        '{"x": -Infinity}',
        '{"x": [1, NaN]}',
        '{"x": {"y": {"z": Infinity}}}',
    ],
)
def test_variables_refuse_non_finite_numbers(raw: str) -> None:
    with pytest.raises(ValidationError) as info:
        RTRequest.model_validate_json(with_raw("variables", raw))
    assert "variables" in str(info.value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_variables_refuse_non_finite_numbers_from_python(value: float) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate(request(variables={"x": [value]}))
    with pytest.raises(ValidationError):
        RTResponse(command="hangup", command_id=1, variables={"x": value})


def nested(levels: int, kind: str, leaf: Any) -> dict[str, Any]:
    """A variables object with ``levels`` objects (or arrays) nested below it, then ``leaf``."""
    value: Any = leaf
    for _ in range(levels):
        value = {"k": value} if kind == "dict" else [value]
    return {"root": value}


def deepest_leaf_kinds() -> list[Any]:
    return [1, "s", None, {}, []]


@pytest.mark.parametrize("kind", ["dict", "list"])
@pytest.mark.parametrize("leaf", deepest_leaf_kinds(), ids=repr)
def test_variables_depth_limit(kind: str, leaf: Any) -> None:
    # An object/array may sit at most MAX_VARIABLES_DEPTH levels below ``variables``;
    # scalars add no level, an empty object/array leaf is one more level.
    extra = 1 if isinstance(leaf, dict | list) else 0
    at_limit = nested(MAX_VARIABLES_DEPTH - extra, kind, leaf)
    over_limit = nested(MAX_VARIABLES_DEPTH + 1 - extra, kind, leaf)
    assert parse(variables=at_limit).variables == at_limit
    assert check_json_value(at_limit) is at_limit
    with pytest.raises(ValidationError) as info:
        parse(variables=over_limit)
    assert "nested too deeply" in str(info.value)
    with pytest.raises(ValidationError):
        RTRequest.model_validate(request(variables=over_limit))


def test_max_variables_depth_is_documented_value() -> None:
    assert MAX_VARIABLES_DEPTH == 32


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_very_deep_variables_refused_without_recursion_error(depth: int) -> None:
    raw = '{"a":' * depth + "1" + "}" * depth
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(with_raw("variables", raw))
    value: Any = 1
    for _ in range(depth):
        value = {"a": value}
    with pytest.raises(ValidationError):
        RTRequest.model_validate(request(variables=value))


# --- tolerance: unknown fields, duplicates, immutability ---------------------------


def test_unknown_fields_accepted_and_ignored() -> None:
    body = json.loads(SPEC_FIRST_POST)
    body.update({"new_field": {"x": [1, 2]}, "recording_url": "https://x", "callid_v2": "z"})
    req = RTRequest.model_validate_json(json.dumps(body))
    assert req == RTRequest.model_validate_json(SPEC_FIRST_POST)
    dumped = json.loads(req.model_dump_json())
    assert "new_field" not in dumped
    assert not hasattr(req, "new_field")
    assert list(dumped) == FIELDS


def test_duplicate_keys_last_wins() -> None:
    """Documented behaviour: a key sent twice keeps its last value (like json.loads)."""
    body = SPEC_FIRST_POST[:-1] + ', "callid": 5, "command_result": "x", "command_result": "y"}'
    assert json.loads(body)["callid"] == 5
    req = RTRequest.model_validate_json(body)
    assert req.callid == 5
    assert req.command_result == "y"
    nested_body = with_raw("variables", '{"a": 1, "a": 2}')
    assert RTRequest.model_validate_json(nested_body).variables == {"a": 2}


def test_request_is_frozen() -> None:
    req = RTRequest.model_validate_json(SPEC_FIRST_POST)
    with pytest.raises(ValidationError):
        req.callid = 5  # type: ignore[misc]
    assert req.callid == 421889


@pytest.mark.parametrize("raw", [b"", b"[]", b"null", b'"x"', b"{", b"\xff\xfe"])
def test_not_an_object_refused(raw: bytes) -> None:
    with pytest.raises(ValidationError):
        RTRequest.model_validate_json(raw)


# --- RT.Response -------------------------------------------------------------------


def test_response_matches_spec_example() -> None:
    example = (
        '{"command": "read", "command_id": 1, "params": {"media_id": '
        '"TTS|TTS_FR-FR_AUDREY|Bonjour, appuyez sur \\u00e9toile", "max_digits": 1, '
        '"attempts": 1, "timeout_ms": 4000}, "variables": {}}'
    )
    cmd = read(tts("Bonjour, appuyez sur \u00e9toile", "TTS_FR-FR_AUDREY"), 1, 1, 4000)
    resp = RTResponse(command=cmd.name, command_id=1, params=cmd.wire_params())
    assert json.loads(resp.model_dump_json()) == json.loads(example)
    assert RTResponse.model_validate_json(example) == resp


@pytest.mark.parametrize(
    "text", ["Bonjour, appuyez sur \u00e9toile", "\U0001f600\U0001f44b\U0001f3fd", "\u4f60\u597d"]
)
@pytest.mark.parametrize("command_id", [1, "ask_age"])
def test_response_unicode_round_trip(text: str, command_id: int | str) -> None:
    resp = RTResponse(
        command="play",
        command_id=command_id,
        params=play(tts(text, "TTS_FR-FR_AUDREY")).wire_params(),
        variables={"said": text, "nested": [{"t": text}]},
    )
    data = resp.model_dump_json().encode("utf-8")
    decoded = data.decode("utf-8", errors="strict")  # valid UTF-8
    assert text.encode("utf-8") in data  # raw UTF-8, not mangled
    assert json.loads(decoded)["params"]["media_id"] == "TTS|TTS_FR-FR_AUDREY|" + text
    back = RTResponse.model_validate_json(data)
    assert back == resp
    assert back.command_id == command_id
    assert type(back.command_id) is type(command_id)
    assert back.params["media_id"].endswith("|" + text)


def test_response_dialout_params_serialise() -> None:
    cmd = dialout(["+33123456789"], cdr_field="abc")
    resp = RTResponse(command=cmd.name, command_id=7, params=cmd.wire_params())
    assert json.loads(resp.model_dump_json())["params"]["targets"] == [
        {"number": "+33123456789", "timeout": 30}
    ]


def test_response_defaults_and_null_variables() -> None:
    resp = RTResponse.model_validate_json('{"command": "hangup", "command_id": 3}')
    assert resp.params == {}
    assert resp.variables == {}
    resp = RTResponse.model_validate_json(
        '{"command": "hangup", "command_id": 3, "variables": null, "extra": 1}'
    )
    assert resp.variables == {}
    assert "extra" not in resp.model_dump()


@pytest.mark.parametrize(
    "body",
    [
        '{"command_id": 1}',  # command missing
        '{"command": "hangup"}',  # command_id missing
        '{"command": null, "command_id": 1}',
        '{"command": 5, "command_id": 1}',
        '{"command": "hangup", "command_id": 1.5}',
        '{"command": "hangup", "command_id": true}',
        '{"command": "hangup", "command_id": null}',
        '{"command": "hangup", "command_id": 1, "params": []}',
        '{"command": "hangup", "command_id": 1, "variables": [1]}',
    ],
)
def test_response_refuses_bad_shapes(body: str) -> None:
    with pytest.raises(ValidationError):
        RTResponse.model_validate_json(body)


# --- properties --------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
statuses = st.sampled_from(SPEC_STATUSES) | st.text()

requests = st.fixed_dictionaries(
    {
        "app": st.text(),
        "callid": st.integers(min_value=0, max_value=CALLID_MAX),
        "request_hash": st.none() | st.text(),
        "cli_name": st.text(),
        "cli_number": st.text(),
        "date_started": st.text(),
        "number": st.text(),
        "command": st.text(),
        "command_id": st.integers(min_value=-(2**63), max_value=2**64) | st.text(),
        "command_result": st.text(),
        "command_error": st.text(),
        "call_status": statuses,
        "cdr_field": st.text(),
        "variables": st.dictionaries(st.text(), json_values, max_size=5),
    }
)


@settings(max_examples=300)
@given(requests)
def test_any_valid_request_round_trips_through_json(data: dict[str, Any]) -> None:
    req = RTRequest.model_validate(data)
    dumped = req.model_dump_json()
    again = RTRequest.model_validate_json(dumped)
    assert again == req
    assert again.model_dump_json() == dumped
    # and the wire JSON is exactly what was given
    assert json.loads(dumped) == json.loads(json.dumps(data))
    assert type(again.command_id) is type(data["command_id"])
    assert isinstance(again.call_status, CallStatus) == (data["call_status"] in SPEC_STATUSES)
    # the same body parsed from raw JSON gives the same model
    assert RTRequest.model_validate_json(json.dumps(data, ensure_ascii=False)) == req


@given(
    command=st.text(min_size=1),
    command_id=st.integers(min_value=0, max_value=2**63) | st.text(),
    variables=st.dictionaries(st.text(), json_values, max_size=5),
)
def test_any_valid_response_round_trips_through_json(
    command: str, command_id: int | str, variables: dict[str, Any]
) -> None:
    resp = RTResponse(command=command, command_id=command_id, variables=variables)
    data = resp.model_dump_json().encode("utf-8")
    assert RTResponse.model_validate_json(data) == resp
    assert json.loads(data)["variables"] == json.loads(json.dumps(variables))
