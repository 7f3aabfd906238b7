"""A flow that swallows CallHungUp (a plain `except Exception`) or restarts without
sending a command spins without ever yielding: the worker's event loop freezes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rtcontrol import App, LiveCall, tts

from .helpers import CALL, first, is_fallback, report, within

CAP = 20_000  # the flow stops itself here, so the test cannot freeze forever


async def test_a_flow_swallowing_callhungup_in_a_retry_loop_does_not_freeze_the_worker(
    make_app: Callable[..., App],
) -> None:
    app = make_app(hangup_budget=1.0)
    spins: list[int] = [0]
    trail: list[str] = []

    @app.inbound_call
    async def music(call: LiveCall) -> None:
        try:
            while spins[0] < CAP:
                try:
                    await call.play(tts("Please hold."))
                except Exception:  # a common "retry on any error" loop
                    spins[0] += 1
        finally:
            trail.append("finally")

    @app.on_hangup
    async def ended(call: Any) -> None:
        trail.append("on_hangup")

    r = await app.handle_callback(first(CALL))
    r = await app.handle_callback(report(CALL, r))
    end = await app.handle_callback(report(CALL, r, status="HANGUP"))
    assert end.status == 200
    await within(app.settle())
    # The loop ran CAP times without ever giving the event loop a turn: the hang-up
    # budget (1 s) could not stop it. Expected: the ended flow is stopped after the
    # first CallHungUp it swallows (e.g. an uncatchable drop, or a yield so the budget
    # applies), a handful of spins at most.
    assert spins[0] < 100, f"the flow spun {spins[0]} times inside one coro.throw()"
    assert trail == ["finally", "on_hangup"]


async def test_restart_before_any_command_does_not_spin_forever(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    restarts = [0]

    @app.inbound_call
    async def loop(call: LiveCall) -> None:
        # a bug in the flow: the condition stays true across restarts (state is kept)
        call.state["n"] = call.state.get("n", 0) + 1
        if restarts[0] < CAP and call.state["n"] < 1_000_000:  # meant "> 3"... a typo
            restarts[0] += 1
            call.restart()
        await call.play(tts("hello"))

    r = await app.handle_callback(first(CALL))
    # Expected: a restart that sends no command before restarting again is a FlowError
    # (fallback + a log naming it) after a few rounds, not CAP synchronous replays.
    assert restarts[0] < 100, f"{restarts[0]} restarts in one callback, loop never yielded"
    assert is_fallback(r)
