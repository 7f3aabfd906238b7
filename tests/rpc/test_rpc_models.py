"""Option and result models: range checks in the one error tree, tolerant App parsing."""

from __future__ import annotations

from typing import Any

import pytest
from rpc_fake import APP

from rtcontrol.errors import CommandError
from rtcontrol.rpc import AppInfo, BroadcastOptions, RealtimeAppParams, RealtimeOptions


def test_realtime_option_defaults() -> None:
    assert RealtimeOptions().model_dump() == {"cdr_field": "", "cli": "BLOCKED"}


@pytest.mark.parametrize("cdr_field", ["", "A" * 32, "abcXYZ019"])
def test_cdr_field_accepts_up_to_32_alphanumerics(cdr_field: str) -> None:
    assert RealtimeOptions(cdr_field=cdr_field).cdr_field == cdr_field


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"cdr_field": "A" * 33}, "options.cdr_field"),
        ({"cdr_field": "user_data"}, "options.cdr_field"),
        ({"cdr_field": "é"}, "options.cdr_field"),
        ({"cdr_field": None}, "options.cdr_field"),
        ({"cli": "0612345678"}, "options.cli"),
        ({"cli": "blocked"}, "options.cli"),
        ({"cli": "+0612345678"}, "options.cli"),
    ],
)
def test_realtime_options_refuse_bad_values(kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(CommandError) as info:
        RealtimeOptions(**kwargs)
    assert info.value.command == "calls.realtime"
    assert info.value.param == param
    assert info.value.value == next(iter(kwargs.values()))


def test_realtime_options_accept_e164_cli() -> None:
    assert RealtimeOptions(cli="+33123456789").cli == "+33123456789"


@pytest.mark.parametrize("loop", [1, 10])
def test_broadcast_loop_in_range(loop: int) -> None:
    assert BroadcastOptions(loop=loop).loop == loop


@pytest.mark.parametrize("loop", [0, 11, True, 2.0])
def test_broadcast_loop_out_of_range(loop: Any) -> None:
    with pytest.raises(CommandError) as info:
        BroadcastOptions(loop=loop)
    assert info.value.command == "calls.broadcast_1"
    assert info.value.param == "options.loop"


def test_options_are_frozen() -> None:
    options = RealtimeOptions()
    with pytest.raises(ValueError, match="frozen"):
        options.cli = "+33123456789"  # type: ignore[misc]


def test_app_params_leave_out_unset_fields() -> None:
    assert RealtimeAppParams(url="https://x.example/cb").to_wire() == {
        "url": "https://x.example/cb",
        "data_format": "JSON",
    }
    assert "hunter2" not in repr(RealtimeAppParams(password="hunter2"))


def test_app_info_flattens_the_app_object() -> None:
    info = AppInfo.model_validate(APP)
    assert (info.hash, info.name, info.type) == ("4346423A", "IVR", "REALTIME10")
    assert (info.url, info.login, info.password) == ("https://ivr.example.com/cb", "u", "p")
    assert info.is_realtime
    assert "password" not in repr(info)


def test_app_info_tolerates_nulls_and_unknown_fields() -> None:
    info = AppInfo.model_validate(
        {"hash": "X1", "name": None, "package": None, "p": None, "new_field": {"a": 1}}
    )
    assert (info.name, info.type, info.url) == ("", "", "")
    assert not info.is_realtime


def test_app_info_needs_a_hash() -> None:
    with pytest.raises(ValueError, match="hash"):
        AppInfo.model_validate({"name": "x"})
