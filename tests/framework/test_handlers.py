"""Handlers by decorator: both decorator forms, replies, and shapes refused at registration."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import (
    App,
    Call,
    Command,
    ConfigurationError,
    Flow,
    RegistrationError,
    hangup,
    play,
    read,
    tts,
    wait,
)

from .rig import APP_HASH, Platform, step_of

PROMPT = tts("Press 1 for sales")


async def test_decorators_without_parentheses(app: App, platform: Platform) -> None:
    seen: list[str] = []

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        seen.append("welcome")
        return read(PROMPT, max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        seen.append(f"choice:{call.digits}")
        return hangup()

    @app.on_hangup
    async def done(call: Call) -> None:
        seen.append("hangup")

    # The decorators return the function itself, so it stays callable and testable.
    assert welcome.__name__ == "welcome"
    assert choice.__name__ == "choice"

    line = platform.line()
    first = await line.start()
    assert first == {
        "command": "read",
        "command_id": "1:main:choice",
        "params": {"media_id": PROMPT, "max_digits": 1, "attempts": 10, "timeout_ms": 30000},
        "variables": {},
    }
    second = await line.report("1")
    assert second["command"] == "hangup"
    assert second["params"] == {}
    assert await line.hang_up() == {}
    assert seen == ["welcome", "choice:1", "hangup"]


async def test_decorators_with_parentheses(app: App, platform: Platform) -> None:
    seen: list[str] = []

    @app.on_inbound()
    async def welcome(call: Call) -> Command:
        seen.append("welcome")
        return play(PROMPT).then("renamed")

    @app.step("renamed")
    async def a_function_with_another_name(call: Call) -> Command:
        seen.append("renamed")
        return wait(1).then(plain)

    @app.step()
    async def plain(call: Call) -> Command:
        seen.append("plain")
        return hangup()

    @app.on_hangup()
    async def done(call: Call) -> None:
        seen.append("hangup")

    line = platform.line()
    assert step_of(await line.start()) == "renamed"
    assert step_of(await line.report("0")) == "plain"
    assert (await line.report(""))["command"] == "hangup"
    await line.hang_up()
    assert seen == ["welcome", "renamed", "plain", "hangup"]


async def test_outbound_decorator_both_forms(make_app: Callable[..., App]) -> None:
    app = make_app()

    @app.on_outbound
    async def greet(call: Call) -> Command:
        return hangup()

    other = make_app()

    @other.on_outbound(APP_HASH)
    async def greet_one_app(call: Call) -> Command:
        return hangup()

    # A second outbound handler for the same app is refused.
    with pytest.raises(RegistrationError, match="already registered"):

        @other.on_outbound(APP_HASH)
        async def again(call: Call) -> Command:
            return hangup()


async def test_first_reply_is_the_handlers_command_exactly(app: App, platform: Platform) -> None:
    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return play(tts("Hello")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return hangup()

    raw = await platform.post_raw(platform.line(7).body(status="INCOMING_CALL"))
    assert raw == (
        b'{"command":"play","command_id":"1:main:bye",'
        b'"params":{"media_id":"TTS|TTS_EN-GB_SERENA|Hello"},"variables":{}}'
    )


# ---------------------------------------------------------------- shapes refused


async def no_argument() -> Command:
    return hangup()


async def two_arguments(call: Any, extra: Any) -> Command:
    return hangup()


async def required_keyword(call: Any, *, lang: str) -> Command:
    return hangup()


@pytest.mark.parametrize(
    ("handler", "advice"),
    [
        (no_argument, "must take exactly one argument, the call: `async def no_argument(call)`"),
        (two_arguments, "must take exactly one argument, the call"),
        (required_keyword, "must take exactly one argument, the call"),
    ],
)
@pytest.mark.parametrize("decorator", ["on_inbound", "on_outbound", "step", "on_hangup"])
def test_wrong_shaped_handlers_are_refused_with_advice(
    make_app: Callable[..., App], decorator: str, handler: Any, advice: str
) -> None:
    app = make_app()
    with pytest.raises(RegistrationError) as info:
        getattr(app, decorator)(handler)
    assert advice in str(info.value)


@pytest.mark.parametrize(
    ("decorator", "advice"),
    [
        ("on_inbound", "on_inbound takes an app hash string or nothing"),
        ("on_outbound", "on_outbound takes an app hash string or nothing"),
        ("step", "step takes a step name string or nothing"),
        ("on_hangup", "on_hangup 42 is not callable; pass an `async def` function"),
        ("on_break", "on_break 42 is not callable"),
        ("on_result", "on_result 42 is not callable"),
    ],
)
def test_non_functions_are_refused(
    make_app: Callable[..., App], decorator: str, advice: str
) -> None:
    with pytest.raises(RegistrationError) as info:
        getattr(make_app(), decorator)(42)
    assert advice in str(info.value)


def test_optional_extra_arguments_are_accepted(make_app: Callable[..., App]) -> None:
    app = make_app()

    @app.step
    async def with_default(call: Call, retries: int = 3, *, lang: str = "en") -> Command:
        return hangup()

    assert app.flow_spec("main").step("with_default") is with_default


def test_duplicate_and_invalid_registrations_are_refused(make_app: Callable[..., App]) -> None:
    app = make_app()

    @app.on_inbound
    async def first(call: Call) -> Command:
        return hangup()

    with pytest.raises(RegistrationError, match="on_inbound is already registered for all apps"):

        @app.on_inbound
        async def second(call: Call) -> Command:
            return hangup()

    @app.step
    async def choice(call: Call) -> Command:
        return hangup()

    with pytest.raises(RegistrationError, match="'choice' is already registered"):
        app.step("choice")(first)
    with pytest.raises(RegistrationError, match="invalid"):
        app.step("not a name")(first)
    with pytest.raises(RegistrationError, match="app hash string"):
        app.on_inbound(42)  # type: ignore[call-overload]

    @app.on_hangup
    async def done(call: Call) -> None:
        pass

    with pytest.raises(RegistrationError, match="on_hangup is already registered"):

        @app.on_hangup
        async def done_again(call: Call) -> None:
            pass


def test_bad_hold_and_fallback_are_refused(make_app: Callable[..., App]) -> None:
    with pytest.raises(ConfigurationError, match="hold must be a command that keeps the call up"):
        make_app(hold=hangup())
    with pytest.raises(ConfigurationError, match="fallback must be a command"):
        make_app(fallback="sorry")


class NoStart(Flow):
    async def choice(self, call: Call) -> Command:
        return hangup()


class BadStep(Flow):
    async def start(self, call: Call) -> Command:
        return hangup()

    async def choice(self, call: Call, extra: int) -> Command:
        return hangup()


class WithHelpers(Flow):
    """Plain methods, static methods and private coroutines are not steps."""

    def prompt(self, text: str, other: str) -> str:
        return text + other

    @staticmethod
    def helper(a: int, b: int) -> int:
        return a + b

    async def _private(self, a: int, b: int) -> None:
        pass

    async def start(self, call: Call) -> Command:
        return hangup()


@pytest.mark.parametrize(
    ("flow", "advice"),
    [
        (NoStart, "flow NoStart has no start step: add `async def start(self, call)`"),
        (BadStep, "step BadStep.choice must take exactly one argument, the call"),
        (object, "is not a Flow subclass or instance"),
    ],
)
def test_wrong_shaped_flows_are_refused_with_advice(
    make_app: Callable[..., App], flow: Any, advice: str
) -> None:
    with pytest.raises(RegistrationError) as info:
        make_app().add_flow(flow)
    assert advice in str(info.value)


def test_helpers_of_a_flow_are_not_steps(make_app: Callable[..., App]) -> None:
    spec = make_app().add_flow(WithHelpers)
    assert set(spec.steps) == {"start"}
    assert spec.hooks == {}


@pytest.mark.parametrize("name", ["has:colon", "1starts_with_digit", "a" * 65, "sp ace", "é", "-"])
def test_bad_flow_names_are_refused(make_app: Callable[..., App], name: str) -> None:
    with pytest.raises(RegistrationError, match="must be 1-64 letters"):
        make_app().add_flow(WithHelpers, name=name)


def test_bad_flow_name_on_the_class_is_refused(make_app: Callable[..., App]) -> None:
    class Colon(WithHelpers):
        name = "sales:menu"  # ':' separates the parts of command_id

    with pytest.raises(RegistrationError, match="flow name 'sales:menu' must be 1-64 letters"):
        make_app().add_flow(Colon)


def test_duplicate_flow_names_are_refused(make_app: Callable[..., App]) -> None:
    app = make_app()
    app.add_flow(WithHelpers)
    with pytest.raises(RegistrationError, match="a flow named 'WithHelpers' is already registered"):
        app.add_flow(WithHelpers)
    with pytest.raises(RegistrationError, match="a flow named 'main' is already registered"):
        app.add_flow(WithHelpers, name="main")  # the flow of function handlers
    app.add_flow(WithHelpers, name="helpers-2")  # another name is fine
    assert app.has_flow("helpers-2")
