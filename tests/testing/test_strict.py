"""Strict mode: a handler failure fails the test with the handler's traceback.

Each failing kind (exception, non-command, missing step, straight-line flow error,
``on_hangup``) is shown to raise :class:`HandlerFailed`; ``strict=False`` and
``expect_fallback()`` are shown to let the call end normally.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

from rtcontrol import App, Call, Command, LiveCall, hangup, play, read, tts
from rtcontrol.emulator import Callee, Press
from rtcontrol.testing import EmulatedPlatform, HandlerFailed

SPEED = 400.0
APOLOGY = "We are sorry, something went wrong. Please call again later."


def menu(choice: Any) -> App:
    """A read, then ``choice`` (the step under test), then a goodbye."""
    app = App()

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1).then("choice")

    app.step(choice)

    @app.step
    async def goodbye(call: Call) -> Command:
        return hangup()

    return app


async def choice_raises(call: Call) -> Command:
    return {"1": play(tts("One")).then("goodbye")}[call.digits or ""]  # KeyError but for 1


async def choice_returns_text(call: Call) -> Any:
    return "play hello"


async def choice_forgets_then(call: Call) -> Command:
    return play(tts("One"))  # no .then(goodbye): its result has no step to go to


def choice(fn: Any) -> Any:
    fn.__name__ = "choice"
    return fn


@pytest.mark.parametrize("over", ["asgi", "http"])
async def test_an_exception_fails_the_call_with_the_handler_traceback(
    over: Literal["asgi", "http"],
) -> None:
    app = menu(choice(choice_raises))
    async with EmulatedPlatform(app, over=over, speed=SPEED, strict=True) as p:
        with pytest.raises(HandlerFailed) as info:
            await p.call(Callee(actions=[Press("2")]))
        (failure,) = info.value.failures
    text = str(info.value)
    assert failure.step == "choice"
    assert "handler main.choice raised" in failure.message
    assert failure.traceback.startswith("Traceback (most recent call last):")
    assert "in choice_raises" in failure.traceback
    assert failure.traceback.rstrip().endswith("KeyError: '2'")
    assert f"a handler failed on call {failure.callid}" in text
    assert "KeyError: '2'" in text
    assert info.value.transcript is not None
    assert info.value.transcript.callid == failure.callid
    assert "expect_fallback" in text  # the way out is in the message


@pytest.mark.parametrize(
    ("fn", "says"),
    [
        (choice_returns_text, "not a command"),
        (choice_forgets_then, "on_result"),
    ],
)
async def test_a_non_command_or_a_missing_step_fails_the_call(fn: Any, says: str) -> None:
    app = menu(choice(fn))
    async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
        with pytest.raises(HandlerFailed) as info:
            await p.call(Callee(actions=[Press("1")]))
    assert any(says in f.message for f in info.value.failures), str(info.value)
    assert {f.step for f in info.value.failures} <= {"choice", "on_result", None}


async def test_not_strict_the_caller_hears_the_apology_and_the_call_ends() -> None:
    app = menu(choice(choice_raises))
    async with EmulatedPlatform(app, speed=SPEED) as p:  # strict=False is the default here
        t = await p.call(Callee(actions=[Press("2")]))
    assert t.said == ["Press 1", APOLOGY]
    assert t.executed == ["read", "play", "hangup"]
    assert t.errors == []  # the platform saw nothing wrong: only strict mode tells


async def test_expect_fallback_absorbs_and_returns_the_failures() -> None:
    app = menu(choice(choice_raises))
    async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
        with p.expect_fallback() as failures:
            t = await p.call(Callee(actions=[Press("2")]))
        assert [f.step for f in failures] == ["choice"]
        assert "KeyError" in failures[0].traceback
        assert t.said[-1] == APOLOGY
        # Outside the block, strict mode is back.
        with pytest.raises(HandlerFailed):
            await p.call(Callee(actions=[Press("3")]))


async def test_expect_fallback_fails_when_nothing_failed() -> None:
    app = menu(choice(choice_raises))
    async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
        with pytest.raises(AssertionError, match="expected a handler failure"), p.expect_fallback():
            t = await p.call(Callee(actions=[Press("1")]))
    assert t.said == ["Press 1", "One"]


async def test_on_hangup_failing_after_the_call_fails_when_the_platform_closes() -> None:
    app = App()

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return hangup()

    @app.on_hangup
    async def bye(call: Call) -> None:
        raise RuntimeError("CRM down")

    with pytest.raises(HandlerFailed) as info:
        async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
            await p.call(Callee())
    (failure,) = info.value.failures
    assert "on_hangup of main failed" in failure.message
    assert "RuntimeError: CRM down" in failure.traceback
    assert failure.step is None  # nothing was answered with the fallback


async def test_a_failure_is_noted_on_the_exception_that_leaves_the_block() -> None:
    app = menu(choice(choice_raises))

    async def test_body() -> None:
        async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
            handle = await p.start(Callee(actions=[Press("2")]))
            await handle.call.wait()  # the emulator's own wait: no strict check
            raise RuntimeError("the test's own error")

    with pytest.raises(RuntimeError, match="the test's own error") as info:
        await test_body()
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert "Also, when the platform closed" in notes
    assert "KeyError: '2'" in notes


async def test_a_straight_line_flow_that_raises_fails_the_call() -> None:
    app = App()

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        digits = await call.read(tts("Your number?"), max_digits=2)
        if digits == "42":
            raise LookupError("no customer 42")
        await call.play(tts("Hello"))

    async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
        with pytest.raises(HandlerFailed) as info:
            await p.call(Callee(actions=[Press("42")]))
    assert "LookupError: no customer 42" in str(info.value)


async def test_a_straight_line_flow_error_without_traceback_fails_the_call() -> None:
    """A replay that asks for another command (DeterminismError): one ERROR line, no
    traceback, and still a failed test. The replay is forced by dropping the worker's
    suspended copy of the flow while the call waits in its first command."""
    app = App()
    prompts = iter(["First run", "Second run"])

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        await call.wait(2)
        await call.play(tts(next(prompts)))  # another prompt on a replay
        await call.play(tts("Bye"))

    async with EmulatedPlatform(app, speed=SPEED, strict=True) as p:
        handle = await p.start(Callee())
        await handle.wait_for("play")
        app.registry.sessions.pop(handle.callid)  # as if the next callback hit another worker
        with pytest.raises(HandlerFailed) as info:
            await handle.ended()
    (failure, *_) = info.value.failures
    assert "DeterminismError" in failure.message, str(info.value)
    assert failure.traceback == ""
