"""Error messages that point at the fix: exact text, no doubled words, one line."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from rpc_fake import FakeAPI

from rtcontrol.errors import CommandError, ConfigurationError
from rtcontrol.media import Target
from rtcontrol.rpc import CallrClient, RealtimeAppParams, RealtimeOptions
from rtcontrol.rpc.models import allowed_phrase, command_error


async def test_bad_target_number_says_must_be_once(client: CallrClient, api: FakeAPI) -> None:
    with pytest.raises(CommandError) as info:
        await client.realtime("4346423A", "0612345678")
    assert str(info.value) == (
        "calls.realtime: parameter 'target.number' must be an E.164 number with a leading + "
        "(e.g. +33123456789), got '0612345678'"
    )
    assert api.requests == []  # refused before sending


def _target_error(**fields: Any) -> str:
    with pytest.raises(ValidationError) as info:
        Target(**fields)
    return str(command_error("calls.realtime", info.value, "target"))


@pytest.mark.parametrize(
    ("fields", "text"),
    [
        (
            {"number": "+0612"},
            "parameter 'target.number' must be an E.164 number with a leading + "
            "(e.g. +33123456789), got '+0612'",
        ),
        (
            {"number": "+33612345678", "timeout": 4},
            "parameter 'target.timeout' must be greater than or equal to 5, got 4",
        ),
        (
            {"number": "+33612345678", "timeout": "30"},
            "parameter 'target.timeout' must be a valid integer, got '30'",
        ),
        ({}, "parameter 'target.number' must be given (it is required), got {}"),
        (
            {"number": "+33612345678", "ring": 3},
            "parameter 'target.ring' must be left out (not a known field), got 3",
        ),
    ],
    ids=["validator", "range", "type", "missing", "extra"],
)
def test_target_messages_read_as_one_sentence(fields: dict[str, Any], text: str) -> None:
    assert _target_error(**fields) == "calls.realtime: " + text


def test_option_and_app_messages() -> None:
    with pytest.raises(CommandError) as info:
        RealtimeOptions(cli="0612345678")
    assert str(info.value) == (
        "calls.realtime: parameter 'options.cli' must be \"BLOCKED\" or an E.164 number "
        "such as +33123456789, got '0612345678'"
    )
    with pytest.raises(CommandError) as info:
        RealtimeOptions(cdr_field="user_data")
    assert str(info.value) == (
        "calls.realtime: parameter 'options.cdr_field' must be up to 32 letters or digits, "
        "got 'user_data'"
    )
    with pytest.raises(ValidationError) as bad:
        RealtimeAppParams(url="ftp://example.com/cb")
    assert str(command_error("apps.create", bad.value, "params")) == (
        "apps.create: parameter 'params.url' must be an http:// or https:// URL with a host, "
        "got 'ftp://example.com/cb'"
    )


@pytest.mark.parametrize(
    ("message", "phrase"),
    [
        ("Value error, must be an E.164 number", "an E.164 number"),
        ("Value error, Must be positive", "positive"),
        ("Input should be a valid string", "a valid string"),
        ("Field required", "given (it is required)"),
        ("Extra inputs are not permitted", "left out (not a known field)"),
        ("String should have at most 32 characters", "a string with at most 32 characters"),
        ("String should match pattern '^[A-Z]+$'", "a string matching pattern '^[A-Z]+$'"),
        ("Value error, up to 32 letters or digits", "up to 32 letters or digits"),
        ("Instance is frozen", "valid (instance is frozen)"),
    ],
)
def test_allowed_phrase_never_repeats_the_prefix(message: str, phrase: str) -> None:
    assert allowed_phrase(message) == phrase
    assert not f"must be {allowed_phrase(message)}".startswith("must be must be")


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://[::1/json-rpc/v1.1/", "Invalid IPv6 URL"),
        ("https://api.example:99999/", "Port out of range 0-65535"),
        ("http://u:hunter2@[::1", "Invalid IPv6 URL"),
    ],
)
def test_unparsable_api_url_is_a_configuration_error(url: str, reason: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CallrClient(api_url=url, api_key="k")
    message = str(info.value)
    assert message == f"api_url must be an http:// or https:// URL ({reason})"
    assert "\n" not in message
    assert "hunter2" not in message


def test_unparsable_api_url_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLR_API_URL", "http://[::1")
    monkeypatch.setenv("CALLR_API_KEY", "k")
    with pytest.raises(ConfigurationError, match=r"^api_url must be .*\(Invalid IPv6 URL\)$"):
        CallrClient.from_env()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "api_url must be an http:// or https:// URL"),
        ("https:///json-rpc/", "api_url must be an http:// or https:// URL"),
        ("https://u:p@api.example/", "api_url must not hold credentials: use api_key or login"),
    ],
)
def test_other_bad_api_urls(url: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        CallrClient(api_url=url, api_key="k")
    assert str(info.value) == message
