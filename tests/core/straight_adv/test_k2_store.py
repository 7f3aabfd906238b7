"""K2: store outages, duplicates, stale reports with straight-line flows."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from rtcontrol import App, LiveCall, tts

from .helpers import (
    CALL,
    SpyStore,
    command,
    first,
    is_fallback,
    media,
    report,
    step_of,
)


def register(app: App, charged: list[str], name: str = "f") -> None:
    async def charge(d: str) -> str:
        charged.append(d)
        return f"receipt-{d}"

    @app.inbound_call(name=name)
    async def f(call: LiveCall) -> None:
        d = await call.read(tts("amount"), max_digits=4)
        r = await call.once(charge, d)
        await call.play(tts(f"paid {r}"))
        d2 = await call.read(tts("again"), max_digits=4)
        await call.play(tts(f"bye {d} {d2}"))


@pytest.mark.parametrize("workers", [1, 2])
async def test_a_failed_write_then_the_replayed_report(
    make_app: Callable[..., App], store: SpyStore, workers: int
) -> None:
    charged: list[str] = []
    apps = [make_app() for _ in range(workers)]
    for app in apps:
        register(app, charged)
    r0 = await apps[0].handle_callback(first(CALL))
    store.fail_writes = True
    held = await apps[0].handle_callback(report(CALL, r0, "12"))
    assert step_of(held) == "@replay"
    store.fail_writes = False
    again = await apps[-1].handle_callback(report(CALL, held))  # the platform replays it
    assert media(again) == "paid receipt-12"
    r3 = await apps[0].handle_callback(report(CALL, again))
    assert command(r3) == "read"
    r4 = await apps[-1].handle_callback(report(CALL, r3, "34"))
    assert media(r4) == "bye 12 34"


@pytest.mark.parametrize("mode", ["down", "blink"])
async def test_store_outage_then_replay(
    make_app: Callable[..., App], store: SpyStore, mode: str
) -> None:
    charged: list[str] = []
    a, b = make_app(), make_app()
    register(a, charged)
    register(b, charged)
    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0, "12"))
    if mode == "down":
        store.down = True
    else:
        store.blink = "rtc:{"
    held = await b.handle_callback(report(CALL, r1))
    assert step_of(held) == "@replay"
    store.down = False
    store.blink = None
    again = await a.handle_callback(report(CALL, held))
    assert command(again) == "read"
    assert charged == ["12"]


async def test_duplicates_and_stale_reports(make_app: Callable[..., App]) -> None:
    charged: list[str] = []
    a, b = make_app(), make_app()
    register(a, charged)
    register(b, charged)
    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0, "12"))
    dup = await b.handle_callback(report(CALL, r0, "12"))
    assert dup.body == r1.body
    dup = await a.handle_callback(report(CALL, r0, "99"))  # a copy, other result
    assert dup.body == r1.body
    r2 = await b.handle_callback(report(CALL, r1))
    assert command(r2) == "read"
    stale = await a.handle_callback(report(CALL, r0, "12"))
    assert not is_fallback(stale)
    r3 = await a.handle_callback(report(CALL, r2, "34"))
    assert media(r3) == "bye 12 34"
    assert charged == ["12"]
