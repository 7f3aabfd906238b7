"""K3: ``on_hangup`` runs after the reply to the HANGUP, with a budget of its own."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable

import pytest

from rtcontrol import App, Call, Command, read, tts, wait
from rtcontrol.core.ports import Reply
from rtcontrol.events import Disposition, HangupHandled

from .kit import Recorder, SpyStore, first, hangup_after, logged, report, within

CALL = 73_001
OTHER = 73_002


def waiting(app: App) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(start)


async def test_on_hangup_longer_than_the_handler_budget_completes_after_the_reply(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app(handler_budget=0.2, hangup_budget=5.0)
    waiting(app)
    events = Recorder(app)
    started = asyncio.Event()
    release = asyncio.Event()
    ran: list[float] = []

    @app.on_hangup
    async def done(call: Call) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()
        started.set()
        await release.wait()
        await asyncio.sleep(0.4)  # well past the 0.2 s handler budget
        ran.append(loop.time() - began)

    r0 = await app.handle_callback(first(CALL))
    reply = await within(app.handle_callback(hangup_after(CALL, r0)))
    assert reply == Reply(b"{}")  # returned while on_hangup has not even finished...
    await within(started.wait())
    assert ran == []  # ...it waits on the event the test holds
    assert events.of(HangupHandled) == []
    release.set()
    await within(app.settle())
    assert len(ran) == 1
    assert ran[0] > 0.2
    assert events.of(HangupHandled) == [HangupHandled(CALL, "main", True, 1)]
    assert (await store.record(CALL))["hangup"]["done"] is True


async def test_on_hangup_past_its_budget_is_cancelled_and_logged(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(handler_budget=0.2, hangup_budget=0.3)
    waiting(app)
    events = Recorder(app)
    outcome: list[str] = []

    @app.on_hangup
    async def done(call: Call) -> None:
        try:
            await asyncio.Event().wait()  # never set
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("finished")

    r0 = await app.handle_callback(first(CALL))
    caplog.set_level(logging.ERROR, logger="rtcontrol")
    assert (await app.handle_callback(hangup_after(CALL, r0))).body == b"{}"
    await within(app.settle())
    assert outcome == ["cancelled"]
    errors = logged(caplog)
    assert len(errors) == 1, errors
    assert f"callid={CALL}: on_hangup of main still running after" in errors[0]
    assert "RTCONTROL_HANGUP_BUDGET" in errors[0]
    assert "cancelled" in errors[0]
    assert events.of(HangupHandled) == [HangupHandled(CALL, "main", False, 1)]
    assert "rtcontrol_hangup_errors_total 1.0" in app.metrics.render().decode()
    # The run is over for good: marked done, out of the janitor's index, not re-run.
    assert (await store.record(CALL))["hangup"]["done"] is True
    assert await store.index_range("rtc:hangups", float("-inf"), float("inf")) == []
    assert (await app.handle_callback(hangup_after(CALL, r0))).body == b"{}"
    await within(app.settle())
    assert outcome == ["cancelled"]


async def test_slow_on_hangup_does_not_hold_up_other_calls(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=0.5, hangup_budget=5.0)
    events = Recorder(app)
    started = asyncio.Event()
    release = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(start)

    @app.on_hangup
    async def done(call: Call) -> None:
        if call.id == CALL:
            started.set()
            await release.wait()

    r0 = await app.handle_callback(first(CALL))
    await app.handle_callback(hangup_after(CALL, r0))
    await within(started.wait())
    try:
        o0 = await within(app.handle_callback(first(OTHER)), 1.0)
        o1 = await within(app.handle_callback(report(OTHER, o0, "12")), 1.0)
        assert o1.body.startswith(b'{"command":"read"')
        assert events.dispositions(OTHER) == [Disposition.REPLY, Disposition.REPLY]
        await within(app.handle_callback(hangup_after(OTHER, o1)), 1.0)
    finally:
        release.set()
    await within(app.settle())
    assert sorted((e.callid, e.ok) for e in events.of(HangupHandled)) == [
        (CALL, True),
        (OTHER, True),
    ]


async def test_plain_def_on_hangup_runs_in_a_thread_with_the_hangup_budget(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=0.2, hangup_budget=5.0)
    waiting(app)
    events = Recorder(app)
    threads: list[threading.Thread] = []
    release = threading.Event()

    @app.on_hangup
    def done(call: Call) -> None:
        release.wait(10)
        time.sleep(0.3)  # blocking, longer than the handler budget: fine in a thread
        threads.append(threading.current_thread())

    r0 = await app.handle_callback(first(CALL))
    try:
        assert (await app.handle_callback(hangup_after(CALL, r0))).body == b"{}"
        assert threads == []  # the reply did not wait for the hook
    finally:
        release.set()
    await within(app.settle())
    assert len(threads) == 1
    assert threads[0] is not threading.current_thread()
    assert events.of(HangupHandled) == [HangupHandled(CALL, "main", True, 1)]


async def test_failing_on_hangup_is_logged_once_and_never_rerun(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    events = Recorder(app)
    runs: list[int] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return wait(5)

    @app.on_hangup
    async def done(call: Call) -> None:
        runs.append(call.id)
        raise RuntimeError("crm down")

    r0 = await app.handle_callback(first(CALL))
    caplog.set_level(logging.ERROR, logger="rtcontrol")
    assert (await app.handle_callback(hangup_after(CALL, r0))).body == b"{}"
    await within(app.settle())
    errors = logged(caplog)
    assert errors == [f"callid={CALL}: on_hangup of main failed"]
    assert events.of(HangupHandled) == [HangupHandled(CALL, "main", False, 1)]
    assert (await store.record(CALL))["hangup"]["done"] is True
    await app.handle_callback(hangup_after(CALL, r0))
    await within(app.settle())
    assert runs == [CALL]
