"""K1: a replay on another worker sees exactly what the first run saw."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, CommandFailedError, LiveCall, tts

from .helpers import CALL, first, logged, media, report

VALUES: list[Any] = [
    (1, 2, (3, "x")),
    {"a": [1.5, -0.0, 1e308, 2**70, -(2**63)], "é": "😀\u2028\r\n\t\x00"},
    [[[[{"deep": True}]]]],
    "x" * 200_000,
    0.1 + 0.2,
    None,
    False,
    "",
    {"": ""},
]


@pytest.mark.parametrize("value", VALUES, ids=[f"v{i}" for i in range(len(VALUES))])
async def test_once_values_are_identical_on_replay(
    make_app: Callable[..., App], value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    runs: list[Any] = []
    a, b = make_app(), make_app(flow_cache=0)

    async def produce() -> Any:
        return value

    for app in (a, b):

        @app.inbound_call(name="f")
        async def f(call: LiveCall) -> None:
            got = await call.once(produce)
            runs.append((got, type(got), repr(got)))
            await call.play(tts("one"))
            await call.play(tts("two"))

    r0 = await a.handle_callback(first(CALL))
    assert media(r0) == "one", logged(caplog)
    r1 = await b.handle_callback(report(CALL, r0))
    assert media(r1) == "two", logged(caplog)
    assert len(runs) == 2
    assert runs[0][2] == runs[1][2]


RESULTS = [
    "",
    " ",
    "  lead and trail  ",
    "[1,2]",
    "é😀",
    "a\nb",
    "a\r\nb",
    "\u2028",
    "x" * 5000,
    "[",
    "!o",
]


@pytest.mark.parametrize("result", RESULTS, ids=[f"r{i}" for i in range(len(RESULTS))])
@pytest.mark.parametrize("error", ["", "err", "a\nb"])
async def test_reports_are_identical_on_replay(
    make_app: Callable[..., App], result: str, error: str
) -> None:
    runs: list[Any] = []
    a, b = make_app(), make_app(flow_cache=0)
    for app in (a, b):

        @app.inbound_call(name="f")
        async def f(call: LiveCall) -> None:
            try:
                got: Any = await call.play_talk_detect(tts("hi"))
            except CommandFailedError as exc:
                got = ("failed", exc.command, exc.error)
            runs.append(got)
            await call.play(tts("two"))
            await call.play(tts("three"))

    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0, result, error=error))
    assert media(r1) == "two"
    r2 = await b.handle_callback(report(CALL, r1))
    assert media(r2) == "three"
    assert len(runs) == 2
    assert runs[0] == runs[1]
    if not error:
        assert runs[0] == result


async def test_state_and_variables_after_a_replay(make_app: Callable[..., App], store: Any) -> None:
    """Nested state mutated between awaits, and variables, the same on both workers."""
    a, b = make_app(), make_app(flow_cache=0)
    seen: list[Any] = []
    for app in (a, b):

        @app.inbound_call(name="f")
        async def f(call: LiveCall) -> None:
            call.state.setdefault("log", []).append({"n": 1, "f": 0.1})
            call.variables["k"] = {"x": [1, 2]}
            await call.play(tts("one"))
            call.state["log"][0]["n"] += 1
            seen.append((repr(call.state), repr(call.variables)))
            await call.play(tts("two"))
            seen.append((repr(call.state), repr(call.variables)))
            await call.play(tts("three"))

    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0))
    r2 = await b.handle_callback(report(CALL, r1))
    assert media(r2) == "three"
    assert len(seen) == 3, seen
    assert seen[0] == seen[1], seen
    rec = await store.record(CALL)
    assert rec["state"] == {"log": [{"n": 2, "f": 0.1}]}
