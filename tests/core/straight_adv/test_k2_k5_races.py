"""K2 races between two workers; K5 discarded copies and leftover tasks."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, CallHungUp, LiveCall, tts
from rtcontrol.core import straight

from .helpers import CALL, first, media, report, step_of, within


async def test_the_same_report_on_two_workers_at_once(make_app: Callable[..., App]) -> None:
    charged: list[str] = []
    a, b = make_app(), make_app()
    for app in (a, b):

        async def charge(d: str) -> str:
            charged.append(d)
            await asyncio.sleep(0.01)
            return d

        @app.inbound_call(name="f")
        async def f(call: LiveCall) -> None:
            d = await call.read(tts("amount"), max_digits=4)
            await call.once(charge, d)
            await call.play(tts(f"paid {d}"))
            await call.play(tts("bye"))

    r0 = await a.handle_callback(first(CALL))
    x, y = await asyncio.gather(
        a.handle_callback(report(CALL, r0, "12")), b.handle_callback(report(CALL, r0, "12"))
    )
    assert x.body == y.body
    assert media(x) == "paid 12"
    assert charged == ["12"]


async def test_a_report_and_the_hang_up_racing_on_two_workers(
    make_app: Callable[..., App],
) -> None:
    trail: list[str] = []
    a, b = make_app(), make_app()
    for app in (a, b):

        @app.inbound_call(name="f")
        async def f(call: LiveCall) -> None:
            try:
                await call.read(tts("one"), max_digits=1)
                await call.read(tts("two"), max_digits=1)
                await call.read(tts("three"), max_digits=1)
            except CallHungUp:
                trail.append("hung-up")
            finally:
                trail.append("finally")

        @app.on_hangup
        async def ended(call: Any) -> None:
            trail.append("on_hangup")

    r0 = await a.handle_callback(first(CALL))
    _r1, _end = await asyncio.gather(
        a.handle_callback(report(CALL, r0, "1")),
        b.handle_callback(report(CALL, r0, status="HANGUP")),
    )
    await within(a.settle())
    await within(b.settle())
    await asyncio.sleep(0.05)
    assert trail.count("on_hangup") == 1
    assert trail.count("hung-up") == 1
    assert trail.count("finally") == 1, trail


async def test_a_discarded_copy_never_runs_once_or_sends(make_app: Callable[..., App]) -> None:
    app = make_app(flow_cache=1)
    effects: list[str] = []

    async def effect() -> str:
        effects.append("ran")
        return "x"

    @app.inbound_call
    async def f(call: LiveCall) -> None:
        try:
            await call.read(tts("one"), max_digits=1)
        finally:
            try:
                await call.once(effect)
            except BaseException as exc:
                effects.append(type(exc).__name__)
                raise

    await app.handle_callback(first(CALL))
    await app.handle_callback(first(CALL + 1))  # evicts CALL's copy
    await asyncio.sleep(0.05)
    assert "ran" not in effects


async def test_no_task_left_behind_after_a_hang_up_during_a_hold(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.2, flow_cache=0)
    gate = asyncio.Event()

    @app.inbound_call
    async def f(call: LiveCall) -> None:
        await call.read(tts("one"), max_digits=1)
        await gate.wait()
        await call.play(tts("two"))
        await call.play(tts("three"))

    r0 = await app.handle_callback(first(CALL))
    hold = await within(app.handle_callback(report(CALL, r0, "1")))
    assert step_of(hold) == "@hold"
    await app.handle_callback(report(CALL, hold, status="HANGUP"))
    gate.set()
    await within(app.settle())
    await asyncio.sleep(0.1)
    gc.collect()
    await asyncio.sleep(0.05)
    pending = [t for t in straight._BACKGROUND if not t.done()]
    asyncio_errors = [r.getMessage() for r in caplog.records if r.name == "asyncio"]
    assert not pending, pending
    assert not asyncio_errors, asyncio_errors
