"""K3: a flow that already failed (the caller got the fallback) is not run again at the
hang-up: its finally ran when it raised; CallHungUp must not be raised in a flow that
already ended, at an await whose result it already received."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from rtcontrol import App, CallHungUp, LiveCall, tts

from .helpers import CALL, first, is_fallback, report, within


async def test_hang_up_after_the_flow_raised(make_app: Callable[..., App]) -> None:
    app = make_app()
    trail: list[str] = []

    @app.inbound_call
    async def f(call: LiveCall) -> None:
        try:
            digits = await call.read(tts("number"), max_digits=4)
            trail.append(f"digits:{digits}")
            raise ValueError("bug in the flow")
        except CallHungUp:
            trail.append("hung-up")
            raise
        finally:
            trail.append("finally")

    @app.on_hangup
    async def ended(call: Any) -> None:
        trail.append("on_hangup")

    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, "12"))
    assert is_fallback(r1)
    assert trail == ["digits:12", "finally"]
    r2 = await app.handle_callback(report(CALL, r1))  # the apology ended: hangup
    await app.handle_callback(report(CALL, r2, status="HANGUP"))
    await within(app.settle())
    await asyncio.sleep(0.05)
    assert trail == ["digits:12", "finally", "on_hangup"]
