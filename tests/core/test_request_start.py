"""The handler budget counts from when the proxy received the callback (X-Request-Start),
so a callback nginx passes on from a worker that died mid-step is not answered late."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from rtcontrol import App, Call, Command, play, tts

from .kit import first, step_of, within

CALL = 91_001


async def test_time_already_spent_upstream_counts_against_the_budget(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=2.0)
    release = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await release.wait()
        return play(tts("Hello"))

    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        # the proxy got it 1.7 s ago (a worker died with it): 0.3 s of budget is left
        held = await within(app.handle_callback(first(CALL), received_at=time.time() - 1.7))
    finally:
        release.set()
    assert step_of(held) == "@hold"
    assert loop.time() - began < 1.0  # not the full 2 s budget from now


async def test_a_request_start_outside_the_budget_is_ignored(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=2.0)

    @app.on_inbound
    async def start(call: Call) -> Command:
        await asyncio.sleep(0.2)
        return play(tts("Hello"))

    for skewed in (time.time() - 3600, time.time() + 3600):  # clocks that disagree
        reply = await within(app.handle_callback(first(CALL), received_at=skewed))
        assert step_of(reply) != "@hold"  # handled with the whole budget
        await app.handle_callback(first(CALL + 1), received_at=None)


async def test_the_setting_turns_it_off(make_app: Callable[..., App]) -> None:
    app = make_app(handler_budget=2.0, request_start=False)

    @app.on_inbound
    async def start(call: Call) -> Command:
        await asyncio.sleep(0.2)
        return play(tts("Hello"))

    reply = await within(app.handle_callback(first(CALL), received_at=time.time() - 1.95))
    assert step_of(reply) != "@hold"
