"""The 16 REALTIME10 command builders and ``from_wire``, checked against the spec (§5.5).

The range table below is copied from the spec, not from ``rtcontrol.commands``, so
these tests are an independent check of the builders.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import pickle
import re
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic_core import to_json

from rtcontrol import commands
from rtcontrol.commands import (
    BUILDERS,
    WAIT_KEY,
    Command,
    conference,
    dialout,
    from_wire,
    hangup,
    hangup_callid,
    play,
    play_record,
    play_talk_detect,
    play_wav_data,
    read,
    record,
    send_dtmf,
    simple_conference,
    start_call_recording,
    stop_call_recording,
    wait,
    wait_for_silence,
)
from rtcontrol.errors import CommandError
from rtcontrol.media import Target, tts

CALLID_MAX = 2**64 - 1
PROMPT = "TTS|TTS_FR-FR_AUDREY|Bonjour, appuyez sur \u00e9toile"

SPEC_COMMANDS = {
    "conference",
    "dialout",
    "hangup",
    "hangup_callid",
    "play",
    "play_record",
    "play_wav_data",
    "play_talk_detect",
    "read",
    "record",
    "send_dtmf",
    "simple_conference",
    "start_call_recording",
    "stop_call_recording",
    "wait",
    "wait_for_silence",
}

#: (command, parameter, low, high) from §5.5 of the spec (and §4.4 for the callid).
RANGES: list[tuple[str, str, int, int]] = [
    ("read", "max_digits", 1, 20),
    ("read", "attempts", 1, 10),
    ("read", "timeout_ms", 100, 30_000),
    ("record", "max_duration", 0, 300),
    ("record", "silence", 0, 20),
    ("send_dtmf", "duration_ms", 1, 5_000),
    ("send_dtmf", "timeout_ms", 0, 10_000),
    ("wait", "seconds", 1, 30),
    ("wait_for_silence", "silence_ms", 1, 5_000),
    ("wait_for_silence", "iterations", 1, 3),
    ("wait_for_silence", "timeout", 0, 300),
    ("conference", "pin_max_tries", 1, 10),
    ("conference", "pin_wait", 0, 30),
    # ranges unpublished; the project chose 0..600000 ms for each
    ("play_talk_detect", "silence_ms", 0, 600_000),
    ("play_talk_detect", "min_ms", 0, 600_000),
    ("play_talk_detect", "max_ms", 0, 600_000),
    ("play_talk_detect", "analysistime_ms", 0, 600_000),
    ("hangup_callid", "callid", 0, CALLID_MAX),
]

#: The other parameters a command needs, so that only the one under test varies.
REQUIRED: dict[str, dict[str, Any]] = {
    "read": {"media_id": PROMPT},
    "send_dtmf": {"digits": "123#"},
    "conference": {"id": 42},
    "play_talk_detect": {"media_id": 131},
}

RANGE_IDS = [f"{c}.{p}" for c, p, _, _ in RANGES]


def build(command: str, **params: Any) -> Command:
    """Build with the Python builder."""
    builder: Callable[..., Command] = getattr(commands, command)
    return builder(**{**REQUIRED.get(command, {}), **params})


def build_from_wire(command: str, **params: Any) -> Command:
    """Build from a wire (JSON) command, through ``from_wire``."""
    wire = json.loads(json.dumps({**REQUIRED.get(command, {}), **params}))
    return from_wire(command, wire)


BUILD_PATHS = pytest.mark.parametrize("make", [build, build_from_wire], ids=["builder", "wire"])


def assert_command_error(
    info: pytest.ExceptionInfo[CommandError], command: str, param: str, value: Any
) -> str:
    """The error names the command, the parameter and the value; returns the message."""
    error = info.value
    message = str(error)
    assert error.command == command
    assert error.param == param
    assert error.value == value
    assert type(error.value) is type(value)
    assert command in message
    assert repr(param) in message
    assert repr(value) in message
    return message


# --- numeric ranges ----------------------------------------------------------------


@BUILD_PATHS
@pytest.mark.parametrize(("command", "param", "low", "high"), RANGES, ids=RANGE_IDS)
def test_range_bounds_accepted(
    make: Callable[..., Command], command: str, param: str, low: int, high: int
) -> None:
    for value in (low, high):
        cmd = make(command, **{param: value})
        assert cmd.name == command
        assert cmd.wire_params()[param] == value
        assert type(cmd.wire_params()[param]) is int


@BUILD_PATHS
@pytest.mark.parametrize(("command", "param", "low", "high"), RANGES, ids=RANGE_IDS)
@pytest.mark.parametrize("side", ["low", "high"])
def test_range_first_invalid_value_refused(
    make: Callable[..., Command], command: str, param: str, low: int, high: int, side: str
) -> None:
    value = low - 1 if side == "low" else high + 1
    with pytest.raises(CommandError) as info:
        make(command, **{param: value})
    message = assert_command_error(info, command, param, value)
    assert f"{low}..{high}" in message


BAD_TYPES = [True, False, 1.0, 5.5, "5", "", None, [5], {"n": 5}]


@pytest.mark.parametrize(("command", "param", "low", "high"), RANGES, ids=RANGE_IDS)
@pytest.mark.parametrize("value", BAD_TYPES, ids=repr)
def test_range_mistyped_values_refused(
    command: str, param: str, low: int, high: int, value: Any
) -> None:
    with pytest.raises(CommandError) as info:
        build(command, **{param: value})
    assert info.value.command == command
    assert info.value.param == param
    assert info.value.value is value or info.value.value == value


@pytest.mark.parametrize(("command", "param", "low", "high"), RANGES, ids=RANGE_IDS)
def test_range_float_equal_to_a_bound_refused(
    command: str, param: str, low: int, high: int
) -> None:
    for value in (float(low), float(min(high, 2**53))):
        with pytest.raises(CommandError):
            build(command, **{param: value})
        with pytest.raises(CommandError):
            build_from_wire(command, **{param: value})


@given(
    max_digits=st.integers(1, 20),
    attempts=st.integers(1, 10),
    timeout_ms=st.integers(100, 30_000),
)
def test_read_any_in_range_int_builds(max_digits: int, attempts: int, timeout_ms: int) -> None:
    cmd = read(PROMPT, max_digits=max_digits, attempts=attempts, timeout_ms=timeout_ms)
    assert cmd.wire_params() == {
        "media_id": PROMPT,
        "max_digits": max_digits,
        "attempts": attempts,
        "timeout_ms": timeout_ms,
    }
    assert from_wire("read", cmd.wire_params()) == cmd


@given(
    param=st.sampled_from(
        [("max_digits", 1, 20), ("attempts", 1, 10), ("timeout_ms", 100, 30_000)]
    ),
    value=st.integers(),
)
def test_read_any_out_of_range_int_refused(param: tuple[str, int, int], value: int) -> None:
    name, low, high = param
    if low <= value <= high:
        assert read(PROMPT, **{name: value}).wire_params()[name] == value
    else:
        with pytest.raises(CommandError) as info:
            read(PROMPT, **{name: value})
        assert info.value.param == name


# --- exact wire params of each builder ---------------------------------------------


def test_read_wire_params() -> None:
    assert read(PROMPT, max_digits=1, attempts=1, timeout_ms=4000).wire_params() == {
        "media_id": PROMPT,
        "max_digits": 1,
        "attempts": 1,
        "timeout_ms": 4000,
    }
    # SDK defaults of §5.5
    assert read(5).wire_params() == {
        "media_id": 5,
        "max_digits": 20,
        "attempts": 10,
        "timeout_ms": 30_000,
    }


def test_read_matches_the_spec_response_example() -> None:
    example = json.loads(
        '{"command": "read", "command_id": 1, "params": {"media_id": "TTS|TTS_FR-FR_AUDREY|'
        'Bonjour, appuyez sur \\u00e9toile", "max_digits": 1, "attempts": 1, '
        '"timeout_ms": 4000}, "variables": {}}'
    )
    cmd = read(tts("Bonjour, appuyez sur étoile", "TTS_FR-FR_AUDREY"), 1, 1, 4000)
    assert cmd.name == example["command"]
    assert cmd.wire_params() == example["params"]


def test_play_wire_params() -> None:
    assert play(131).wire_params() == {"media_id": 131}
    assert play(PROMPT).wire_params() == {"media_id": PROMPT}
    assert play(PROMPT).name == "play"


def test_play_record_wire_params() -> None:
    assert play_record("rec_12345.wav").wire_params() == {"media_file": "rec_12345.wav"}
    assert play_record("x" * 255).wire_params() == {"media_file": "x" * 255}


@pytest.mark.parametrize("value", ["", "x" * 256, None, 5, b"rec.wav"])
def test_play_record_refuses_bad_file_names(value: Any) -> None:
    with pytest.raises(CommandError) as info:
        play_record(value)
    assert (info.value.command, info.value.param) == ("play_record", "media_file")


def test_play_talk_detect_wire_params() -> None:
    # SDK defaults 5, 500, 60000, 4000 ms (§5.5)
    assert play_talk_detect(131).wire_params() == {
        "media_id": 131,
        "silence_ms": 5,
        "min_ms": 500,
        "max_ms": 60_000,
        "analysistime_ms": 4_000,
    }
    assert play_talk_detect(PROMPT, 1, 2, 3, 4).wire_params() == {
        "media_id": PROMPT,
        "silence_ms": 1,
        "min_ms": 2,
        "max_ms": 3,
        "analysistime_ms": 4,
    }


def test_record_wire_params() -> None:
    assert record(max_duration=120, silence=3).wire_params() == {
        "max_duration": 120,
        "silence": 3,
    }
    assert record().wire_params()["silence"] == 0  # SDK default
    assert set(record().wire_params()) == {"max_duration", "silence"}


def test_send_dtmf_wire_params() -> None:
    assert send_dtmf("123#").wire_params() == {
        "digits": "123#",
        "duration_ms": 500,
        "timeout_ms": 500,
    }
    assert send_dtmf("*0#9", duration_ms=100, timeout_ms=0).wire_params() == {
        "digits": "*0#9",
        "duration_ms": 100,
        "timeout_ms": 0,
    }


@pytest.mark.parametrize(
    "digits", ["", "12a", "1 2", "12\n", "A", "\uff11\uff12", "\u0661", None, 123, ["1"]]
)
def test_send_dtmf_refuses_bad_digits(digits: Any) -> None:
    with pytest.raises(CommandError) as info:
        send_dtmf(digits)
    assert (info.value.command, info.value.param) == ("send_dtmf", "digits")


def test_wait_wire_params() -> None:
    assert WAIT_KEY == "seconds"  # the current PHP SDK's key, preferred by the spec
    assert wait(10).wire_params() == {"seconds": 10}
    assert wait(seconds=1).name == "wait"


def test_wait_for_silence_wire_params() -> None:
    assert wait_for_silence(silence_ms=800, iterations=2, timeout=60).wire_params() == {
        "silence_ms": 800,
        "iterations": 2,
        "timeout": 60,
    }
    assert set(wait_for_silence().wire_params()) == {"silence_ms", "iterations", "timeout"}


def test_hangup_wire_params() -> None:
    cmd = hangup()
    assert cmd.name == "hangup"
    assert cmd.wire_params() == {}
    assert cmd.ends_call
    assert not play(1).ends_call
    assert not hangup_callid(5).ends_call


def test_hangup_callid_wire_params() -> None:
    assert hangup_callid(421889).wire_params() == {"callid": 421889}
    assert hangup_callid(CALLID_MAX).wire_params() == {"callid": 18446744073709551615}


@pytest.mark.parametrize("builder", [start_call_recording, stop_call_recording])
def test_call_recording_wire_params(builder: Callable[..., Command]) -> None:
    assert builder().wire_params() == {"announce": 0}
    assert builder(PROMPT).wire_params() == {"announce": PROMPT}
    assert builder(announce=77).wire_params() == {"announce": 77}
    assert builder().name == builder.__name__


def test_simple_conference_wire_params() -> None:
    assert simple_conference(7).wire_params() == {"id": 7, "auto_leave_when_alone": True}
    assert simple_conference("room-1", auto_leave_when_alone=False).wire_params() == {
        "id": "room-1",
        "auto_leave_when_alone": False,
    }


def test_conference_wire_params_defaults() -> None:
    assert conference(42).wire_params() == {
        "id": 42,
        "welcome": 0,
        "waiting": 0,
        "pin_prompt": 0,
        "pin_error": 0,
        "pin_valid": 0,
        "pin_code": "",
        "pin_max_tries": 3,
        "pin_wait": 5,
        "auto_leave_when_alone": False,
        "auto_leave_announce": 0,
        "user_join": 0,
        "user_leave": 0,
    }


def test_conference_wire_params_all_set() -> None:
    cmd = conference(
        "sales",
        welcome=1,
        waiting=2,
        pin_prompt=tts("PIN?"),
        pin_error=4,
        pin_valid=5,
        pin_code="1234",
        pin_max_tries=10,
        pin_wait=30,
        auto_leave_when_alone=True,
        auto_leave_announce=6,
        user_join=7,
        user_leave=8,
    )
    assert cmd.wire_params() == {
        "id": "sales",
        "welcome": 1,
        "waiting": 2,
        "pin_prompt": "TTS|TTS_EN-GB_SERENA|PIN?",
        "pin_error": 4,
        "pin_valid": 5,
        "pin_code": "1234",
        "pin_max_tries": 10,
        "pin_wait": 30,
        "auto_leave_when_alone": True,
        "auto_leave_announce": 6,
        "user_join": 7,
        "user_leave": 8,
    }


@pytest.mark.parametrize("pin", ["12a", "12 34", "#", "\u0661\u0662", None, 1234])
def test_conference_refuses_bad_pin_codes(pin: Any) -> None:
    with pytest.raises(CommandError) as info:
        conference(1, pin_code=pin)
    assert (info.value.command, info.value.param) == ("conference", "pin_code")


@pytest.mark.parametrize("builder", [conference, simple_conference])
@pytest.mark.parametrize("room", [0, 1, 2**63, "a", "x" * 64, "salle é 1"])
def test_room_ids_accepted(builder: Callable[..., Command], room: int | str) -> None:
    assert builder(room).wire_params()["id"] == room


@pytest.mark.parametrize("builder", [conference, simple_conference])
@pytest.mark.parametrize("room", [-1, "", "x" * 65, "a\nb", True, 1.0, None, [1]])
def test_room_ids_refused(builder: Callable[..., Command], room: Any) -> None:
    with pytest.raises(CommandError) as info:
        builder(room)
    assert info.value.param == "id"


@pytest.mark.parametrize("builder", [conference, simple_conference])
@pytest.mark.parametrize("value", [0, 1, "true", None, 1.0])
def test_auto_leave_when_alone_must_be_a_bool(builder: Callable[..., Command], value: Any) -> None:
    with pytest.raises(CommandError) as info:
        builder(1, auto_leave_when_alone=value)
    assert info.value.param == "auto_leave_when_alone"
    assert "true or false" in str(info.value)


# --- media parameters --------------------------------------------------------------

#: (command, media parameter) pairs; required ones refuse 0, optional ones take 0 = none.
REQUIRED_MEDIA = [("play", "media_id"), ("read", "media_id"), ("play_talk_detect", "media_id")]
OPTIONAL_MEDIA = [
    ("dialout", "whisper"),
    ("conference", "welcome"),
    ("conference", "waiting"),
    ("conference", "pin_prompt"),
    ("conference", "pin_error"),
    ("conference", "pin_valid"),
    ("conference", "auto_leave_announce"),
    ("conference", "user_join"),
    ("conference", "user_leave"),
    ("start_call_recording", "announce"),
    ("stop_call_recording", "announce"),
]
MEDIA_REQUIRED_ARGS: dict[str, dict[str, Any]] = {
    "dialout": {"targets": "+33123456789"},
    "conference": {"id": 1},
}


def build_media(command: str, param: str, value: Any) -> Command:
    builder: Callable[..., Command] = getattr(commands, command)
    return builder(**{**MEDIA_REQUIRED_ARGS.get(command, {}), param: value})


@pytest.mark.parametrize(("command", "param"), REQUIRED_MEDIA)
def test_required_media_refuses_zero(command: str, param: str) -> None:
    with pytest.raises(CommandError) as info:
        build_media(command, param, 0)
    assert_command_error(info, command, param, 0)


@pytest.mark.parametrize(("command", "param"), OPTIONAL_MEDIA)
def test_optional_media_accepts_zero(command: str, param: str) -> None:
    assert build_media(command, param, 0).wire_params()[param] == 0


@pytest.mark.parametrize(("command", "param"), REQUIRED_MEDIA + OPTIONAL_MEDIA)
@pytest.mark.parametrize("value", [1, 131, PROMPT, "TTS|TTS_EN-GB_DANIEL|Hi 😀 你好"])
def test_media_accepts_ids_and_tts(command: str, param: str, value: Any) -> None:
    assert build_media(command, param, value).wire_params()[param] == value


@pytest.mark.parametrize(("command", "param"), REQUIRED_MEDIA + OPTIONAL_MEDIA)
@pytest.mark.parametrize(
    "value",
    [
        -1,
        True,
        False,
        1.0,
        None,
        "hello",
        "TTS|tts_en-gb_serena|Hi",
        "TTS|NUANCE_FR_AUDREY|Bonjour",
        "TTS|TTS_EN-GB_SERENA|",
    ],
    ids=repr,
)
def test_media_refuses_bad_values(command: str, param: str, value: Any) -> None:
    with pytest.raises(CommandError) as info:
        build_media(command, param, value)
    assert info.value.command == command
    assert info.value.param == param


@pytest.mark.parametrize("text", ["é", "😀", "漢字", "e\u0301", "Grüß Gott — «ça va?»"])
def test_unicode_tts_text_preserved_in_wire_params(text: str) -> None:
    cmd = play(tts(text, "TTS_FR-FR_AUDREY"))
    assert cmd.wire_params() == {"media_id": "TTS|TTS_FR-FR_AUDREY|" + text}
    encoded = json.dumps(cmd.wire_params(), ensure_ascii=False).encode("utf-8")
    assert json.loads(encoded.decode("utf-8"))["media_id"].endswith("|" + text)
    assert from_wire("play", json.loads(encoded)) == cmd


# --- dialout -----------------------------------------------------------------------


def test_dialout_wire_params_defaults() -> None:
    assert dialout("+33123456789").wire_params() == {
        "targets": [{"number": "+33123456789", "timeout": 30}],
        "cli": "BLOCKED",
        "ringtone": "RING",
        "whisper": 0,
        "cdr_field": "",
    }


def test_dialout_accepts_strings_targets_and_dicts() -> None:
    cmd = dialout(
        [
            "+33123456789",
            Target(number="+447890123456", timeout=5),
            {"number": "+12025550123", "timeout": 300},
            {"number": "+4930123456"},
        ],
        cli="+33987654321",
        ringtone="MUSIC",
        whisper=tts("You have a call"),
        cdr_field="Order42",
    )
    assert cmd.wire_params() == {
        "targets": [
            {"number": "+33123456789", "timeout": 30},
            {"number": "+447890123456", "timeout": 5},
            {"number": "+12025550123", "timeout": 300},
            {"number": "+4930123456", "timeout": 30},
        ],
        "cli": "+33987654321",
        "ringtone": "MUSIC",
        "whisper": "TTS|TTS_EN-GB_SERENA|You have a call",
        "cdr_field": "Order42",
    }


def test_dialout_single_target_and_tuple() -> None:
    target = Target(number="+447890123456", timeout=45)
    expected = [{"number": "+447890123456", "timeout": 45}]
    assert dialout(target).wire_params()["targets"] == expected
    assert dialout((target,)).wire_params()["targets"] == expected


def test_dialout_accepts_up_to_ten_targets() -> None:
    numbers = [f"+3312345678{i}" for i in range(10)]
    cmd = dialout(numbers)
    assert [t["number"] for t in cmd.wire_params()["targets"]] == numbers


@pytest.mark.parametrize("targets", [[], (), [f"+3312345678{i}" for i in range(10)] + ["+12"]])
def test_dialout_refuses_empty_and_more_than_ten_targets(targets: Any) -> None:
    with pytest.raises(CommandError) as info:
        dialout(targets)
    assert (info.value.command, info.value.param) == ("dialout", "targets")
    assert "1..10" in str(info.value)


@pytest.mark.parametrize(("side", "timeout"), [("low", 4), ("high", 301)])
def test_dialout_target_timeout_range(side: str, timeout: int) -> None:
    for ok in (5, 300):
        assert dialout([{"number": "+33123456789", "timeout": ok}]).wire_params()["targets"] == [
            {"number": "+33123456789", "timeout": ok}
        ]
    with pytest.raises(CommandError) as info:
        dialout([{"number": "+33123456789", "timeout": timeout}])
    message = str(info.value)
    assert (info.value.command, info.value.param) == ("dialout", "targets")
    assert "dialout" in message
    assert "'targets'" in message
    assert "5..300" in message
    assert f"'timeout': {timeout}" in message


@pytest.mark.parametrize("timeout", [True, 30.0, "30", None])
def test_dialout_target_timeout_mistyped(timeout: Any) -> None:
    with pytest.raises(CommandError):
        dialout([{"number": "+33123456789", "timeout": timeout}])


@pytest.mark.parametrize(
    "target",
    [
        "33123456789",
        "0033123456789",
        "+0123456789",
        "+1",
        "+1234567890123456",
        "+33 1 23 45 67 89",
        "",
        {"number": "33123456789"},
        {"timeout": 30},
        {"number": "+33123456789", "timeout": 30, "extra": 1},
        33123456789,
        None,
    ],
)
def test_dialout_refuses_bad_targets(target: Any) -> None:
    with pytest.raises(CommandError) as info:
        dialout([target])
    assert (info.value.command, info.value.param) == ("dialout", "targets")


@pytest.mark.parametrize("targets", [None, 5, {"number": "+33123456789"}])
def test_dialout_refuses_non_list_targets(targets: Any) -> None:
    with pytest.raises(CommandError) as info:
        dialout(targets)
    assert info.value.param == "targets"


@pytest.mark.parametrize("cli", ["BLOCKED", "+33123456789", "+12"])
def test_dialout_cli_accepted(cli: str) -> None:
    assert dialout("+33123456789", cli=cli).wire_params()["cli"] == cli


@pytest.mark.parametrize(
    "cli", ["blocked", "Blocked", "", "0123456789", "33123456789", "+33 123", "+0123", None, 33]
)
def test_dialout_cli_refused(cli: Any) -> None:
    with pytest.raises(CommandError) as info:
        dialout("+33123456789", cli=cli)
    assert (info.value.command, info.value.param) == ("dialout", "cli")
    assert "BLOCKED" in str(info.value)


@pytest.mark.parametrize("ringtone", ["RING", "MUSIC"])
def test_dialout_ringtone_accepted(ringtone: str) -> None:
    assert dialout("+33123456789", ringtone=ringtone).wire_params()["ringtone"] == ringtone


@pytest.mark.parametrize("ringtone", ["ring", "music", "", "BEEP", None, 0])
def test_dialout_ringtone_refused(ringtone: Any) -> None:
    with pytest.raises(CommandError) as info:
        dialout("+33123456789", ringtone=ringtone)
    assert (info.value.command, info.value.param) == ("dialout", "ringtone")


@pytest.mark.parametrize("cdr_field", ["", "a", "000CUSTOMFIELD42", "A" * 32, "abcXYZ0123456789"])
def test_dialout_cdr_field_accepted(cdr_field: str) -> None:
    assert dialout("+33123456789", cdr_field=cdr_field).wire_params()["cdr_field"] == cdr_field


@pytest.mark.parametrize(
    "cdr_field", ["A" * 33, "user_data", "a b", "a-b", "é", "abc\n", "\uff21", None, 42]
)
def test_dialout_cdr_field_refused(cdr_field: Any) -> None:
    with pytest.raises(CommandError) as info:
        dialout("+33123456789", cdr_field=cdr_field)
    assert (info.value.command, info.value.param) == ("dialout", "cdr_field")
    assert "32" in str(info.value)


# --- play_wav_data -----------------------------------------------------------------

WAV = b"RIFF$\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00@\x1f\x00\x00\x80>\x00\x00"


def test_play_wav_data_base64_encodes_bytes() -> None:
    cmd = play_wav_data(WAV)
    encoded = cmd.wire_params()["audio_data"]
    assert cmd.wire_params() == {"audio_data": base64.b64encode(WAV).decode("ascii")}
    assert base64.b64decode(encoded, validate=True) == WAV
    assert play_wav_data(bytearray(WAV)) == cmd  # type: ignore[arg-type]


def test_play_wav_data_keeps_valid_base64_text() -> None:
    text = base64.b64encode(WAV).decode("ascii")
    assert play_wav_data(text).wire_params() == {"audio_data": text}
    assert play_wav_data(text) == play_wav_data(WAV)


@pytest.mark.parametrize(
    "value", ["not base64!", "abc", "YWJj\n", "éé==", "", b"", bytearray(), None, 5, [WAV]]
)
def test_play_wav_data_refuses_bad_values(value: Any) -> None:
    with pytest.raises(CommandError) as info:
        play_wav_data(value)
    assert (info.value.command, info.value.param) == ("play_wav_data", "audio_data")


def test_play_wav_data_error_message_is_truncated() -> None:
    huge = "!" * 1_000_000
    with pytest.raises(CommandError) as info:
        play_wav_data(huge)
    message = str(info.value)
    assert len(message) < 300
    assert huge not in message
    assert "play_wav_data" in message
    assert "audio_data" in message
    assert len(repr(info.value.value)) < 100


# --- Command: then(), immutability, equality ---------------------------------------


def test_then_binds_a_step_by_name() -> None:
    cmd = read(PROMPT)
    bound = cmd.then("choice")
    assert bound.step == "choice"
    assert bound.name == "read"
    assert bound.wire_params() == cmd.wire_params()
    assert cmd.step is None  # the original is untouched
    assert bound != cmd
    assert repr(bound).endswith(".then('choice')")


def test_then_binds_a_step_by_function() -> None:
    def ask_age(call: object) -> None:
        return None

    assert play(1).then(ask_age).step == "ask_age"
    assert play(1).then(ask_age) == play(1).then("ask_age")


def test_then_rebinding_replaces_the_step() -> None:
    assert play(1).then("a").then("b").step == "b"


@pytest.mark.parametrize(
    "step", ["", "1abc", "has space", "a-b", "a.b", None, 5, lambda call: None], ids=repr
)
def test_then_refuses_bad_step_names(step: Any) -> None:
    with pytest.raises(CommandError) as info:
        play(1).then(step)
    assert (info.value.command, info.value.param) == ("play", "then")


def test_command_is_immutable() -> None:
    cmd = dialout(["+33123456789", "+447890123456"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.name = "play"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cmd.step = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        cmd.params["cli"] = "+33123456789"  # type: ignore[index]
    with pytest.raises(TypeError):
        cmd.params["targets"][0]["number"] = "+12"
    with pytest.raises((TypeError, AttributeError)):
        cmd.params["targets"].append({"number": "+12"})
    assert cmd.wire_params()["cli"] == "BLOCKED"


def test_wire_params_is_a_detached_copy() -> None:
    cmd = dialout(["+33123456789"])
    wire = cmd.wire_params()
    wire["cli"] = "+12"
    wire["targets"].append({"number": "+12", "timeout": 5})
    wire["targets"][0]["number"] = "+999"
    assert cmd.wire_params() == dialout(["+33123456789"]).wire_params()
    assert cmd.wire_params()["targets"] == [{"number": "+33123456789", "timeout": 30}]


def test_wire_params_is_plain_json() -> None:
    cmd = dialout(["+33123456789"], whisper=tts("Hi 😀"))
    wire = cmd.wire_params()
    assert type(wire) is dict
    assert type(wire["targets"]) is list
    assert type(wire["targets"][0]) is dict
    assert json.loads(json.dumps(wire)) == wire


@pytest.mark.parametrize("name", sorted(SPEC_COMMANDS))
def test_params_mapping_serialises_as_json(name: str) -> None:
    """``dict(cmd.params)`` (what the dispatcher encodes) is plain JSON for every command."""
    cmd = from_wire(name, WIRE_EXAMPLES[name])
    expected = WIRE_EXAMPLES[name]
    assert json.loads(json.dumps(dict(cmd.params))) == expected
    assert json.loads(to_json(dict(cmd.params))) == expected


def test_command_copies_and_pickles() -> None:
    cmd = dialout(["+33123456789", {"number": "+447890123456", "timeout": 5}]).then("after")
    for clone in (copy.copy(cmd), copy.deepcopy(cmd), pickle.loads(pickle.dumps(cmd))):
        assert clone == cmd
        assert clone.step == "after"
        assert clone.wire_params() == cmd.wire_params()
        with pytest.raises(TypeError):
            clone.params["targets"][0]["number"] = "+12"


def test_mutating_the_builder_input_does_not_change_the_command() -> None:
    targets: list[Any] = [{"number": "+33123456789", "timeout": 30}]
    cmd = dialout(targets)
    targets[0]["number"] = "+12"
    targets.append("+447890123456")
    assert cmd.wire_params()["targets"] == [{"number": "+33123456789", "timeout": 30}]


def test_command_equality() -> None:
    assert read(PROMPT, 4) == read(PROMPT, max_digits=4)
    assert read(PROMPT, 4) != read(PROMPT, 5)
    assert play(1) != start_call_recording(1)
    assert dialout("+33123456789") == dialout(["+33123456789"])


def test_command_repr_shows_name_and_params() -> None:
    assert repr(wait(5)) == "wait(seconds=5)"
    assert repr(dialout("+12")) == (
        "dialout(targets=[{'number': '+12', 'timeout': 30}], cli='BLOCKED', "
        "ringtone='RING', whisper=0, cdr_field='')"
    )


# --- from_wire ---------------------------------------------------------------------

#: A valid wire command for each of the 16 names, written from §5.5.
WIRE_EXAMPLES: dict[str, dict[str, Any]] = {
    "conference": {
        "id": "room1",
        "welcome": 0,
        "waiting": 12,
        "pin_prompt": "TTS|TTS_EN-GB_SERENA|PIN please",
        "pin_error": 0,
        "pin_valid": 0,
        "pin_code": "4321",
        "pin_max_tries": 3,
        "pin_wait": 5,
        "auto_leave_when_alone": True,
        "auto_leave_announce": 0,
        "user_join": 0,
        "user_leave": 0,
    },
    "dialout": {
        "targets": [{"number": "+447890123456", "timeout": 30}],
        "cli": "BLOCKED",
        "ringtone": "MUSIC",
        "whisper": 0,
        "cdr_field": "userData",
    },
    "hangup": {},
    "hangup_callid": {"callid": 421889},
    "play": {"media_id": "TTS|TTS_EN-GB_SERENA|Hi"},
    "play_record": {"media_file": "rec_4260XMAQ.wav"},
    "play_wav_data": {"audio_data": base64.b64encode(WAV).decode("ascii")},
    "play_talk_detect": {
        "media_id": 131,
        "silence_ms": 5,
        "min_ms": 500,
        "max_ms": 60000,
        "analysistime_ms": 4000,
    },
    "read": {"media_id": PROMPT, "max_digits": 1, "attempts": 1, "timeout_ms": 4000},
    "record": {"max_duration": 300, "silence": 0},
    "send_dtmf": {"digits": "123#", "duration_ms": 500, "timeout_ms": 500},
    "simple_conference": {"id": 42, "auto_leave_when_alone": True},
    "start_call_recording": {"announce": 0},
    "stop_call_recording": {"announce": "TTS|TTS_EN-GB_SERENA|Stopped"},
    "wait": {"seconds": 10},
    "wait_for_silence": {"silence_ms": 1000, "iterations": 3, "timeout": 300},
}


def test_builders_are_exactly_the_spec_commands() -> None:
    assert set(BUILDERS) == SPEC_COMMANDS
    assert set(WIRE_EXAMPLES) == SPEC_COMMANDS
    for name, builder in BUILDERS.items():
        assert builder.__name__ == name


@pytest.mark.parametrize("name", sorted(WIRE_EXAMPLES))
def test_from_wire_accepts_valid_commands(name: str) -> None:
    params = json.loads(json.dumps(WIRE_EXAMPLES[name]))
    cmd = from_wire(name, params)
    assert cmd.name == name
    assert cmd.step is None
    assert cmd.wire_params() == WIRE_EXAMPLES[name]
    assert from_wire(name, cmd.wire_params()) == cmd


@pytest.mark.parametrize("name", sorted(WIRE_EXAMPLES))
def test_from_wire_refuses_unknown_params(name: str) -> None:
    params = {**WIRE_EXAMPLES[name], "bogus": 1}
    with pytest.raises(CommandError) as info:
        from_wire(name, params)
    assert info.value.command == name
    assert info.value.param == "params"
    assert "bogus" in str(info.value)


@pytest.mark.parametrize(
    ("name", "missing"),
    [
        ("play", "media_id"),
        ("read", "media_id"),
        ("play_record", "media_file"),
        ("play_wav_data", "audio_data"),
        ("play_talk_detect", "media_id"),
        ("send_dtmf", "digits"),
        ("wait", "seconds"),
        ("dialout", "targets"),
        ("conference", "id"),
        ("simple_conference", "id"),
        ("hangup_callid", "callid"),
    ],
)
def test_from_wire_refuses_missing_required_params(name: str, missing: str) -> None:
    params = {k: v for k, v in WIRE_EXAMPLES[name].items() if k != missing}
    with pytest.raises(CommandError) as info:
        from_wire(name, params)
    assert info.value.command == name
    assert info.value.param == "params"


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [
        ("play", "media_id", 0),
        ("read", "max_digits", 21),
        ("record", "silence", 21),
        ("send_dtmf", "digits", "12x"),
        ("wait", "seconds", 31),
        ("wait_for_silence", "iterations", 4),
        ("conference", "pin_wait", 31),
        ("dialout", "ringtone", "BEEP"),
        ("dialout", "cli", "blocked"),
        ("dialout", "targets", [{"number": "+33123456789", "timeout": 301}]),
        ("simple_conference", "auto_leave_when_alone", "yes"),
        ("hangup_callid", "callid", -1),
        ("play_wav_data", "audio_data", "***"),
        ("start_call_recording", "announce", -1),
    ],
)
def test_from_wire_refuses_bad_values(name: str, param: str, value: Any) -> None:
    with pytest.raises(CommandError) as info:
        from_wire(name, {**WIRE_EXAMPLES[name], param: value})
    assert info.value.command == name
    assert info.value.param == param


@pytest.mark.parametrize("name", ["", "PLAY", "Play", "say", "reply", "callid", None, 5, ["play"]])
def test_from_wire_refuses_unknown_command_names(name: Any) -> None:
    with pytest.raises(CommandError) as info:
        from_wire(name, {})
    assert info.value.param == "command"
    assert info.value.value == name
    assert "wait_for_silence" in str(info.value)  # the message lists the known names


@pytest.mark.parametrize("params", [None, [], "seconds=5", 5, [("seconds", 5)]])
def test_from_wire_refuses_non_object_params(params: Any) -> None:
    with pytest.raises(CommandError) as info:
        from_wire("wait", params)
    assert (info.value.command, info.value.param) == ("wait", "params")


def test_from_wire_refuses_non_string_keys_with_a_command_error() -> None:
    with pytest.raises(CommandError) as info:
        from_wire("play", {1: 2, "media_id": 5})
    assert info.value.param == "params"


@pytest.mark.parametrize("key", ["seconds", "wait"])
def test_from_wire_wait_accepts_both_keys(key: str) -> None:
    cmd = from_wire("wait", {key: 7})
    assert cmd == wait(7)
    assert cmd.wire_params() == {WAIT_KEY: 7}


@pytest.mark.parametrize("key", ["seconds", "wait"])
@pytest.mark.parametrize("value", [0, 31, True, 7.0, "7", None])
def test_from_wire_wait_checks_the_value_under_either_key(key: str, value: Any) -> None:
    with pytest.raises(CommandError) as info:
        from_wire("wait", {key: value})
    assert info.value.command == "wait"
    assert "1..30" in str(info.value)


@pytest.mark.parametrize("params", [{"seconds": 5, "wait": 5}, {"duration": 5}, {}])
def test_from_wire_wait_refuses_other_shapes(params: dict[str, Any]) -> None:
    with pytest.raises(CommandError):
        from_wire("wait", params)


def test_from_wire_hangup_takes_no_params() -> None:
    assert from_wire("hangup", {}) == hangup()
    with pytest.raises(CommandError):
        from_wire("hangup", {"callid": 1})


def test_from_wire_does_not_alias_its_input() -> None:
    params = json.loads(json.dumps(WIRE_EXAMPLES["dialout"]))
    cmd = from_wire("dialout", params)
    params["targets"][0]["number"] = "+12"
    assert cmd.wire_params() == WIRE_EXAMPLES["dialout"]


def test_error_message_format() -> None:
    with pytest.raises(CommandError) as info:
        read(PROMPT, max_digits=0)
    assert str(info.value) == "read: parameter 'max_digits' must be an integer 1..20, got 0"
    assert re.search(r"\b1\.\.20\b", info.value.allowed)
