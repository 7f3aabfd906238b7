"""K11: blocking code is named in the logs; plain ``def`` steps and ``run_sync`` run in
worker threads, so the event loop keeps serving other calls."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Awaitable, Callable

import pytest

from rtcontrol import App, Call, Command, Flow, hangup, play, read, tts

from .kit import Recorder, body, first, logged, report, within

CALL = 79_001


def blocked_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in logged(caplog, logging.WARNING, exact=True) if "blocked the event loop" in m]


def seconds_blocked(message: str) -> float:
    found = re.search(r"for (\d+\.\d+)s", message)
    assert found, message
    return float(found.group(1))


async def test_async_handler_calling_time_sleep_is_named_with_the_time_it_blocked(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(blocking_warn=0.1)

    @app.on_inbound
    async def start(call: Call) -> Command:
        time.sleep(0.3)  # noqa: ASYNC251 - the fault under test
        return play(tts("Hello"))

    caplog.set_level(logging.WARNING, logger="rtcontrol")
    reply = await app.handle_callback(first(CALL))
    assert body(reply)["command"] == "play"  # the reply is unaffected
    warnings = blocked_warnings(caplog)
    assert len(warnings) == 1
    assert f"callid={CALL}: handler main.start blocked" in warnings[0]
    assert seconds_blocked(warnings[0]) >= 0.29
    assert "run_sync" in warnings[0]


@pytest.mark.parametrize("slices", [(0.15, 0.45), (0.45, 0.15)], ids=["worst-last", "worst-first"])
async def test_blocking_step_of_a_flow_is_named_flow_dot_step_once_per_stall(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, slices: tuple[float, float]
) -> None:
    app = make_app(blocking_warn=0.1)

    class Billing(Flow):
        async def start(self, call: Call) -> Command:
            return read(tts("Account?"), max_digits=6).then(self.lookup)

        async def lookup(self, call: Call) -> Command:
            time.sleep(slices[0])  # noqa: ASYNC251 - the fault under test
            await asyncio.sleep(0)
            time.sleep(slices[1])  # noqa: ASYNC251
            return hangup()

    app.add_flow(Billing, name="billing", inbound=True)
    r0 = await app.handle_callback(first(CALL))
    caplog.set_level(logging.WARNING, logger="rtcontrol")
    await app.handle_callback(report(CALL, r0, "123456"))
    warnings = blocked_warnings(caplog)
    # one warning per stall, each with its own length (not the sum of the two)
    assert len(warnings) == 2, warnings
    assert all("handler billing.lookup blocked" in w for w in warnings)
    lengths = [seconds_blocked(w) for w in warnings]
    for length, slept in zip(lengths, slices, strict=True):
        assert slept - 0.01 <= length < slept + 0.15, lengths


async def test_short_blocking_and_a_disabled_check_warn_nothing(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    def sleeping(seconds: float) -> Callable[[Call], Awaitable[Command]]:
        async def start(call: Call) -> Command:
            time.sleep(seconds)  # noqa: ASYNC251
            return hangup()

        return start

    caplog.set_level(logging.WARNING, logger="rtcontrol")
    for warn, seconds in ((0.5, 0.05), (0.0, 0.2)):  # below the limit; the check off
        app = make_app(blocking_warn=warn)
        app.on_inbound(sleeping(seconds))
        reply = await app.handle_callback(first(CALL))
        assert body(reply)["command"] == "hangup"
    assert blocked_warnings(caplog) == []


async def test_plain_def_step_runs_in_a_worker_thread_and_its_command_is_the_reply(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(blocking_warn=0.1)
    loop_thread = threading.current_thread()
    threads: list[threading.Thread] = []

    @app.on_inbound
    def start(call: Call) -> Command:
        threads.append(threading.current_thread())
        return read(tts("Code?"), max_digits=4).then(check)

    @app.step
    def check(call: Call) -> Command:
        threads.append(threading.current_thread())
        time.sleep(0.2)  # blocking is fine here: not on the loop, not warned
        call.state["code"] = call.digits
        return play(tts(f"Code {call.digits}")).then("check")

    caplog.set_level(logging.WARNING, logger="rtcontrol")
    r0 = await app.handle_callback(first(CALL))
    assert body(r0)["command_id"] == "1:main:check"
    reply = await app.handle_callback(report(CALL, r0, "4321"))
    assert body(reply)["params"]["media_id"].endswith("Code 4321")
    assert len(threads) == 2
    assert all(t is not loop_thread for t in threads)
    assert blocked_warnings(caplog) == []


async def test_plain_def_method_of_a_flow_runs_in_a_worker_thread(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    loop_thread = threading.current_thread()
    threads: list[threading.Thread] = []

    class Lookup(Flow):
        async def start(self, call: Call) -> Command:
            return read(tts("Account?"), max_digits=6).then(self.find)

        def find(self, call: Call) -> Command:
            threads.append(threading.current_thread())
            return play(tts(f"Account {call.digits}")).then(self.bye)

        async def bye(self, call: Call) -> Command:
            return hangup()

        def helper(self, value: int) -> int:  # not a step: not shaped like one
            return value

    app.add_flow(Lookup, name="lookup", inbound=True)
    assert "helper" not in app.flow_spec("lookup").steps
    r0 = await app.handle_callback(first(CALL))
    reply = await app.handle_callback(report(CALL, r0, "777"))
    assert body(reply)["command_id"] == "2:lookup:bye"
    assert len(threads) == 1
    assert threads[0] is not loop_thread


async def test_run_sync_runs_the_function_in_a_thread(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(blocking_warn=0.1)
    loop_thread = threading.current_thread()
    seen: list[tuple[threading.Thread, int]] = []

    def crm_lookup(number: str, *, weight: int) -> int:
        time.sleep(0.2)
        seen.append((threading.current_thread(), weight))
        return len(number) * weight

    @app.on_inbound
    async def start(call: Call) -> Command:
        score = await call.run_sync(crm_lookup, call.cli_number, weight=2)
        return play(tts(f"Score {score}"))

    caplog.set_level(logging.WARNING, logger="rtcontrol")
    reply = await app.handle_callback(first(CALL))
    assert body(reply)["params"]["media_id"].endswith("Score 24")
    assert len(seen) == 1
    assert seen[0][0] is not loop_thread
    assert seen[0][1] == 2
    assert blocked_warnings(caplog) == []


async def test_slow_plain_def_step_is_held_and_delivered_while_other_calls_are_served(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    release = threading.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(slow)

    @app.step
    def slow(call: Call) -> Command:
        release.wait(10)
        return play(tts("Done")).then("slow")

    r0 = await app.handle_callback(first(CALL))
    try:
        hold = await within(app.handle_callback(report(CALL, r0, "1")))
        assert body(hold)["command_id"].endswith(":@hold")
        other = await within(app.handle_callback(first(CALL + 1)), 1.0)  # the loop is free
        assert body(other)["command"] == "read"
    finally:
        release.set()
    await within(app.settle())
    delivered = await app.handle_callback(report(CALL, hold))
    assert body(delivered)["params"]["media_id"].endswith("Done")
    assert events.last(CALL).value == "delivered"


# ------------------------------------------------------------------ the handler's own task


async def test_asyncio_timeout_in_a_handler_times_out_the_handler_not_the_callback(
    make_app: Callable[..., App],
) -> None:
    """``asyncio.timeout`` binds to the current task: it must be the handler's, or the
    deadline cancels whoever called ``handle_callback``."""
    app = make_app(handler_budget=2.0)

    @app.on_inbound
    async def start(call: Call) -> Command:
        try:
            async with asyncio.timeout(0.2):
                await asyncio.Event().wait()  # a CRM that never answers
        except TimeoutError:
            return play(tts("CRM too slow"))
        return play(tts("CRM answered"))

    reply = await within(app.handle_callback(first(CALL)))
    assert body(reply)["params"]["media_id"].endswith("CRM too slow")


async def test_task_group_in_a_handler_cancels_its_own_children_only(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=2.0)
    entered = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        async def crm() -> None:
            await entered.wait()
            raise LookupError("no such customer")

        async def billing() -> None:
            entered.set()
            await asyncio.Event().wait()

        failed = False
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(crm())
                group.create_task(billing())
        except* LookupError:
            failed = True
        return play(tts("Unknown customer" if failed else "Welcome"))

    reply = await within(app.handle_callback(first(CALL)))
    assert body(reply)["params"]["media_id"].endswith("Unknown customer")


async def test_handler_runs_in_a_task_of_its_own(make_app: Callable[..., App]) -> None:
    app = make_app()
    tasks: list[asyncio.Task[object] | None] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        tasks.append(asyncio.current_task())
        await asyncio.sleep(0)
        tasks.append(asyncio.current_task())
        return hangup()

    await within(app.handle_callback(first(CALL)))
    caller = asyncio.current_task()
    assert len(tasks) == 2
    assert tasks[0] is tasks[1]  # one task for the whole run...
    assert tasks[0] is not caller  # ...and not the task that called handle_callback
