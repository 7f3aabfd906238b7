"""Media values (``rt_media``), TTS strings and ``Target``, checked against the spec (§4)."""

from __future__ import annotations

import json
import unicodedata

import pytest
from pydantic import ValidationError

from rtcontrol.errors import CommandError
from rtcontrol.media import DEFAULT_VOICE, MEDIA_ID_MAX, Target, check_media, tts

# §4.4: voice names are TTS_<LL>-<CC>_<NAME> in upper case; these three are in the spec.
GOOD_VOICES = ["TTS_EN-GB_DANIEL", "TTS_EN-GB_SERENA", "TTS_FR-FR_AUDREY", "TTS_DE-DE_HANS2"]
BAD_VOICES = [
    "tts_en-gb_serena",  # lowercase
    "TTS_EN-gb_SERENA",  # lowercase region
    "TTS_EN-GB_Serena",  # lowercase name
    "TTS_EN_SERENA",  # missing region
    "TTS_EN-GB",  # missing name
    "TTS_EN-GB_",  # empty name
    "EN-GB_SERENA",  # missing TTS_ prefix
    "TTS_ENG-GB_SERENA",  # 3-letter language
    "TTS_EN-GBR_SERENA",  # 3-letter country
    "TTS_EN-GB_SERENA ",  # trailing space
    "TTS_EN-GB_SERENA\n",  # trailing newline
    " TTS_EN-GB_SERENA",  # leading space
    "TTS_EN-GB_SER ENA",  # space inside
    "NUANCE_FR_AUDREY",  # legacy .NET name
    "NUANCE_FR_SEBASTIEN",
    "",
]
UNICODE_TEXTS = [
    "Bonjour, appuyez sur étoile",
    "e\u0301t\u00e9",  # decomposed and composed é: no normalisation may happen
    "Hello 😀 👋🏽",
    "你好\uff0c请按一",  # fullwidth comma
    "こんにちは",
    "Привет",
    "مرحبا",
    "tab\tnew\nline",
]


# --- tts() -------------------------------------------------------------------------


@pytest.mark.parametrize("voice", GOOD_VOICES)
def test_tts_accepts_good_voice_shapes(voice: str) -> None:
    assert tts("Hello", voice) == f"TTS|{voice}|Hello"


def test_tts_default_voice_is_serena() -> None:
    assert DEFAULT_VOICE == "TTS_EN-GB_SERENA"
    assert tts("Hi") == "TTS|TTS_EN-GB_SERENA|Hi"


@pytest.mark.parametrize("voice", [*BAD_VOICES, 5, b"TTS_EN-GB_SERENA"])
def test_tts_refuses_bad_voices(voice: object) -> None:
    with pytest.raises(CommandError) as info:
        tts("Hello", voice)  # type: ignore[arg-type]
    assert info.value.command == "tts"
    assert info.value.param == "voice"
    assert info.value.value == voice
    assert "TTS_LL-CC_NAME" in str(info.value)


@pytest.mark.parametrize("text", ["", " ", "\n\t ", None, 42, b"hi"])
def test_tts_refuses_empty_or_non_string_text(text: object) -> None:
    with pytest.raises(CommandError) as info:
        tts(text)  # type: ignore[arg-type]
    assert info.value.param == "text"


@pytest.mark.parametrize("text", UNICODE_TEXTS)
def test_tts_preserves_unicode_exactly(text: str) -> None:
    value = tts(text, "TTS_FR-FR_AUDREY")
    assert value == "TTS|TTS_FR-FR_AUDREY|" + text
    assert value.split("|", 2)[2] == text
    assert check_media("play", "media_id", value) == value
    # JSON round trip keeps every code point
    assert json.loads(json.dumps(value)) == value
    assert json.loads(json.dumps(value, ensure_ascii=False).encode("utf-8")) == value


def test_tts_does_not_normalise_text() -> None:
    decomposed = "e\u0301"
    assert unicodedata.normalize("NFC", decomposed) == "\u00e9"
    assert tts(decomposed) == "TTS|TTS_EN-GB_SERENA|e\u0301"
    assert str(check_media("play", "media_id", tts(decomposed))).endswith("e\u0301")


# --- check_media() -----------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 2, 131, MEDIA_ID_MAX])
@pytest.mark.parametrize("optional", [False, True])
def test_check_media_accepts_media_ids(value: int, optional: bool) -> None:
    assert check_media("play", "media_id", value, optional=optional) == value


def test_check_media_zero_refused_when_required() -> None:
    with pytest.raises(CommandError) as info:
        check_media("play", "media_id", 0)
    assert (info.value.command, info.value.param, info.value.value) == ("play", "media_id", 0)
    assert "play" in str(info.value)
    assert "media_id" in str(info.value)
    assert f"1..{MEDIA_ID_MAX}" in str(info.value)


def test_check_media_zero_accepted_when_optional() -> None:
    assert check_media("dialout", "whisper", 0, optional=True) == 0


@pytest.mark.parametrize(
    "value", [-1, MEDIA_ID_MAX + 1, True, False, 1.0, 0.0, None, [1], {"id": 1}, b"1"]
)
@pytest.mark.parametrize("optional", [False, True])
def test_check_media_refuses_bad_ids_and_types(value: object, optional: bool) -> None:
    with pytest.raises(CommandError) as info:
        check_media("conference", "welcome", value, optional=optional)
    assert info.value.command == "conference"
    assert info.value.param == "welcome"
    assert info.value.value == value or info.value.value is value


@pytest.mark.parametrize("voice", GOOD_VOICES)
def test_check_media_accepts_tts_strings(voice: str) -> None:
    value = f"TTS|{voice}|Hello world! How are you?"
    assert check_media("play", "media_id", value) == value


@pytest.mark.parametrize(
    "value",
    [
        *[f"TTS|{v}|Hello" for v in BAD_VOICES],
        "TTS|TTS_EN-GB_SERENA|",  # no text
        "TTS|TTS_EN-GB_SERENA|   ",  # blank text (tts() refuses it too)
        "TTS|TTS_EN-GB_SERENA",  # two parts
        "TTS||Hello",
        "tts|TTS_EN-GB_SERENA|Hello",  # lowercase prefix
        "TTS:TTS_EN-GB_SERENA:Hello",
        "Hello",
        "",
        "131",  # a media id must be a JSON number, not a string
    ],
)
def test_check_media_refuses_bad_strings(value: str) -> None:
    with pytest.raises(CommandError) as info:
        check_media("play", "media_id", value, optional=True)
    assert info.value.value == value
    assert "tts(text, voice)" in str(info.value)


def test_check_media_refuses_every_legacy_nuance_voice() -> None:
    for name in ("SEBASTIEN", "AUDREY", "VIRGINIE", "THOMAS"):
        with pytest.raises(CommandError):
            check_media("play", "media_id", f"TTS|NUANCE_FR_{name}|Bonjour")


# --- Target ------------------------------------------------------------------------


def test_target_spec_example() -> None:
    target = Target.model_validate({"number": "+447890123456", "timeout": 30})
    assert target.model_dump() == {"number": "+447890123456", "timeout": 30}
    assert json.loads(target.model_dump_json()) == {"number": "+447890123456", "timeout": 30}


def test_target_default_timeout() -> None:
    assert Target(number="+33123456789").timeout == 30


@pytest.mark.parametrize("timeout", [5, 6, 30, 299, 300])
def test_target_timeout_in_range(timeout: int) -> None:
    assert Target(number="+33123456789", timeout=timeout).timeout == timeout


@pytest.mark.parametrize(("timeout", "bound"), [(4, "5"), (301, "300"), (0, "5"), (-5, "5")])
def test_target_timeout_out_of_range(timeout: int, bound: str) -> None:
    with pytest.raises(ValidationError) as info:
        Target(number="+33123456789", timeout=timeout)
    message = str(info.value)
    assert "Target" in message
    assert "timeout" in message
    assert bound in message
    assert f"input_value={timeout}" in message


@pytest.mark.parametrize("timeout", [True, False, 30.0, 30.5, "30", None])
def test_target_timeout_mistyped(timeout: object) -> None:
    with pytest.raises(ValidationError):
        Target.model_validate({"number": "+33123456789", "timeout": timeout})


def test_target_timeout_float_refused_from_json() -> None:
    with pytest.raises(ValidationError):
        Target.model_validate_json('{"number": "+33123456789", "timeout": 30.0}')


@pytest.mark.parametrize("number", ["+12", "+33123456789", "+447890123456", "+123456789012345"])
def test_target_accepts_e164(number: str) -> None:
    assert Target(number=number).number == number


@pytest.mark.parametrize(
    "number",
    [
        "33123456789",  # no +
        "0033123456789",
        "+0123456789",  # country code cannot start with 0
        "+1",  # too short
        "+1234567890123456",  # 16 digits
        "+33 1 23 45 67 89",
        "+33-123456789",
        "+33123456789\n",
        "+\u0663\u0663\u0661\u0662\u0663",  # Arabic-Indic digits
        "",
        "+",
        "BLOCKED",
    ],
)
def test_target_refuses_bad_numbers(number: str) -> None:
    with pytest.raises(ValidationError) as info:
        Target(number=number)
    assert "E.164" in str(info.value)


@pytest.mark.parametrize("number", [33123456789, None, b"+33123456789"])
def test_target_number_must_be_a_string(number: object) -> None:
    with pytest.raises(ValidationError):
        Target.model_validate({"number": number})


def test_target_refuses_unknown_fields_and_is_frozen() -> None:
    with pytest.raises(ValidationError):
        Target.model_validate({"number": "+33123456789", "timeout": 30, "foo": 1})
    target = Target(number="+33123456789")
    with pytest.raises(ValidationError):
        target.timeout = 60  # type: ignore[misc]
    assert target.timeout == 30
