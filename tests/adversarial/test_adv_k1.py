"""K1 (adversarial): only the current command's report is new."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, Flow, hangup, play, read, tts
from rtcontrol.core.ports import Reply
from rtcontrol.events import Disposition
from tests.core.kit import (
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    body,
    command_id,
    first,
    report,
    request,
    spawn,
    within,
)

from .helpers import assert_sendable

CALL = 91_001


def survey(app: App) -> list[str]:
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
        return read(tts("Confirm?"), max_digits=1).then(confirm)

    @app.step
    async def confirm(call: Call) -> Command:
        runs.append(f"confirm:{call.digits}")
        call.state["steps"].append("confirm")
        return play(tts("Thanks")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        runs.append("bye")
        return hangup()

    @app.step
    async def transfer(call: Call) -> Command:
        runs.append(f"transfer:{call.interrupted}")
        return play(tts("Transferring")).then(bye)

    return runs


class Billing(Flow):
    """A second flow with a step named like one of main's."""

    async def start(self, call: Call) -> Command:
        return read(tts("Account?"), max_digits=4).then(self.confirm)

    async def confirm(self, call: Call) -> Command:
        return hangup()


async def test_made_up_id_naming_another_flow_is_not_a_lost_write_and_runs_nothing(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """Every id we send for a call carries the call's flow (or "-"). An id ahead of the
    record but naming another flow cannot be one of ours whose write was lost: it must
    run nothing and change nothing (README: any other report runs nothing)."""
    app = make_app()
    runs = survey(app)
    app.add_flow(Billing, name="billing")
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    assert command_id(r0) == "1:main:choice"
    before = await store.record(CALL)

    forged = request(CALL, command="read", command_id="7:billing:confirm", command_result="1")
    reply = await app.handle_callback(forged)

    assert runs == ["start"], "a step of the call's flow ran for an id naming another flow"
    assert events.last(CALL) is Disposition.STALE
    assert await store.record(CALL) == before
    assert_sendable(reply)


@pytest.mark.parametrize(
    "cid",
    [
        "",
        "0",
        "::",
        "1:main",
        "1:main:",
        ":main:choice",
        "-1:main:choice",
        "1:main:choice ",
        " 1:main:choice",
        "1:MAIN:choice",
        "0:-:@hold",
        "0:-:@replay",
        "1:main:choice:extra",
        -1,
        0,
        1,
        2**70,
        "\u0661:main:choice",  # ARABIC-INDIC DIGIT ONE: the same seq as the current command
    ],
    ids=repr,
)
async def test_report_with_an_id_we_never_sent_runs_nothing_and_changes_nothing(
    make_app: Callable[..., App], store: SpyStore, cid: Any
) -> None:
    app = make_app()
    runs = survey(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    before = await store.record(CALL)

    reply = await within(
        app.handle_callback(request(CALL, command="read", command_id=cid, command_result="1"))
    )

    assert runs == ["start"]
    assert events.last(CALL) in (Disposition.STALE, Disposition.DUPLICATE)
    assert await store.record(CALL) == before
    assert reply.status == 200
    assert_sendable(reply)
    # the real report still runs, once
    await app.handle_callback(report(CALL, r0, "1"))
    assert runs == ["start", "choice:1"]


async def test_replays_of_two_successive_replay_holds_run_the_step_once(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """Store down twice in a row: the report is wrapped, then re-wrapped. The platform
    then delivers a late copy of the first replay and the second replay: one run."""
    app = make_app()
    runs = survey(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    store.down = True
    h1 = body(await app.handle_callback(report(CALL, r0, "3")))
    assert h1["command"] == "wait"
    replay1 = request(CALL, command="wait", command_id=h1["command_id"], variables=h1["variables"])
    h2 = body(await app.handle_callback(replay1))  # still down: held again
    assert h2["variables"]["_rtc"]["n"] == 2
    replay2 = request(CALL, command="wait", command_id=h2["command_id"], variables=h2["variables"])
    store.down = False

    a = await app.handle_callback(replay2)
    b = await app.handle_callback(replay1)  # the late copy of the first replay
    c = await app.handle_callback(report(CALL, r0, "3"))  # and the original report
    assert runs == ["start", "choice:3"]
    assert a.body == b.body == c.body
    assert events.dispositions(CALL)[-2:] == [Disposition.DUPLICATE, Disposition.DUPLICATE]
    assert "_rtc" not in body(a)["variables"]


async def test_copy_arriving_while_step_goes_behind_the_hold_is_replayed_to_the_hold(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    """A copy of report R arrives while R's step runs (lock busy past lock_wait): it is
    replayed; by then R's step went behind the hold. The replay is a duplicate: it gets
    the hold, and the step runs once, delivered once, with one break."""
    app = make_app(handler_budget=0.6, lock_wait=0.05)
    events = Recorder(app)
    runs: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(slow)

    @app.step
    async def slow(call: Call) -> Command:
        runs.append(call.digits or "")
        entered.set()
        await gate.wait()
        return play(tts("Done")).then(slow)

    r0 = await app.handle_callback(first(CALL))
    try:
        original = spawn(app.handle_callback(report(CALL, r0, "42")))
        await within(entered.wait())
        copy = body(await within(app.handle_callback(report(CALL, r0, "42"))))
        assert copy["command_id"].endswith(":@replay")
        hold = await within(original)
        assert command_id(hold).endswith(":@hold")
        replay = request(
            CALL, command="wait", command_id=copy["command_id"], variables=copy["variables"]
        )
        again = await within(app.handle_callback(replay))
        assert again == Reply(hold.body)
        assert events.last(CALL) is Disposition.DUPLICATE
    finally:
        gate.set()
    await within(app.settle())
    assert runs == ["42"]
    assert control.breaks == [CALL]


async def test_two_interrupts_at_once_send_one_break_and_the_last_action_wins(
    make_app: Callable[..., App], control: FakeControl, probe: Probe
) -> None:
    app = make_app()
    runs = survey(app)
    r0 = await app.handle_callback(first(CALL))
    gate = asyncio.Event()
    control.break_gate = gate
    try:
        one = spawn(app.interrupt(CALL, then="transfer"))
        await probe.wait("break", 1)  # the first holds the lock, its break in flight
        two = spawn(app.interrupt(CALL, then=hangup()))
        await probe.wait(f"lock:{CALL}", 3)  # the second asks for the lock
    finally:
        gate.set()
    await within(asyncio.gather(one, two))
    assert control.breaks == [CALL]
    reply = await app.handle_callback(report(CALL, r0, ""))
    assert body(reply)["command"] == "hangup"
    assert runs == ["start"]


async def test_duplicate_of_the_broken_report_racing_the_original_runs_the_action_once(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app(handler_budget=2.0)
    events = Recorder(app)
    runs: list[str] = []
    entered = asyncio.Event()
    gate = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        return play(tts("Hold music")).then(start)

    @app.step
    async def agent(call: Call) -> Command:
        runs.append("agent")
        entered.set()
        await gate.wait()
        return play(tts("Connecting")).then(agent)

    r0 = await app.handle_callback(first(CALL))
    assert await app.interrupt(CALL, then="agent") is True
    try:
        one = spawn(app.handle_callback(report(CALL, r0, "")))
        await within(entered.wait())
        two = spawn(app.handle_callback(report(CALL, r0, "")))
        await asyncio.sleep(0)  # let the copy reach the lock (ordering is not required)
    finally:
        gate.set()
    a, b = await within(asyncio.gather(one, two))
    assert a.body == b.body
    assert runs == ["agent"]
    assert sorted(events.dispositions(CALL)[-2:]) == sorted(
        [Disposition.INTERRUPT, Disposition.DUPLICATE]
    )
    assert control.breaks == [CALL]
