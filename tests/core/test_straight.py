"""Straight-line flows in the engine (no HTTP): resume, replay on another worker,
``once``, the determinism guard, versions and patches, interrupts at the pending
await, hang-ups raising in the flow, the deadline between awaits, and the bounds.

"Another worker" is a second App on the same store: its own engine and its own
coroutine cache, as a second process would have.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import (
    App,
    CallHungUp,
    Command,
    CommandFailedError,
    Interrupted,
    LiveCall,
    RegistrationError,
    hangup,
    play,
    tts,
)
from rtcontrol.core.journal import Journal
from rtcontrol.events import Disposition

from .kit import (
    FakeControl,
    Recorder,
    SpyStore,
    body,
    first,
    is_fallback,
    logged,
    report,
    step_of,
    within,
)

CALL = 91_001
MUSIC = tts("Please hold.")


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


def command(reply: Any) -> str:
    return str(body(reply)["command"])


async def journal_of(store: SpyStore, callid: int = CALL) -> Journal:
    data = (await store.record(callid))["journal"]
    return Journal.from_json(data)


def register_ivr(app: App, trail: list[Any], starts: list[int]) -> None:
    """ask a number, look it up once, greet, ask 1/2, then dial or say goodbye."""
    looked_up: list[str] = []

    async def find(digits: str) -> dict[str, Any]:
        looked_up.append(digits)
        trail.append(f"find:{digits}")
        return {"name": f"customer {digits}", "tags": ("a", "b")}

    @app.inbound_call
    async def support(call: LiveCall) -> None:
        starts.append(call.id)
        digits = await call.read(tts("Enter your number"), max_digits=8)
        trail.append(("digits", digits))
        customer = await call.once(find, digits)
        trail.append(("customer", customer))
        await call.play(tts(f"Hello {customer['name']}"))
        if await call.read(tts("Press 1 for an agent"), max_digits=1) == "1":
            await call.dialout("+33100000001")
        else:
            await call.play(tts("Goodbye"))


# ------------------------------------------------------------------ resume and replay


async def test_one_worker_resumes_its_coroutine_without_replaying(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    trail: list[Any] = []
    starts: list[int] = []
    register_ivr(app, trail, starts)

    r0 = await app.handle_callback(first(CALL))
    assert command(r0) == "read"
    assert step_of(r0) == "run"
    r1 = await app.handle_callback(report(CALL, r0, "1234"))
    assert media(r1) == "Hello customer 1234"
    r2 = await app.handle_callback(report(CALL, r1))
    assert command(r2) == "read"
    r3 = await app.handle_callback(report(CALL, r2, "1"))
    assert command(r3) == "dialout"
    assert body(r3)["params"]["targets"][0]["number"] == "+33100000001"
    r4 = await app.handle_callback(report(CALL, r3, "ANSWER"))
    assert command(r4) == "hangup"
    assert starts == [CALL]  # one coroutine, resumed four times
    assert trail == [
        ("digits", "1234"),
        "find:1234",
        ("customer", {"name": "customer 1234", "tags": ["a", "b"]}),  # as JSON would
    ]
    journal = await journal_of(store)
    assert journal.done
    assert [type(e).__name__ for e in journal.entries] == [
        "Sent",
        "Once",
        "Sent",
        "Sent",
        "Sent",
    ]


@pytest.mark.parametrize(("cache", "runs"), [(0, 5), (100, 2)], ids=["no-cache", "cache"])
async def test_every_callback_on_another_worker_replays_the_same_values(
    make_app: Callable[..., App], cache: int, runs: int
) -> None:
    """No cache: every callback replays from the top. With caches, each worker's copy
    catches up from the journal (it replays only the steps the other worker ran)."""
    trails: list[list[Any]] = [[], []]
    starts: list[int] = []
    apps = [make_app(flow_cache=cache), make_app(flow_cache=cache)]
    for app, trail in zip(apps, trails, strict=True):
        register_ivr(app, trail, starts)

    results = ["1234", "", "2"]
    reply = await apps[0].handle_callback(first(CALL))
    for n, result in enumerate(results, start=1):
        reply = await apps[n % 2].handle_callback(report(CALL, reply, result))
    assert media(reply) == "Goodbye"
    last = await apps[0].handle_callback(report(CALL, reply))
    assert command(last) == "hangup"
    assert len(starts) == runs
    # ... and the side effect ran once, ever: the replays got its journaled value.
    assert [t for t in trails[0] + trails[1] if isinstance(t, str)] == ["find:1234"]
    seen = [t for t in trails[0] + trails[1] if t[0] == "customer"]
    assert seen
    assert all(t == ("customer", {"name": "customer 1234", "tags": ["a", "b"]}) for t in seen)


async def test_a_worker_behind_catches_up_from_the_journal(
    make_app: Callable[..., App],
) -> None:
    """Worker A holds an old copy: it replays only what it missed, checked."""
    starts: list[int] = []
    a, b = make_app(), make_app()
    for app in (a, b):
        register_ivr(app, [], starts)
    r0 = await a.handle_callback(first(CALL))
    r1 = await b.handle_callback(report(CALL, r0, "42"))  # b replays (start 2)
    r2 = await a.handle_callback(report(CALL, r1))  # a's copy is behind: fast-forwards
    assert command(r2) == "read"
    assert len(starts) == 2
    assert len(a.registry.sessions) == 1


# ------------------------------------------------------------------ determinism


async def test_a_replay_asking_for_another_command_gets_the_fallback_and_names_both(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_app(), make_app()

    @a.inbound_call
    async def greet(call: LiveCall) -> None:
        await call.read(tts("Your PIN"), max_digits=4)
        await call.play(tts("Thanks"))

    @b.inbound_call(name="greet")
    async def greet_changed(call: LiveCall) -> None:  # changed without a new version
        with contextlib.suppress(Exception):  # the guard cannot be swallowed by the flow
            await call.read(tts("Your PIN please"), max_digits=6)
        await call.play(tts("Thanks"))

    r0 = await a.handle_callback(first(CALL))
    with caplog.at_level(logging.ERROR):
        r1 = await b.handle_callback(report(CALL, r0, "1234"))
    assert is_fallback(r1)
    text = "\n".join(logged(caplog))
    assert "DeterminismError" in text
    assert "flow greet" in text
    assert "journal position 0" in text
    assert "Your PIN please" in text  # the command asked for, in full
    assert "max_digits=6" in text
    assert "journal recorded read(...) with parameters of digest" in text


async def test_a_branch_on_unjournaled_input_is_caught_at_replay(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    flips = iter([True, False])
    a, b = make_app(), make_app()
    for app in (a, b):

        @app.inbound_call(name="coin")
        async def coin(call: LiveCall) -> None:
            if next(flips):  # the wall clock, randomness...: not in once()
                await call.play(tts("heads"))
            else:
                await call.wait(1)
            await call.play(tts("end"))

    r0 = await a.handle_callback(first(CALL))
    assert media(r0) == "heads"
    r1 = await b.handle_callback(report(CALL, r0))
    assert is_fallback(r1)
    assert any("wait(seconds=1)" in m and "recorded play(" in m for m in logged(caplog))


async def test_once_in_a_different_place_is_a_determinism_error(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = make_app(), make_app()

    def lookup() -> int:
        return 1

    def other() -> int:
        return 2

    @a.inbound_call(name="f")
    async def f1(call: LiveCall) -> None:
        await call.once(lookup)
        await call.play(tts("x"))

    @b.inbound_call(name="f")
    async def f2(call: LiveCall) -> None:
        await call.once(other)
        await call.play(tts("x"))

    r0 = await a.handle_callback(first(CALL))
    r1 = await b.handle_callback(report(CALL, r0))
    assert is_fallback(r1)
    assert any("once(" in m and "other" in m and "lookup" in m for m in logged(caplog))


# ------------------------------------------------------------------ deploys mid-call


async def test_a_call_started_on_v1_ends_on_v1_after_a_deploy_of_v2(
    make_app: Callable[..., App],
) -> None:
    old, new = make_app(), make_app()

    @old.inbound_call(version="1")
    async def menu(call: LiveCall) -> None:
        await call.read(tts("v1 menu"), max_digits=1)
        await call.play(tts("v1 bye"))

    async def menu_v2(call: LiveCall) -> None:
        await call.wait(1)  # a new first command: v1's journal would not replay on it
        await call.read(tts("v2 menu"), max_digits=1)
        await call.play(tts("v2 bye"))

    new.call_flow(menu_v2, name="menu", version="2", inbound=True)
    new.call_flow(menu, name="menu", version="1", retired=True)  # kept for live calls

    r0 = await old.handle_callback(first(CALL))
    r1 = await new.handle_callback(report(CALL, r0, "5"))
    assert media(r1) == "v1 bye"  # the call stays on the version it started on
    fresh = await new.handle_callback(first(CALL + 1))
    assert command(fresh) == "wait"  # new calls start on v2


async def test_a_version_no_longer_registered_gets_the_fallback_saying_why(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    old, new = make_app(), make_app()

    @old.inbound_call(version="1")
    async def menu(call: LiveCall) -> None:
        await call.read(tts("v1"), max_digits=1)

    @new.inbound_call(name="menu", version="2")
    async def menu_v2(call: LiveCall) -> None:
        await call.read(tts("v2"), max_digits=1)

    r0 = await old.handle_callback(first(CALL))
    r1 = await new.handle_callback(report(CALL, r0, "5"))
    assert is_fallback(r1)
    assert any("version '1'" in m and "retired=True" in m for m in logged(caplog))


async def test_patched_keeps_old_calls_on_the_old_branch(make_app: Callable[..., App]) -> None:
    old, new = make_app(), make_app()

    @old.inbound_call(name="greet")
    async def greet(call: LiveCall) -> None:
        await call.read(tts("menu"), max_digits=1)
        await call.play(tts("old goodbye"))

    @new.inbound_call(name="greet")
    async def greet_patched(call: LiveCall) -> None:
        await call.read(tts("menu"), max_digits=1)
        if call.patched("polite-goodbye"):
            await call.play(tts("new goodbye"))
        else:
            await call.play(tts("old goodbye"))

    # a call that passed the patch point on the old code: replays as before
    r0 = await old.handle_callback(first(CALL))
    r1 = await old.handle_callback(report(CALL, r0, "1"))
    r2 = await new.handle_callback(report(CALL, r1))
    assert command(r2) == "hangup"
    # a call that reaches the patch point after the deploy takes the new branch
    s0 = await old.handle_callback(first(CALL + 1))
    s1 = await new.handle_callback(report(CALL + 1, s0, "1"))
    assert media(s1) == "new goodbye"


def test_a_second_current_version_is_refused(make_app: Callable[..., App]) -> None:
    app = make_app()

    async def f(call: LiveCall) -> None:
        return None

    async def g(call: LiveCall) -> None:
        return None

    app.call_flow(f, name="f", version="1")
    with pytest.raises(RegistrationError, match="retired=True"):
        app.call_flow(g, name="f", version="2")
    with pytest.raises(RegistrationError, match="already registered"):
        app.call_flow(g, name="f", version="1", retired=True)


def test_a_step_function_is_refused_as_a_straight_line_flow(make_app: Callable[..., App]) -> None:
    app = make_app()

    def plain(call: LiveCall) -> None:
        return None

    async def two(call: LiveCall, other: int) -> None:
        return None

    with pytest.raises(RegistrationError, match="async def"):
        app.call_flow(plain)
    with pytest.raises(RegistrationError, match="exactly one argument"):
        app.call_flow(two)


# ------------------------------------------------------------------ interrupts


async def hold_music(call: LiveCall) -> None:
    """Hold music until interrupted, then an agent."""
    try:
        while True:
            await call.play(MUSIC)
    except Interrupted as exc:
        call.state["interrupted_after"] = str(exc.outcome)
    await call.dialout("+33100000009")


async def to_agent(call: LiveCall) -> None:
    """A module-level sub-flow an interrupt may run (any worker finds it by name)."""
    await call.play(tts("An agent is free"))
    await call.wait(1)


@pytest.mark.parametrize("then", ["none", "command", "subflow"])
async def test_an_interrupt_reaches_the_pending_await_of_a_long_play(
    make_app: Callable[..., App], control: FakeControl, then: str
) -> None:
    app = make_app()
    events = Recorder(app)
    app.call_flow(hold_music, inbound=True)
    r = await app.handle_callback(first(CALL))
    r = await app.handle_callback(report(CALL, r))  # the music played once, again
    assert media(r) == "Please hold."
    action = {"none": None, "command": play(tts("Transferring")), "subflow": to_agent}[then]
    assert await app.interrupt(CALL, then=action) is True
    assert control.breaks == [CALL]  # one break
    r = await app.handle_callback(report(CALL, r))  # the broken play reports
    assert events.last(CALL) is Disposition.INTERRUPT
    if then == "command":
        assert media(r) == "Transferring"
        r = await app.handle_callback(report(CALL, r))
    elif then == "subflow":
        assert media(r) == "An agent is free"
        r = await app.handle_callback(report(CALL, r))
        assert command(r) == "wait"
        r = await app.handle_callback(report(CALL, r))
    assert command(r) == "dialout"  # the flow caught Interrupted and went on
    assert control.breaks == [CALL]


async def test_an_interrupt_replayed_on_another_worker_runs_its_then_again(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    a, b = make_app(), make_app()
    for app in (a, b):
        app.call_flow(hold_music, inbound=True)
    r = await a.handle_callback(first(CALL))
    await a.interrupt(CALL, then=to_agent)
    r = await a.handle_callback(report(CALL, r))
    assert media(r) == "An agent is free"
    r = await b.handle_callback(report(CALL, r))  # b replays: the interrupt is journaled
    assert command(r) == "wait"
    r = await a.handle_callback(report(CALL, r))
    assert command(r) == "dialout"


async def test_an_interrupt_the_flow_does_not_catch_ends_the_call_quietly(
    make_app: Callable[..., App],
) -> None:
    app = make_app()

    @app.inbound_call
    async def music(call: LiveCall) -> None:
        while True:
            await call.play(MUSIC)

    r = await app.handle_callback(first(CALL))
    await app.interrupt(CALL)
    r = await app.handle_callback(report(CALL, r))
    assert command(r) == "hangup"


async def test_a_flow_cannot_interrupt_its_own_call(make_app: Callable[..., App]) -> None:
    app = make_app()
    errors: list[str] = []

    @app.inbound_call
    async def selfish(call: LiveCall) -> None:
        try:
            await app.interrupt(call.id)
        except RegistrationError as exc:
            errors.append(str(exc))
        await call.play(tts("ok"))

    r = await within(app.handle_callback(first(CALL)), 3.0)
    assert media(r) == "ok"
    assert errors
    assert "cannot interrupt its own call" in errors[0]


def test_an_interrupt_sub_flow_must_be_findable_by_name() -> None:
    from rtcontrol.core.straight import script_action

    async def local(call: LiveCall) -> None:
        return None

    with pytest.raises(RegistrationError, match="module-level"):
        script_action(local)
    assert script_action(to_agent).step is not None


# ------------------------------------------------------------------ hang-ups


def register_cleanup(app: App, trail: list[str]) -> None:
    @app.inbound_call
    async def guarded(call: LiveCall) -> None:
        try:
            await call.read(tts("first"), max_digits=1)
            await call.read(tts("second"), max_digits=1)
        except CallHungUp:
            trail.append("hung-up")
            raise
        finally:
            trail.append(f"finally:{call.id}")

    @app.on_hangup
    async def ended(call: Any) -> None:
        trail.append("on_hangup")


@pytest.mark.parametrize("where", ["same-worker", "other-worker"])
async def test_a_hang_up_raises_at_the_pending_await_and_finally_runs_once(
    make_app: Callable[..., App], where: str
) -> None:
    trail: list[str] = []
    a = make_app()
    register_cleanup(a, trail)
    b = a
    if where == "other-worker":
        b = make_app()
        register_cleanup(b, trail)
    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0, "1"))
    assert media(r1) == "second"
    end = await b.handle_callback(report(CALL, r1, status="HANGUP"))
    assert end.status == 200
    await within(b.settle())
    await within(a.settle())
    assert trail == ["hung-up", f"finally:{CALL}", "on_hangup"]


async def test_a_hang_up_during_once_lets_it_finish_then_raises(
    make_app: Callable[..., App],
) -> None:
    app = make_app(handler_budget=0.3)
    trail: list[str] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def charge() -> str:
        entered.set()
        await gate.wait()
        trail.append("charged")
        return "receipt-1"

    @app.inbound_call
    async def pay(call: LiveCall) -> None:
        try:
            await call.read(tts("confirm"), max_digits=1)
            receipt = await call.once(charge)
            trail.append(f"receipt:{receipt}")
            await call.play(tts("paid"))
        finally:
            trail.append("finally")

    r0 = await app.handle_callback(first(CALL))
    hold = await within(app.handle_callback(report(CALL, r0, "1")))
    assert step_of(hold) == "@hold"  # once() is slow: the caller is on hold
    await within(entered.wait())
    end = await app.handle_callback(report(CALL, hold, status="HANGUP"))
    assert end.status == 200
    gate.set()
    await within(app.settle())
    assert trail == ["charged", "receipt:receipt-1", "finally"]


# ------------------------------------------------------------------ the deadline


async def test_slow_code_between_awaits_puts_the_caller_on_hold(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app(handler_budget=0.3)
    events = Recorder(app)
    gate = asyncio.Event()

    @app.inbound_call
    async def slow(call: LiveCall) -> None:
        await call.read(tts("number"), max_digits=4)
        await gate.wait()  # a slow lookup between two awaits
        await call.play(tts("found"))

    r0 = await app.handle_callback(first(CALL))
    hold = await within(app.handle_callback(report(CALL, r0, "12")))
    assert step_of(hold) == "@hold"
    assert events.last(CALL) is Disposition.HOLD
    gate.set()
    await within(app.settle())
    assert control.breaks == [CALL]  # the delivery ended the hold
    delivered = await app.handle_callback(report(CALL, hold))
    assert media(delivered) == "found"
    assert events.last(CALL) is Disposition.DELIVERED
    done = await app.handle_callback(report(CALL, delivered))
    assert command(done) == "hangup"


# ------------------------------------------------------------------ results and errors


async def test_a_command_error_raises_command_failed_in_the_flow(
    make_app: Callable[..., App],
) -> None:
    app = make_app()
    caught: list[tuple[str, str]] = []

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        try:
            await call.play_record("missing.wav")
        except CommandFailedError as exc:
            caught.append((exc.command, exc.error))
        await call.play(tts("sorry"))

    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, error="file not found"))
    assert media(r1) == "sorry"
    assert caught == [("play_record", "file not found")]


async def test_typed_results_read_record_and_dialout(make_app: Callable[..., App]) -> None:
    app = make_app()
    seen: list[Any] = []

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        seen.append(await call.read(tts("x"), max_digits=2))
        seen.append(await call.read(tts("x"), max_digits=2))
        seen.append(await call.record(max_duration=10))
        seen.append(await call.dialout("+33100000001"))
        seen.append(await call.play_talk_detect(tts("hello")))

    r = await app.handle_callback(first(CALL))
    for result in ["42", "TIMEOUT", "rec-1.wav", "BUSY", "HUMAN"]:
        r = await app.handle_callback(report(CALL, r, result))
    from rtcontrol import DialFailed

    assert seen == ["42", None, "rec-1.wav", DialFailed("BUSY"), "HUMAN"]
    assert command(r) == "hangup"


@pytest.mark.parametrize(
    ("returns", "fallback"),
    [(None, False), ("command", False), ("text", True), ("raise", True)],
)
async def test_what_a_flow_returns_or_raises(
    make_app: Callable[..., App], returns: str | None, fallback: bool
) -> None:
    app = make_app()

    @app.inbound_call
    async def flow(call: LiveCall) -> Any:
        await call.play(tts("x"))
        if returns == "command":
            return play(tts("last words"))
        if returns == "text":
            return "not a command"
        if returns == "raise":
            raise ValueError("boom")
        return None

    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0))
    assert is_fallback(r1) is fallback
    if returns == "command":
        assert media(r1) == "last words"
        r2 = await app.handle_callback(report(CALL, r1))
        assert command(r2) == "hangup"
    elif returns is None:
        assert command(r1) == "hangup"


async def test_once_refuses_a_result_that_is_not_json(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        await call.once(lambda: {1, 2})
        await call.play(tts("x"))

    r0 = await app.handle_callback(first(CALL))
    assert is_fallback(r0)
    assert any("once(" in m for m in logged(caplog))


async def test_start_call_data_is_the_flows_state(
    make_app: Callable[..., App], control: FakeControl
) -> None:
    app = make_app()
    app.serving = True
    seen: list[Any] = []

    @app.outbound_call
    async def remind(call: LiveCall) -> None:
        seen.append(dict(call.state))
        call.state["step"] = "asked"
        await call.read(tts(f"Appointment {call.state['when']}"), max_digits=1)

    request_hash = await app.start_call("+33612345678", flow=remind, data={"when": "9am"})
    r0 = await app.handle_callback(first(CALL, request_hash=request_hash))
    assert media(r0) == "Appointment 9am"
    assert seen == [{"when": "9am"}]


# ------------------------------------------------------------------ bounds


async def test_the_coroutine_cache_stays_within_its_bound_and_evicted_calls_replay(
    make_app: Callable[..., App],
) -> None:
    app = make_app(flow_cache=2)
    starts: list[int] = []
    finals: list[str] = []

    @app.inbound_call
    async def ask(call: LiveCall) -> None:
        starts.append(call.id)
        digits = await call.read(tts("code"), max_digits=4)
        finals.append(f"{call.id}:{digits}")
        await call.play(tts("ok"))

    calls = range(CALL, CALL + 5)
    replies = {c: await app.handle_callback(first(c)) for c in calls}
    assert len(app.registry.sessions) == 2
    for c in calls:
        r = await app.handle_callback(report(c, replies[c], str(c)[-4:]))
        assert media(r) == "ok"
        assert len(app.registry.sessions) <= 2
    assert finals == [f"{c}:{str(c)[-4:]}" for c in calls]
    # LRU: each resumed call pushed out a suspended one, so each second callback replayed
    assert len(starts) == 5 + 5


async def test_a_journal_at_its_limit_gets_the_fallback_and_restart_keeps_it_bounded(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app(journal_limit=10)

    @app.inbound_call
    async def forever(call: LiveCall) -> None:
        while True:
            await call.play(MUSIC)

    @app.outbound_call
    async def forever_restarting(call: LiveCall) -> None:
        for _ in range(5):
            await call.play(MUSIC)
        call.restart()

    r = await app.handle_callback(first(CALL))
    for _ in range(9):
        r = await app.handle_callback(report(CALL, r))
        assert media(r) == "Please hold."
    r = await app.handle_callback(report(CALL, r))
    assert is_fallback(r)
    assert any("RTCONTROL_JOURNAL_LIMIT" in m for m in logged(caplog))

    app.serving = True
    request_hash = await app.start_call("+33612345678")
    other = CALL + 7
    r = await app.handle_callback(first(other, request_hash=request_hash))
    for _ in range(30):
        r = await app.handle_callback(report(other, r))
        assert media(r) == "Please hold."
        assert len((await journal_of(store, other)).entries) <= 5


async def test_journal_round_trips_through_json() -> None:
    from rtcontrol.core.actions import Action, ActionKind
    from rtcontrol.core.journal import Once, Patch, Report, Sent, digest

    journal = Journal("2", "abcd", {"k": 1})
    for entry in [
        Sent("read", digest({"media_id": "TTS|x|y", "max_digits": 1}), Report("1", "")),
        Once("find", {"a": [1, 2]}),
        Patch("p"),
        Sent("play", digest({"media_id": 0}), Report("", "", Action(ActionKind.COMMAND, hangup()))),
        Sent("wait", digest({"seconds": 1})),
    ]:
        journal.append(entry)
    again = Journal.from_json(journal.to_json())
    assert again.to_json() == journal.to_json()
    assert again.waiting == Sent("wait", digest({"seconds": 1}))
    from rtcontrol import read

    assert digest(read(tts("a"), max_digits=2).params) == digest(read(tts("a"), 2).params)
    assert digest(read(tts("a")).params) != digest(read(tts("b")).params)
    assert isinstance(again.entries[3], Sent)
    report_ = again.entries[3].report
    assert report_ is not None
    assert report_.action is not None
    assert isinstance(report_.action.command, Command)


def test_numbers_are_masked_in_what_goes_to_logs() -> None:
    from rtcontrol.core.journal import describe

    text = describe("dialout", {"targets": [{"number": "+33612345678"}]})
    assert "+33612345678" not in text
    assert "+33" in text
    assert "78" in text


async def test_both_styles_in_one_app_routed_by_app_hash(make_app: Callable[..., App]) -> None:
    from rtcontrol import Call, read

    app = make_app()

    @app.on_inbound("4346423A")
    async def step_style(call: Call) -> Command:
        return read(tts("step style"), max_digits=1).then(done)

    @app.step
    async def done(call: Call) -> Command:
        return hangup()

    @app.inbound_call("APPB0002")
    async def straight_style(call: LiveCall) -> None:
        await call.play(tts("straight style"))

    r_a = await app.handle_callback(first(CALL))
    assert media(r_a) == "step style"
    assert step_of(r_a) == "done"
    from .kit import request

    r_b = await app.handle_callback(
        request(CALL + 1, app="APPB0002", call_status="INCOMING_CALL", variables={})
    )
    assert media(r_b) == "straight style"
    assert step_of(r_b) == "run"


@pytest.mark.parametrize("where", ["same-worker", "other-worker"])
async def test_cleanup_after_a_hang_up_runs_once_and_reaches_on_hangup(
    make_app: Callable[..., App], where: str
) -> None:
    """In ``except CallHungUp`` a flow may save with ``once()`` and change ``call.state``;
    ``on_hangup`` sees that state; a dropped copy never saves."""
    saved: list[str] = []
    seen: list[dict[str, Any]] = []
    dropped: list[bool] = []

    def save(result: str) -> str:
        saved.append(result)
        return "ok"

    def register(app: App) -> None:
        @app.inbound_call(name="survey")
        async def survey(call: LiveCall) -> None:
            try:
                call.state["answer"] = await call.read(tts("q1"), max_digits=1)
                await call.read(tts("q2"), max_digits=1)
            except CallHungUp:
                call.state["ended"] = "hung-up"
                await call.once(save, f"partial:{call.state['answer']}")
                raise
            finally:
                dropped.append(call.dropped)

        @app.on_hangup
        async def ended(call: Any) -> None:
            seen.append(dict(call.state))

    a = make_app(flow_cache=10)
    register(a)
    b = a
    if where == "other-worker":
        b = make_app(flow_cache=10)
        register(b)
    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0, "4"))
    await b.handle_callback(report(CALL, r1, status="HANGUP"))
    await within(b.settle())
    await a.shutdown(timeout=2.0)  # drops a's copy, if it holds one
    assert saved == ["partial:4"]
    assert seen == [{"answer": "4", "ended": "hung-up"}]
    assert dropped.count(False) == 1  # the copy that ended the call; any other was dropped


async def test_a_call_that_ended_before_its_once_does_not_run_it_on_the_hang_up(
    make_app: Callable[..., App],
) -> None:
    """Hang-up while a slow once() runs on worker A; worker B ends the call by replay.
    B waits for A's copy to save what it reached (the once's result), so B's replay
    gets the result from the journal and never runs it a second time."""
    a, b = make_app(handler_budget=0.3), make_app(handler_budget=0.3)
    runs: list[str] = []
    entered, gate = asyncio.Event(), asyncio.Event()

    async def charge() -> str:
        runs.append("charge")
        entered.set()
        await gate.wait()
        return "ok"

    for app in (a, b):

        @app.inbound_call(name="pay")
        async def pay(call: LiveCall) -> None:
            await call.read(tts("confirm"), max_digits=1)
            await call.once(charge)
            await call.play(tts("paid"))

    r0 = await a.handle_callback(first(CALL))
    hold = await within(a.handle_callback(report(CALL, r0, "1")))
    await within(entered.wait())
    await b.handle_callback(report(CALL, hold, status="HANGUP"))
    gate.set()
    await within(b.settle())
    await within(a.settle())
    assert runs == ["charge"]


async def test_an_interrupt_from_an_app_without_the_calls_flow_says_so(
    make_app: Callable[..., App],
) -> None:
    serving, script = make_app(), make_app()
    serving.call_flow(hold_music, inbound=True)
    await serving.handle_callback(first(CALL))
    with pytest.raises(RegistrationError, match="does not register"):
        await script.interrupt(CALL, then=to_agent)
    assert await script.interrupt(CALL, then=play(tts("Transferring"))) is True


async def test_a_straight_line_flow_reaches_the_apps_dependencies(
    make_app: Callable[..., App],
) -> None:
    a, b = make_app(), make_app()
    served_by: list[Any] = []
    for app in (a, b):
        app.state.crm = {"name": "Ada"}

        @app.inbound_call(name="deps")
        async def deps(call: LiveCall) -> None:
            assert call.app is not None
            await call.play(tts(f"Hello {call.app.state.crm['name']}"))
            served_by.append(call.app)
            await call.play(tts("bye"))

    r0 = await a.handle_callback(first(CALL))
    assert media(r0) == "Hello Ada"
    r1 = await b.handle_callback(report(CALL, r0))  # replayed on b, with b's dependencies
    assert media(r1) == "bye"
    assert served_by == [b]
