"""K6: whatever a flow raises or awaits, the caller gets a valid command or the
fallback, never an exception out of handle_callback."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, LiveCall, hangup, tts

from .helpers import CALL, command, first, is_fallback, logged, media, report, within


class Custom(BaseException):
    pass


@pytest.mark.parametrize(
    "exc",
    [asyncio.CancelledError, Custom, GeneratorExit],
    ids=["CancelledError", "BaseException-subclass", "GeneratorExit"],
)
async def test_a_flow_raising_a_base_exception_gets_the_fallback(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, exc: type[BaseException]
) -> None:
    app = make_app()

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        await call.play(tts("x"))
        raise exc("raised by the flow's own code")

    r0 = await app.handle_callback(first(CALL))
    r1 = await within(app.handle_callback(report(CALL, r0)))
    assert is_fallback(r1)
    assert any("raised by the flow" in m or exc.__name__ in m for m in logged(caplog))


@pytest.mark.parametrize(
    "exc", [asyncio.CancelledError, Custom], ids=["CancelledError", "BaseException-subclass"]
)
async def test_step_style_for_comparison(
    make_app: Callable[..., App], exc: type[BaseException]
) -> None:
    app = make_app()

    @app.on_inbound
    async def start(call: Call) -> Command:
        raise exc("raised by the handler")

    r0 = await within(app.handle_callback(first(CALL)))
    assert is_fallback(r0)


async def test_asyncio_wait_for_inside_the_flow(make_app: Callable[..., App]) -> None:
    app = make_app(handler_budget=3.0)
    seen: list[str] = []

    async def slow() -> str:
        await asyncio.sleep(1.0)
        return "x"

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        try:
            await asyncio.wait_for(slow(), 0.05)
        except TimeoutError:
            seen.append("timeout")
        await call.play(tts("go on"))

    r0 = await within(app.handle_callback(first(CALL)))
    assert seen == ["timeout"]
    assert media(r0) == "go on"


async def test_asyncio_timeout_around_a_command_spanning_callbacks(
    make_app: Callable[..., App],
) -> None:
    """The timer is set in the first callback's task; the command's report comes in a
    later callback. Whatever the semantics, nothing may escape handle_callback."""
    app = make_app(handler_budget=3.0)
    seen: list[Any] = []

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        try:
            async with asyncio.timeout(0.05):
                seen.append(await call.read(tts("number"), max_digits=4))
        except TimeoutError:
            seen.append("timeout")
        await call.play(tts("after"))

    r0 = await app.handle_callback(first(CALL))
    await asyncio.sleep(0.2)  # the timer fires while the flow waits for the report
    r1 = await within(app.handle_callback(report(CALL, r0, "12")))
    assert command(r1) == "play"
    assert seen in (["12"], ["timeout"])


async def test_gather_of_two_commands_gets_the_fallback_with_a_reason(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        await asyncio.gather(call.play(tts("a")), call.play(tts("b")))

    r0 = await within(app.handle_callback(first(CALL)))
    assert is_fallback(r0)
    assert logged(caplog)


class Odd:
    def __await__(self) -> Any:
        yield 42  # not a Future
        return "odd"


async def test_awaiting_a_foreign_awaitable(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    seen: list[str] = []

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        try:
            await Odd()
        except RuntimeError as exc:  # what a Task throws in: "Task got bad yield"
            seen.append(str(exc))
        await call.play(tts("after"))

    r0 = await within(app.handle_callback(first(CALL)))
    # In a Task, a bad yield is thrown into the coroutine (RuntimeError) so the flow can
    # catch it; here: AttributeError escapes the driver.
    assert media(r0) == "after", (r0, logged(caplog))


async def test_live_call_used_after_the_flow_returned(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    kept: list[LiveCall] = []

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        kept.append(call)
        await call.play(tts("x"))

    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0))
    assert command(r1) == "hangup"
    with pytest.raises(Exception) as info:
        await asyncio.wait_for(kept[0].play(tts("late")), 1.0)
    print(type(info.value), info.value)
    assert not isinstance(info.value, TimeoutError)


async def test_a_flow_returning_odd_values(make_app: Callable[..., App]) -> None:
    app = make_app()

    @app.inbound_call
    async def flow(call: LiveCall) -> Any:
        await call.play(tts("x"))
        return hangup  # the builder, not a command

    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0))
    assert is_fallback(r1)
