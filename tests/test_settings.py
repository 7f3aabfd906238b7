from __future__ import annotations

import pytest

from rtcontrol import ConfigurationError, Settings


def test_environment_is_read_and_typed() -> None:
    s = Settings.from_env(
        {
            "RTCONTROL_CALLBACK_LOGIN": "platform",
            "RTCONTROL_CALLBACK_PASSWORD": "s3cret",
            "RTCONTROL_HANDLER_BUDGET": "2.5",
            "RTCONTROL_STORE_URL": "redis://127.0.0.1:6379/0",
            "WEB_CONCURRENCY": "3",
        }
    )
    assert s.callback_login == "platform"
    assert s.handler_budget == 2.5
    assert s.store_url.startswith("redis://")
    assert s.workers == 3
    assert "s3cret" not in repr(s)


def test_arguments_win_over_environment() -> None:
    s = Settings.from_env({"RTCONTROL_HANDLER_BUDGET": "2.5"}, handler_budget=1.0)
    assert s.handler_budget == 1.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RTCONTROL_HANDLER_BUDGET", "5.5"),
        ("RTCONTROL_MAX_BODY", "abc"),
        ("RTCONTROL_WORKERS", "0"),
    ],
)
def test_invalid_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_unknown_store_scheme_is_refused_without_echoing_the_url() -> None:
    from rtcontrol.store import open_store

    with pytest.raises(ConfigurationError) as info:
        open_store("postgres://user:hunter2@db/0")
    assert "hunter2" not in str(info.value)
