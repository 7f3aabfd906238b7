"""K8: a ``call_status`` rtcontrol does not know is terminal: no step runs, the call ends,
``on_hangup`` runs once; the unknown value is logged once per process."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, Flow, hangup, play, read, tts
from rtcontrol.core.ports import Reply
from rtcontrol.events import CallTerminated, Disposition

from .kit import (
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    body,
    first,
    hangup_after,
    logged,
    report,
    spawn,
    within,
)

CALL = 78_001
NUMBER = "+33612345678"

Runs = list[tuple[str, Any]]


def callback_app(app: App) -> Runs:
    runs: Runs = []

    class Callback(Flow):
        async def start(self, call: Call) -> Command:
            runs.append(("start", dict(call.state)))
            return play(tts("Hello")).then(self.done)

        async def done(self, call: Call) -> Command:
            return hangup()

        async def on_hangup(self, call: Call) -> None:
            runs.append(("on_hangup", (str(call.status), dict(call.state))))

    app.add_flow(Callback, name="callback", outbound=True)

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        runs.append(("welcome", dict(call.state)))
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(code)

    @app.step
    async def code(call: Call) -> Command:
        runs.append(("code", dict(call.state)))
        return hangup()

    @app.on_hangup
    async def done(call: Call) -> None:
        runs.append(("main.on_hangup", (str(call.status), dict(call.state))))

    return runs


def unknown_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in logged(caplog, logging.WARNING) if "unknown call_status" in m]


async def test_chanunavail_on_the_first_post_ends_the_call_with_its_data(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    app.serving = True
    runs = callback_app(app)
    events = Recorder(app)
    request_hash = await app.start_call(NUMBER, flow="callback", data={"ticket": 3})
    caplog.set_level(logging.WARNING, logger="rtcontrol")

    dead = first(CALL, status="CHANUNAVAIL", request_hash=request_hash)
    assert (await within(app.handle_callback(dead))) == Reply(b"{}")
    await within(app.settle())
    assert runs == [("on_hangup", ("CHANUNAVAIL", {"ticket": 3}))]  # start never ran
    assert events.last(CALL) is Disposition.HANGUP
    assert events.of(CallTerminated) == [CallTerminated(CALL, "callback", "CHANUNAVAIL", False)]
    assert (await store.record(CALL))["ended"] is True
    warnings = unknown_warnings(caplog)
    assert len(warnings) == 1
    assert "'CHANUNAVAIL'" in warnings[0]

    assert (await app.handle_callback(dead)).body == b"{}"  # re-sent
    await within(app.settle())
    assert len(runs) == 1
    assert len(unknown_warnings(caplog)) == 1


async def test_unknown_status_is_warned_once_per_value(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    app.serving = True
    runs = callback_app(app)
    caplog.set_level(logging.WARNING, logger="rtcontrol")
    for n, status in enumerate(["CHANUNAVAIL", "CHANUNAVAIL", "FAILED", "CHANUNAVAIL"]):
        request_hash = await app.start_call(NUMBER, flow="callback", data={"n": n})
        dead = first(CALL + n, status=status, request_hash=request_hash)
        assert (await app.handle_callback(dead)).body == b"{}"
    await within(app.settle())
    assert sorted(str(r[1][1]["n"]) for r in runs) == ["0", "1", "2", "3"]
    assert all(r[0] == "on_hangup" for r in runs)
    warnings = unknown_warnings(caplog)
    assert len(warnings) == 2
    assert "'CHANUNAVAIL'" in warnings[0]
    assert "'FAILED'" in warnings[1]


async def test_unknown_status_mid_call_ends_it_with_its_state(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    runs = callback_app(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    assert body(r0)["command_id"] == "1:main:code"
    reply = await app.handle_callback(report(CALL, r0, "12", status="TRANSFERRED"))
    assert reply.body == b"{}"
    await within(app.settle())
    assert runs == [("welcome", {}), ("main.on_hangup", ("TRANSFERRED", {"n": 1}))]
    assert events.of(CallTerminated) == [CallTerminated(CALL, "main", "TRANSFERRED", True)]
    # A later real HANGUP of the same call changes nothing.
    assert (await app.handle_callback(hangup_after(CALL, r0))).body == b"{}"
    await within(app.settle())
    assert len(runs) == 2


async def test_unknown_status_on_an_inbound_first_post_runs_no_step(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    runs = callback_app(app)
    assert (await app.handle_callback(first(CALL, status="ANSWERED_ELSEWHERE"))).body == b"{}"
    await within(app.settle())
    assert runs == [("main.on_hangup", ("ANSWERED_ELSEWHERE", {}))]


async def test_chanunavail_before_realtime_returns_still_gets_the_start_call_data(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    app = make_app(handler_budget=2.0)
    app.serving = True
    runs = callback_app(app)
    gate = asyncio.Event()
    replies: list[asyncio.Task[Reply]] = []

    async def platform(request_hash: str) -> None:
        dead = first(CALL, status="CHANUNAVAIL", request_hash=request_hash)
        replies.append(spawn(app.handle_callback(dead)))
        await gate.wait()

    control.before_return = platform
    started = spawn(app.start_call(NUMBER, flow="callback", data={"ticket": 4}))
    try:
        await probe.wait("get:rtc:req:RQ000001")
    finally:
        gate.set()
    await within(started)
    assert (await within(replies[0])).body == b"{}"
    await within(app.settle())
    assert runs == [("on_hangup", ("CHANUNAVAIL", {"ticket": 4}))]
