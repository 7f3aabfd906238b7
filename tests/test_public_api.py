"""The public surface is small, flat, and exactly what __all__ says."""

from __future__ import annotations

import inspect

import rtcontrol
from rtcontrol import errors


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name in dir(rtcontrol)
        if not name.startswith("_")
        and not inspect.ismodule(getattr(rtcontrol, name))
        and name not in ("annotations", "TYPE_CHECKING", "Any")
    }
    assert sorted(rtcontrol.__all__) == sorted(set(rtcontrol.__all__))
    assert set(rtcontrol.__all__) - {"__version__"} == public


def test_every_exported_name_resolves() -> None:
    for name in rtcontrol.__all__:
        assert getattr(rtcontrol, name) is not None, name


def test_every_exception_is_in_the_one_tree() -> None:
    for name in errors.__all__:
        exc = getattr(errors, name)
        assert issubclass(exc, errors.RtcontrolError), name
        assert getattr(rtcontrol, name) is exc, f"{name} is not re-exported"


def test_prompt_helpers_are_exported_with_their_shapes() -> None:
    from rtcontrol import prompts

    assert rtcontrol.ask is prompts.ask
    assert rtcontrol.answer is prompts.answer
    assert list(inspect.signature(rtcontrol.ask).parameters) == [
        "call",
        "prompt",
        "choices",
        "tries",
        "invalid",
        "silence",
        "timeout_ms",
    ]
    assert list(inspect.signature(rtcontrol.LiveCall.ask).parameters) == [
        "self",
        "prompt",
        "choices",
        "tries",
        "invalid",
        "silence",
        "timeout_ms",
    ]


def test_app_takes_a_voice_and_a_lifespan_and_is_an_async_context_manager() -> None:
    parameters = inspect.signature(rtcontrol.App).parameters
    assert parameters["voice"].default is None
    assert parameters["lifespan"].default is None
    assert inspect.iscoroutinefunction(rtcontrol.App.__aenter__)
    assert inspect.iscoroutinefunction(rtcontrol.App.__aexit__)
