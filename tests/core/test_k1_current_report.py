"""K1: only the report of the call's current command is new.

A copy of an answered report gets its original reply byte for byte and runs nothing;
a report of a command the call no longer runs is stale; a report ahead of the stored
record (the store lost a write) is the truth and runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, hangup, play, read, tts
from rtcontrol.core.ports import Reply
from rtcontrol.events import CallHeld, Disposition, HoldReason

from .kit import (
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    body,
    command_id,
    first,
    logged,
    report,
    request,
    spawn,
    within,
)

CALL = 71_001


def survey(app: App) -> list[str]:
    """start -> choice -> confirm -> bye; a ``transfer`` step for interrupts. Returns runs."""
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        call.state["steps"] = ["start"]
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        runs.append(f"choice:{call.digits}")
        call.state["steps"].append("choice")
        call.variables["choice"] = call.digits
        return read(tts("Confirm?"), max_digits=1).then(confirm)

    @app.step
    async def confirm(call: Call) -> Command:
        runs.append(f"confirm:{call.digits}")
        call.state["steps"].append("confirm")
        return play(tts("Thanks")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        runs.append("bye")
        call.state["steps"].append("bye")
        return hangup()

    @app.step
    async def transfer(call: Call) -> Command:
        runs.append(f"transfer:{call.command}:{call.request.command_id}:{call.interrupted}")
        return play(tts("Transferring")).then(bye)

    return runs


async def answered_three(app: App) -> tuple[Reply, Reply, Reply]:
    """First callback, then reports 1 and 2, each answered."""
    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, "1"))
    r2 = await app.handle_callback(report(CALL, r1, "2"))
    return r0, r1, r2


async def test_late_copy_of_report_1_gets_its_original_reply_and_interrupts_still_target_current(
    make_app: Callable[..., App], store: SpyStore, control: FakeControl
) -> None:
    app = make_app()
    runs = survey(app)
    events = Recorder(app)
    r0, r1, r2 = await answered_three(app)
    assert runs == ["start", "choice:1", "confirm:2"]
    before = await store.record(CALL)
    assert before["current"] == command_id(r2)

    late = await app.handle_callback(report(CALL, r0, "1"))  # report 1, again

    assert late == Reply(r1.body)  # byte for byte, 200
    assert events.last(CALL) is Disposition.DUPLICATE
    assert runs == ["start", "choice:1", "confirm:2"]  # nothing ran again
    after = await store.record(CALL)
    assert after == before  # current, seq, state, replies: unchanged
    assert after["state"] == {"steps": ["start", "choice", "confirm"]}

    # An interrupt now targets the command the platform really runs (report 2's answer).
    assert await app.interrupt(CALL, then="transfer") is True
    assert control.breaks == [CALL]
    assert (await store.record(CALL))["interrupt"]["target"] == command_id(r2)

    # Another late copy does not consume the interrupt...
    again = await app.handle_callback(report(CALL, r0, "1"))
    assert again.body == r1.body
    assert (await store.record(CALL))["interrupt"]["target"] == command_id(r2)
    assert runs[-1] == "confirm:2"

    # ...the broken command's report does: the action runs on the real current report.
    broken = await app.handle_callback(report(CALL, r2, ""))
    assert events.last(CALL) is Disposition.INTERRUPT
    assert runs[-1] == f"transfer:play:{command_id(r2)}:True"
    assert body(broken)["params"]["media_id"].endswith("Transferring")
    assert "interrupt" not in await store.record(CALL)


async def test_copy_of_the_first_callback_while_start_runs_gets_a_replay_hold(
    make_app: Callable[..., App], store: SpyStore, control: FakeControl
) -> None:
    app = make_app(handler_budget=1.0, lock_wait=0.05)
    events = Recorder(app)
    runs: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        entered.set()
        await gate.wait()
        return read(tts("Press 1"), max_digits=1).then("choice")

    @app.step
    async def choice(call: Call) -> Command:
        return hangup()

    try:
        original = spawn(app.handle_callback(first(CALL)))
        await within(entered.wait())
        copy = await within(app.handle_callback(first(CALL)))  # start() still runs, locked
        held = body(copy)
        assert held["command"] == "wait"
        assert held["command_id"] == "0:-:@replay"
        assert held["variables"]["_rtc"]["replay"] == ["", 0, "", "", "INCOMING_CALL"]
        assert events.last(CALL) is Disposition.REPLAY
        assert not original.done()

        hold = await within(original)  # past the budget: the caller hears the hold
        assert body(hold)["command_id"] == "1:main:@hold"
        assert events.of(CallHeld)[-1] == CallHeld(CALL, "start", HoldReason.SLOW_HANDLER)

        # The replay hold ended: the platform POSTs it back, variables echoed.
        replay = request(
            CALL,
            command="wait",
            command_id=held["command_id"],
            call_status="UP",
            variables=held["variables"],
        )
        again = await within(app.handle_callback(replay))
        assert again == Reply(hold.body)  # the original first reply
        assert events.last(CALL) is Disposition.DUPLICATE
        assert runs == ["start"]
    finally:
        gate.set()
    await within(app.settle())
    assert runs == ["start"]  # start() never ran a second time
    assert control.breaks == [CALL]  # its command was delivered by breaking the hold
    delivered = await app.handle_callback(report(CALL, hold))
    assert body(delivered)["command"] == "read"
    assert events.last(CALL) is Disposition.DELIVERED
    assert runs == ["start"]


async def test_replay_of_the_first_callback_gets_starts_reply_when_start_was_on_time(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=2.0, lock_wait=0.05)
    events = Recorder(app)
    runs: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        call.state["n"] = len(runs)
        entered.set()
        await gate.wait()
        return read(tts("Press 1"), max_digits=1).then("choice")

    @app.step
    async def choice(call: Call) -> Command:
        return hangup()

    try:
        original = spawn(app.handle_callback(first(CALL)))
        await within(entered.wait())
        held = body(await within(app.handle_callback(first(CALL))))
        assert held["command_id"] == "0:-:@replay"
    finally:
        gate.set()
    reply = await within(original)
    assert body(reply)["command"] == "read"
    replay = request(
        CALL, command="wait", command_id=held["command_id"], variables=held["variables"]
    )
    again = await within(app.handle_callback(replay))
    assert again.body == reply.body
    assert events.last(CALL) is Disposition.DUPLICATE
    assert runs == ["start"]


async def test_report_from_an_older_seq_never_answered_is_stale(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    runs = survey(app)
    events = Recorder(app)
    _, _, r2 = await answered_three(app)
    before = await store.record(CALL)
    caplog.set_level(logging.WARNING, logger="rtcontrol")

    stale = request(CALL, command="read", command_id="2:main:choice", command_result="9")
    reply = await app.handle_callback(stale)

    assert events.last(CALL) is Disposition.STALE
    assert runs == ["start", "choice:1", "confirm:2"]  # nothing ran
    assert await store.record(CALL) == before  # nothing changed
    assert reply.body == r2.body  # the command the call runs, again
    assert any("stale report" in m for m in logged(caplog, logging.WARNING))


async def test_report_older_than_the_replies_kept_is_stale_not_rerun(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    events = Recorder(app)
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        return read(tts("Code?"), max_digits=1).then(loop)

    @app.step
    async def loop(call: Call) -> Command:
        runs.append(f"loop:{call.digits}")
        return read(tts("Again?"), max_digits=1).then(loop)

    r0 = await app.handle_callback(first(CALL))
    reply = r0
    for digit in "12345":  # five more replies: those of the first two callbacks drop out
        reply = await app.handle_callback(report(CALL, reply, digit))
    before = await store.record(CALL)
    assert "i0" not in before["replies"]
    assert f"s{command_id(r0)}" not in before["replies"]

    for late in (report(CALL, r0, "1"), first(CALL)):  # report 1, and the first callback
        await app.handle_callback(late)
        assert events.last(CALL) is Disposition.STALE
    assert runs == ["start", "loop:1", "loop:2", "loop:3", "loop:4", "loop:5"]
    assert await store.record(CALL) == before


async def test_report_echoing_our_id_with_another_json_type_runs_nothing(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    runs = survey(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    before = await store.record(CALL)
    # Our ids are strings; an int 1 is another id (1 != "1"), not report 1.
    await app.handle_callback(request(CALL, command="read", command_id=1, command_result="1"))
    assert events.last(CALL) is Disposition.STALE
    assert runs == ["start"]
    assert await store.record(CALL) == before
    # The real report still runs afterwards.
    await app.handle_callback(report(CALL, r0, "1"))
    assert runs == ["start", "choice:1"]


async def test_report_ahead_of_the_record_runs(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    runs = survey(app)
    events = Recorder(app)
    await app.handle_callback(first(CALL))
    assert (await store.record(CALL))["current"] == "1:main:choice"
    caplog.set_level(logging.WARNING, logger="rtcontrol")

    # The store lost the write of report 1's answer ("2:main:confirm"): its report arrives.
    ahead = request(CALL, command="read", command_id="2:main:confirm", command_result="2")
    reply = await app.handle_callback(ahead)

    assert runs == ["start", "confirm:2"]
    assert events.last(CALL) is Disposition.REPLY
    assert command_id(reply) == "3:main:bye"  # numbered past the echoed id
    stored = await store.record(CALL)
    assert stored["current"] == "3:main:bye"
    assert stored["seq"] == 3
    assert any("ahead of the stored call" in m for m in logged(caplog, logging.WARNING))


async def test_two_copies_of_the_current_report_at_once_run_the_step_once(
    make_app: Callable[..., App], probe: Probe
) -> None:
    app = make_app()
    events = Recorder(app)
    runs: list[Any] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        runs.append(call.digits)
        entered.set()
        await gate.wait()
        return play(tts(f"You chose {call.digits}")).then("choice")

    r0 = await app.handle_callback(first(CALL))
    try:
        one = spawn(app.handle_callback(report(CALL, r0, "4")))
        await within(entered.wait())
        two = spawn(app.handle_callback(report(CALL, r0, "4")))
        await probe.wait(f"lock:{CALL}", 3)  # the copy asks for the lock the first holds
    finally:
        gate.set()
    a, b = await within(asyncio.gather(one, two))
    assert a == b
    assert runs == ["4"]
    assert sorted(events.dispositions(CALL)[1:]) == sorted(
        [Disposition.REPLY, Disposition.DUPLICATE]
    )
