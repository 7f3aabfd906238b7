"""K8 (unknown platform values), K11 (blocking code, sync steps in threads) and K13
(idempotency keys, crashed locks), adversarial."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, hangup, play, read, tts
from rtcontrol.core.ports import Reply
from rtcontrol.events import Disposition
from tests.core.kit import (
    FakeClock,
    FakeControl,
    Recorder,
    SpyStore,
    body,
    call_key,
    first,
    hangup_after,
    lock_key,
    logged,
    report,
    request,
    within,
)

from .helpers import assert_sendable

CALL = 98_001

# str.isdigit() is True for these, int() refuses them
NOT_INT_DIGITS = ["²:main:choice", "①:main:start", "¹:main:@hold", "1²:main:choice"]


def menu(app: App) -> tuple[list[str], list[tuple[str, Any]]]:
    runs: list[str] = []
    hangups: list[tuple[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        call.state["n"] = 1
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        runs.append(f"choice:{call.digits}:{call.command}")
        return hangup()

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append((str(call.status), dict(call.state)))

    return runs, hangups


# ------------------------------------------------------------------ K8


@pytest.mark.parametrize("cid", NOT_INT_DIGITS)
async def test_live_report_with_a_unicode_digit_seq_gets_a_safe_reply(
    make_app: Callable[..., App], store: SpyStore, cid: str
) -> None:
    app = make_app(lock_lease=5.0)
    runs, _ = menu(app)
    await app.handle_callback(first(CALL))
    before = await store.record(CALL)
    reply = await within(
        app.handle_callback(request(CALL, command="read", command_id=cid, command_result="1"))
    )
    assert_sendable(reply)
    assert runs == ["start"]
    assert await store.record(CALL) == before
    assert await store.lock_is_free(CALL)


@pytest.mark.parametrize("cid", NOT_INT_DIGITS)
async def test_unknown_call_with_a_unicode_digit_seq_gets_the_fallback_not_an_error(
    make_app: Callable[..., App], cid: str
) -> None:
    app = make_app()
    menu(app)
    reply = await within(
        app.handle_callback(request(CALL, command="read", command_id=cid, command_result="1"))
    )
    assert_sendable(reply)


@pytest.mark.parametrize("cid", NOT_INT_DIGITS)
async def test_hangup_with_a_unicode_digit_seq_is_recorded_and_runs_on_hangup_once(
    make_app: Callable[..., App], store: SpyStore, cid: str
) -> None:
    """Whatever the echoed id looks like, a HANGUP ends the call and on_hangup runs once
    (K2). Raising here makes the adapter answer {} 200 with nothing recorded."""
    app = make_app()
    _, hangups = menu(app)
    await app.handle_callback(first(CALL))
    hang = request(CALL, command="read", command_id=cid, call_status="HANGUP")
    reply = await within(app.handle_callback(hang))
    assert reply == Reply(b"{}")
    await within(app.settle())
    assert hangups == [("HANGUP", {"n": 1})]
    assert (await store.record(CALL))["ended"] is True


async def test_first_post_hangup_with_a_unicode_digit_seq_runs_on_hangup(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    _, hangups = menu(app)
    hang = request(CALL, command="read", command_id="²:main:start", call_status="BUSY")
    assert (await within(app.handle_callback(hang))) == Reply(b"{}")
    await within(app.settle())
    assert hangups == [("BUSY", {})]


async def test_replay_envelope_carrying_a_unicode_digit_seq_is_handled(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    runs, _ = menu(app)
    r0 = await app.handle_callback(first(CALL))
    env = {"_rtc": {"replay": ["read", "²:main:choice", "1", "", "UP"], "n": 1, "t": 0}}
    replay = request(CALL, command="wait", command_id="0:main:@replay", variables=env)
    reply = await within(app.handle_callback(replay))
    assert_sendable(reply)
    assert runs == ["start"]
    await app.handle_callback(report(CALL, r0, "1"))
    assert runs == ["start", "choice:1:read"]


@pytest.mark.parametrize(
    "status", ["", "up", "Up", "UP ", "HANGUP ", "UP\u200b", "ÉCHEC", "x" * 5000]
)
async def test_odd_statuses_mid_call_end_it_once_and_run_no_step(
    make_app: Callable[..., App], status: str
) -> None:
    app = make_app()
    runs, hangups = menu(app)
    r0 = await app.handle_callback(first(CALL))
    assert (await app.handle_callback(report(CALL, r0, "1", status=status))).body == b"{}"
    assert (await app.handle_callback(report(CALL, r0, "1", status=status))).body == b"{}"
    await within(app.settle())
    assert runs == ["start"]
    assert hangups == [(status, {"n": 1})]


async def test_unknown_command_name_in_a_current_report_runs_its_step(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    runs, _ = menu(app)
    r0 = await app.handle_callback(first(CALL))
    sent = body(r0)
    reply = await app.handle_callback(
        request(CALL, command="réad-v2", command_id=sent["command_id"], command_result="1")
    )
    assert_sendable(reply)
    assert runs == ["start", "choice:None:réad-v2"]


@pytest.mark.parametrize("cid", [2**70, -(2**70), "9" * 400, "0:" + "x" * 2000 + ":y"])
async def test_huge_command_ids_on_a_first_post_hangup_are_recorded(
    make_app: Callable[..., App], store: SpyStore, cid: Any
) -> None:
    app = make_app()
    _, hangups = menu(app)
    hang = request(CALL, command="read", command_id=cid, call_status="NOANSWER")
    assert (await within(app.handle_callback(hang))) == Reply(b"{}")
    await within(app.settle())
    assert hangups == [("NOANSWER", {})]
    assert (await store.record(CALL))["hangup"]["done"] is True


# ------------------------------------------------------------------ K11


class AsyncStep:
    """A callable object whose __call__ is a coroutine function (a common handler shape)."""

    def __init__(self, runs: list[str]) -> None:
        self.runs = runs

    async def __call__(self, call: Call) -> Command:
        self.runs.append(f"async-object:{threading.current_thread() is threading.main_thread()}")
        return play(tts("From an object")).then("choice")


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_async_callable_object_step_runs_on_the_loop_and_its_command_is_sent(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1).then("obj")

    @app.step
    async def choice(call: Call) -> Command:
        return hangup()

    app.step("obj")(AsyncStep(runs))
    r0 = await app.handle_callback(first(CALL))
    try:
        reply = await app.handle_callback(report(CALL, r0, "1"))
        assert body(reply)["params"]["media_id"].endswith("From an object")
        assert runs == ["async-object:True"]
    finally:
        gc.collect()  # the never-awaited coroutine's warning stays in this test


async def test_blocking_async_on_hangup_is_named(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(blocking_warn=0.1)

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then("start")

    @app.on_hangup
    async def done(call: Call) -> None:
        time.sleep(0.3)  # noqa: ASYNC251 - the fault under test

    r0 = await app.handle_callback(first(CALL))
    caplog.set_level(logging.WARNING, logger="rtcontrol")
    await app.handle_callback(hangup_after(CALL, r0))
    await within(app.settle())
    await asyncio.sleep(0.05)  # the report is queued on the loop once it is free
    warnings = [m for m in logged(caplog, logging.WARNING) if "blocked the event loop" in m]
    assert len(warnings) == 1, warnings
    assert "main.on_hangup" in warnings[0]


async def test_blocking_helper_awaited_by_a_step_is_named_after_the_step(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(blocking_warn=0.1)

    async def crm(number: str) -> int:
        time.sleep(0.3)  # noqa: ASYNC251
        return 1

    @app.on_inbound
    async def start(call: Call) -> Command:
        await crm(call.cli_number)
        return hangup()

    caplog.set_level(logging.WARNING, logger="rtcontrol")
    await app.handle_callback(first(CALL))
    await asyncio.sleep(0.05)
    warnings = [m for m in logged(caplog, logging.WARNING) if "blocked the event loop" in m]
    assert len(warnings) == 1, warnings
    assert "main.start" in warnings[0]


async def test_plain_def_hooks_run_in_threads(make_app: Callable[..., App]) -> None:
    app = make_app()
    threads: dict[str, threading.Thread] = {}

    @app.on_inbound
    async def start(call: Call) -> Command:
        return play(tts("no then"))

    @app.on_result
    def result(call: Call) -> Command:
        threads["on_result"] = threading.current_thread()
        time.sleep(0.05)
        return play(tts("still here")).then("start")

    @app.on_break
    def brk(call: Call) -> Command:
        threads["on_break"] = threading.current_thread()
        return hangup()

    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0))
    assert body(r1)["params"]["media_id"].endswith("still here")
    await app.interrupt(CALL)
    r2 = await app.handle_callback(report(CALL, r1))
    assert body(r2)["command"] == "hangup"
    assert set(threads) == {"on_result", "on_break"}
    assert all(t is not threading.main_thread() for t in threads.values())


# ------------------------------------------------------------------ K13


def keyed(app: App) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        keys.append(("start", call.idempotency_key))
        return play(tts("Music")).then(start)

    @app.step
    async def agent(call: Call) -> Command:
        keys.append(("agent", call.idempotency_key))
        return play(tts("Agent")).then(agent)

    return keys


async def test_interrupt_action_rerun_after_a_crash_has_the_same_key(
    make_app: Callable[..., App], store: SpyStore, clock: FakeClock
) -> None:
    """The interrupt action's step runs on worker A, which dies holding the lock (its
    write never happens). The platform retries the report: worker B runs the same step
    again for the same report, with the same key."""
    worker_a = make_app(lock_lease=0.5)
    worker_b = make_app(lock_lease=0.5)
    keys_a, keys_b = keyed(worker_a), keyed(worker_b)
    r0 = await worker_a.handle_callback(first(CALL))
    await worker_a.interrupt(CALL, then="agent")
    saved = await store.record(CALL)
    await worker_a.handle_callback(report(CALL, r0))  # ran agent...
    await store.set(call_key(CALL), saved, ttl=60)  # ...but the write never happened
    await store.acquire(lock_key(CALL), lease=0.5, wait=0.1)  # and A died holding the lock
    await worker_b.handle_callback(report(CALL, r0))
    assert keys_a[-1][0] == keys_b[-1][0] == "agent"
    assert keys_a[-1][1] == keys_b[-1][1]


async def test_interrupt_blocked_by_a_crashed_lock_waits_about_a_lease(
    make_app: Callable[..., App], store: SpyStore, control: FakeControl
) -> None:
    app = make_app(lock_lease=0.5, handler_budget=4.0)
    keyed(app)
    await app.handle_callback(first(CALL))
    await store.acquire(lock_key(CALL), lease=0.5, wait=0.1)
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert await within(app.interrupt(CALL, then="agent")) is True
    assert loop.time() - began < 2.5
    assert control.breaks == [CALL]


async def test_callback_cancelled_mid_step_frees_the_lock_at_once(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """The server cancels the request task (client gone) while the step runs: the lock
    must not stay held (nor renewed) beyond about a lease."""
    app = make_app(lock_lease=0.5, handler_budget=3.0)
    entered = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        entered.set()
        await asyncio.Event().wait()
        return hangup()

    task = asyncio.ensure_future(app.handle_callback(first(CALL)))
    await within(entered.wait())
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.8)  # more than a lease: a leaked renewal would keep it held
    assert await store.lock_is_free(CALL)


async def test_same_report_run_on_two_workers_after_a_lost_write_has_one_key(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    worker_a, worker_b = make_app(), make_app()
    ka, kb = keyed(worker_a), keyed(worker_b)
    events = Recorder(worker_b)
    r0 = await worker_a.handle_callback(first(CALL))
    await worker_a.interrupt(CALL, then="agent")
    await store.delete(call_key(CALL))  # lost, interrupt and all
    await worker_b.handle_callback(report(CALL, r0))
    assert events.last(CALL) is Disposition.RECOVERED
    assert ka[0] == ("start", f"{CALL}:start:0")
    assert kb[-1][1] == f"{CALL}:start:{body(r0)['command_id']}"
