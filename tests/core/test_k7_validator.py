"""K7: everything sent passes the one validator; a violation is the fallback, logged once.

Each reply body must be strict JSON (no NaN), a known command with valid parameters,
and ``variables`` the platform can echo back under our own body limit.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, play, read, tts
from rtcontrol.commands import from_wire
from rtcontrol.core.ports import Reply
from rtcontrol.events import Disposition
from rtcontrol.protocol import RTResponse
from rtcontrol.validate import check_outgoing

from .kit import Recorder, body, first, is_fallback, logged, report, within

CALL = 77_001
CALLER_VARIABLES = {"lang": "fr", "tries": 1}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def set_variable(key: str, value: Any) -> Callable[[Call], Any]:
    def fault(call: Call) -> Any:
        call.variables[key] = value
        return play(tts("ok"))

    return fault


def returns(value: Any) -> Callable[[Call], Any]:
    return lambda call: value


FAULTS: dict[str, tuple[Callable[[Call], Any], tuple[str, ...]]] = {
    "nan-variable": (set_variable("score", float("nan")), ("call.variables", "non-finite")),
    "infinite-variable": (set_variable("score", float("inf")), ("call.variables", "non-finite")),
    "90KiB-variables": (
        set_variable("blob", "x" * (90 * 1024)),
        ("call.variables", "too large"),
    ),
    "40-deep-variables": (set_variable("deep", nested(40)), ("call.variables", "too deeply")),
    "set-variable": (set_variable("tags", {"a"}), ("call.variables", "set is not JSON")),
    "int-key-variable": (set_variable("map", {1: "a"}), ("call.variables", "keys must be")),
    "wait-nan": (
        returns(Command("wait", {"seconds": float("nan")})),
        ("invalid command", "'seconds'"),
    ),
    "bogus-command": (returns(Command("bogus")), ("invalid command", "'command'")),
    "play-without-media": (returns(Command("play", {})), ("invalid command", "play")),
    "none": (returns(None), ("returned NoneType, not a command",)),
    "string": (returns("hangup"), ("returned str, not a command",)),
    "unknown-step": (
        returns(play(tts("ok")).then("nowhere")),
        ("step 'nowhere'", "does not have"),
    ),
}


def assert_sendable(reply: Reply, max_body: int = 64 * 1024) -> dict[str, Any]:
    """The reply passes every check the validator applies to what we send."""
    sent = body(reply)  # strict JSON: NaN/Infinity raise
    RTResponse.model_validate(sent)
    from_wire(sent["command"], sent["params"])
    check_outgoing(sent["variables"], max_body)
    return sent


@pytest.mark.parametrize("fault", list(FAULTS))
async def test_a_reply_the_validator_refuses_becomes_the_fallback_logged_once(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    make, causes = FAULTS[fault]
    app = make_app()
    events = Recorder(app)

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(step)

    @app.step
    async def step(call: Call) -> Any:
        return make(call)

    r0 = await app.handle_callback(first(CALL, variables=CALLER_VARIABLES))
    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await app.handle_callback(report(CALL, r0, "1234"))

    sent = assert_sendable(reply)
    assert is_fallback(reply)
    assert sent["variables"] == CALLER_VARIABLES  # the caller's, not the handler's
    assert events.last(CALL) is Disposition.FALLBACK
    errors = logged(caplog)
    assert len(errors) == 1, errors
    assert "main.step" in errors[0]
    for cause in causes:
        assert cause in errors[0]
    assert "answering with the fallback" in errors[0]


@pytest.mark.parametrize("fault", ["nan-variable", "90KiB-variables", "wait-nan", "bogus-command"])
async def test_a_slow_handler_refused_by_the_validator_delivers_the_fallback(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, fault: str
) -> None:
    make, causes = FAULTS[fault]
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Any:
        await gate.wait()
        return make(call)

    caplog.set_level(logging.INFO, logger="rtcontrol")
    try:
        hold = await within(app.handle_callback(first(CALL, variables=CALLER_VARIABLES)))
        assert_sendable(hold)
    finally:
        gate.set()
    await within(app.settle())
    reply = await app.handle_callback(report(CALL, hold))
    sent = assert_sendable(reply)
    assert is_fallback(reply)
    assert sent["variables"] == CALLER_VARIABLES
    errors = logged(caplog)
    assert len(errors) == 1, errors
    assert any(cause in errors[0] for cause in causes)


async def test_valid_hand_built_command_and_large_but_allowed_variables_pass(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.variables["blob"] = "x" * (40 * 1024)
        call.variables["deep"] = nested(30)
        return Command("wait", {"seconds": 3})

    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await app.handle_callback(first(CALL))
    sent = assert_sendable(reply)
    assert sent["command"] == "wait"
    assert sent["params"] == {"seconds": 3}
    assert len(sent["variables"]["blob"]) == 40 * 1024
    assert logged(caplog) == []


async def test_a_handler_cannot_forge_the_replay_envelope(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        call.variables["_rtc"] = {"replay": ["read", "9:main:start", "1", "", "UP"], "n": 0}
        return read(tts("Code?"), max_digits=4).then(start)

    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await app.handle_callback(first(CALL, variables={"lang": "fr"}))
    sent = assert_sendable(reply)
    assert sent["variables"] == {"lang": "fr"}
    assert logged(caplog) == []


def mutate_nested(call: Call, how: str) -> None:
    """Change the caller's nested variables in place (no new top-level key)."""
    profile = call.variables["profile"]
    if how == "nan":
        profile["score"] = float("nan")
    elif how == "big":
        profile["history"].append("x" * (90 * 1024))
    else:
        profile["tree"] = nested(40)


NESTED = {"lang": "fr", "profile": {"score": 1, "history": []}}
NESTED_CAUSES = {"nan": "non-finite", "big": "too large", "deep": "too deeply"}


@pytest.mark.parametrize("how", list(NESTED_CAUSES))
async def test_nested_variables_changed_in_place_are_checked_too(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, how: str
) -> None:
    """``call.variables["profile"]["score"] = nan``: the top level compares equal to what
    came in (same nested object), yet what goes out is not what came in."""
    app = make_app()

    @app.on_inbound
    async def start(call: Call) -> Command:
        mutate_nested(call, how)
        return play(tts("ok"))

    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await app.handle_callback(first(CALL, variables=copy.deepcopy(NESTED)))
    sent = assert_sendable(reply)
    assert is_fallback(reply)
    assert sent["variables"] == NESTED  # the caller's variables, as they came
    errors = logged(caplog)
    assert len(errors) == 1, errors
    assert NESTED_CAUSES[how] in errors[0]


async def test_fallback_after_a_handler_raised_carries_the_variables_as_they_came(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.on_inbound
    async def start(call: Call) -> Command:
        mutate_nested(call, "nan")
        raise RuntimeError("crm down")

    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await app.handle_callback(first(CALL, variables=copy.deepcopy(NESTED)))
    sent = assert_sendable(reply)
    assert is_fallback(reply)
    assert sent["variables"] == NESTED
