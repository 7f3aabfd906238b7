"""K7 (adversarial): everything sent passes the validator."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from rtcontrol import App, Call, Command, play, read, tts, wait
from rtcontrol.errors import ConfigurationError, OutputError, RtcontrolError
from rtcontrol.events import Disposition
from tests.core.kit import (
    FakeControl,
    Recorder,
    SpyStore,
    body,
    first,
    is_fallback,
    report,
    step_of,
    within,
)

from .helpers import assert_sendable

CALL = 97_001
CALLER = {"lang": "fr", "price": 10, "profile": {"score": 1}}


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def step_app(app: App, fault: Callable[[Call], Any]) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(step)

    @app.step
    async def step(call: Call) -> Any:
        return fault(call)


@pytest.mark.parametrize(
    "where",
    ["top", "nested"],
)
async def test_decimal_equal_to_the_received_value_is_not_sent_as_a_string(
    make_app: Callable[..., App], where: str
) -> None:
    """A handler replaces a received int with an equal Decimal (a DB driver's type). The
    validator refuses Decimal; the engine must not skip it because the values compare
    equal, nor let the encoder turn 10 into "10"."""

    def fault(call: Call) -> Command:
        if where == "top":
            call.variables["price"] = Decimal("10")
        else:
            call.variables["profile"]["score"] = Decimal("1")
        return play(tts("ok"))

    app = make_app()
    step_app(app, fault)
    r0 = await app.handle_callback(first(CALL, variables=dict(CALLER)))
    reply = await app.handle_callback(report(CALL, r0, "1"))
    sent = assert_sendable(reply)
    assert isinstance(sent["variables"]["price"], int)
    assert isinstance(sent["variables"]["profile"]["score"], int)
    assert is_fallback(reply)


@pytest.mark.parametrize("shape", ["cycle", "deep-2000"])
async def test_state_that_cannot_be_encoded_for_recursion_gets_the_fallback(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    def fault(call: Call) -> Command:
        if shape == "cycle":
            call.state["me"] = call.state
        else:
            call.state["tree"] = nested(2000)
        return play(tts("ok"))

    app = make_app(lock_lease=5.0)
    step_app(app, fault)
    r0 = await app.handle_callback(first(CALL))
    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await within(app.handle_callback(report(CALL, r0, "1")))  # must not raise
    assert is_fallback(reply)
    assert (await store.record(CALL))["state"] == {"n": 1}
    assert await store.lock_is_free(CALL)


async def test_cyclic_state_behind_the_hold_delivers_the_fallback(
    make_app: Callable[..., App], control: FakeControl, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await gate.wait()
        call.state["me"] = call.state
        return play(tts("late"))

    caplog.set_level(logging.INFO)
    hold = await within(app.handle_callback(first(CALL)))
    gate.set()
    await within(app.settle())
    assert "background task failed" not in caplog.text
    assert control.breaks == [CALL]  # delivered (the fallback), via the break
    assert is_fallback(await app.handle_callback(report(CALL, hold)))


async def test_own_interrupt_command_to_a_step_that_does_not_exist_is_not_sent(
    make_app: Callable[..., App],
) -> None:
    """interrupt() from another task checks the step exists; from the call's own handler
    the command replaces the reply, and must be checked the same way."""
    app = make_app()
    raised: list[BaseException] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        try:
            await call.interrupt(play(tts("x")).then("nowhere"))
        except RtcontrolError as exc:
            raised.append(exc)
        return play(tts("mine"))

    reply = await app.handle_callback(first(CALL))
    assert_sendable(reply)
    assert step_of(reply) != "nowhere", "sent a command whose result goes to no step"


@pytest.mark.parametrize(
    ("kwargs"),
    [
        {"fallback": Command("bogus")},
        {"fallback": Command("play", {})},
        {"fallback": play(tts("Sorry")).then("nowhere")},
        {"hold": Command("wait", {"seconds": float("nan")})},
        {"hold": Command("wait", {"seconds": -3})},
    ],
    ids=["fallback-bogus", "fallback-no-media", "fallback-to-nowhere", "hold-nan", "hold-neg"],
)
async def test_configured_hold_and_fallback_pass_the_validator_or_are_refused(
    make_app: Callable[..., App], kwargs: dict[str, Any]
) -> None:
    try:
        app = make_app(handler_budget=0.3, **kwargs)
    except (ConfigurationError, OutputError, RtcontrolError, ValueError):
        return  # refused at start-up: fine
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        if "hold" in kwargs:
            await gate.wait()
        raise RuntimeError("fails, so the fallback goes out")

    try:
        reply = await within(app.handle_callback(first(CALL)))
    finally:
        gate.set()
    assert_sendable(reply)
    if "fallback" in kwargs and kwargs["fallback"].step:
        assert step_of(reply) != "nowhere"


BAD_COMMANDS = {
    "hangup-extra-param": Command("hangup", {"extra": 1}),
    "wait-bool": Command("wait", {"seconds": True}),
    "wait-huge": Command("wait", {"seconds": 10**100}),
    "wait-string": Command("wait", {"seconds": "5"}),
    "wait-both-keys": Command("wait", {"seconds": 3, "wait": 3}),
    "play-bytes": Command("play", {"media_id": b"TTS|x"}),
    "read-nan": Command("read", {"media_id": "TTS|TTS_EN-GB_SERENA|x", "max_digits": float("nan")}),
    "to-builtin-hold": Command("wait", {"seconds": 3}, "@hold"),
    "to-builtin-bye": Command("wait", {"seconds": 3}, "@bye"),
    "to-hook": Command("wait", {"seconds": 3}, "on_hangup"),
    "to-bad-name": Command("wait", {"seconds": 3}, "a:b"),
    "params-not-mapping": Command("wait", ()),  # type: ignore[arg-type]
    "name-not-str": Command(7, {}),  # type: ignore[arg-type]
    "dialout-empty": Command("dialout", {"target": []}),
}


@pytest.mark.parametrize("name", list(BAD_COMMANDS))
async def test_hand_built_bad_command_gets_the_fallback(
    make_app: Callable[..., App], name: str
) -> None:
    app = make_app()
    events = Recorder(app)
    step_app(app, lambda call: BAD_COMMANDS[name])
    r0 = await app.handle_callback(first(CALL, variables={"lang": "fr"}))
    reply = await within(app.handle_callback(report(CALL, r0, "1")))
    sent = assert_sendable(reply)
    assert is_fallback(reply)
    assert sent["variables"] == {"lang": "fr"}
    assert events.last(CALL) is Disposition.FALLBACK


def deep_list(depth: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(depth):
        value = [value]
    return value


class Opaque:
    def __repr__(self) -> str:
        return "Opaque()"


VARIABLE_FAULTS: dict[str, Callable[[Call], None]] = {
    "bytes": lambda call: call.variables.__setitem__("b", b"x"),
    "object": lambda call: call.variables.__setitem__("o", Opaque()),
    "top-int-key": lambda call: call.variables.__setitem__(1, "x"),  # type: ignore[index]
    "tuple-key": lambda call: call.variables.__setitem__("m", {(1, 2): "x"}),
    "neg-inf-in-list": lambda call: call.variables.__setitem__("l", [1, float("-inf")]),
    "deep-list": lambda call: call.variables.__setitem__("l", deep_list(40)),
    "cycle": lambda call: call.variables.__setitem__("me", call.variables),
    "huge-int": lambda call: call.variables.__setitem__("n", 10**5000),
}


@pytest.mark.parametrize("name", list(VARIABLE_FAULTS))
async def test_unsendable_variables_get_the_fallback(
    make_app: Callable[..., App], name: str
) -> None:
    def fault(call: Call) -> Command:
        VARIABLE_FAULTS[name](call)
        return play(tts("ok"))

    app = make_app()
    step_app(app, fault)
    r0 = await app.handle_callback(first(CALL, variables={"lang": "fr"}))
    reply = await within(app.handle_callback(report(CALL, r0, "1")))
    sent = assert_sendable(reply)
    assert is_fallback(reply)
    assert sent["variables"] == {"lang": "fr"}


async def test_tuples_in_variables_go_out_as_arrays(make_app: Callable[..., App]) -> None:
    def fault(call: Call) -> Command:
        call.variables["pair"] = (1, "a")
        return play(tts("ok"))

    app = make_app()
    step_app(app, fault)
    r0 = await app.handle_callback(first(CALL))
    sent = assert_sendable(await app.handle_callback(report(CALL, r0, "1")))
    assert sent["variables"]["pair"] == [1, "a"]


@pytest.mark.parametrize("how", ["reassign", "own-interrupt", "slow"])
async def test_rtc_forged_by_a_handler_never_goes_out(
    make_app: Callable[..., App], how: str
) -> None:
    forged = {"replay": ["read", "9:main:step", "1", "", "UP"], "n": 0, "t": 0}
    app = make_app(handler_budget=0.3)
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        if how == "reassign":
            call.variables = {"_rtc": forged, "x": 1}
        elif how == "own-interrupt":
            call.variables["_rtc"] = forged
            await call.interrupt(wait(2))
        else:
            call.variables["_rtc"] = forged
            await gate.wait()
        return play(tts("ok"))

    reply = await within(app.handle_callback(first(CALL, variables={"lang": "fr"})))
    if how == "slow":
        assert "_rtc" not in body(reply)["variables"]
        gate.set()
        await within(app.settle())
        reply = await app.handle_callback(report(CALL, reply))
    sent = assert_sendable(reply)
    assert "_rtc" not in sent["variables"]


async def test_interrupt_with_a_hand_built_bad_command_records_nothing_and_sends_no_break(
    make_app: Callable[..., App], control: FakeControl, store: SpyStore
) -> None:
    app = make_app()
    step_app(app, lambda call: play(tts("ok")))
    await app.handle_callback(first(CALL))
    before = await store.record(CALL)
    with pytest.raises(RtcontrolError):
        await app.interrupt(CALL, then=Command("wait", {"seconds": float("inf")}))
    assert control.breaks == []
    assert await store.record(CALL) == before
