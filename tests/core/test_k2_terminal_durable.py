"""K2: a terminal event is never acknowledged before it is durable.

A HANGUP the store cannot take gets 503 and is kept (and retried) by the worker;
``on_hangup`` runs once it is recorded, exactly once. A step that leaves
``call.state`` the store cannot keep gets the fallback, with the state it had before,
and frees the call's lock.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, Flow, play, read, tts
from rtcontrol.core.hangups import REFUSED_BODY
from rtcontrol.core.ports import Reply
from rtcontrol.events import Disposition, HangupHandled

from .kit import (
    FakeControl,
    Probe,
    Recorder,
    SpyStore,
    first,
    hangup_after,
    is_fallback,
    logged,
    report,
    within,
)

CALL = 72_001


def counter_app(app: App) -> list[dict[str, Any]]:
    """start (state n=1) -> more (n=2) -> ...; returns the states on_hangup saw."""
    hangups: list[dict[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(more)

    @app.step
    async def more(call: Call) -> Command:
        call.state["n"] += 1
        return read(tts("More?"), max_digits=4).then(more)

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append(dict(call.state))

    return hangups


async def test_hangup_while_the_store_is_down_is_refused_then_kept_and_run_once(
    make_app: Callable[..., App], store: SpyStore, probe: Probe
) -> None:
    app = make_app()
    hangups = counter_app(app)
    events = Recorder(app)
    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, "1"))

    store.down = True
    refused = await app.handle_callback(hangup_after(CALL, r1))
    assert refused == Reply(REFUSED_BODY, 503)
    assert events.last(CALL) is Disposition.REFUSED
    downs = probe.counts["store-down"]
    await probe.wait("store-down", downs + 1)  # the worker retries it...
    assert hangups == []  # ...and nothing ran while it was not durable

    store.down = False
    await within(app.settle())
    assert hangups == [{"n": 2}]
    record = await store.record(CALL)
    assert record["ended"] is True
    assert record["hangup"]["done"] is True
    assert [(e.ok, e.attempt) for e in events.of(HangupHandled)] == [(True, 1)]

    again = await app.handle_callback(hangup_after(CALL, r1))  # the platform re-sends it
    await within(app.settle())
    assert again == Reply(b"{}")
    assert events.last(CALL) is Disposition.IGNORED
    assert hangups == [{"n": 2}]


async def test_hangup_resent_while_still_down_is_refused_again_and_runs_once(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    hangups = counter_app(app)
    r0 = await app.handle_callback(first(CALL))
    store.down = True
    for _ in range(3):
        assert (await app.handle_callback(hangup_after(CALL, r0))).status == 503
    assert app.engine.hangups._kept == {CALL}  # one retry loop, not three
    store.down = False
    await within(app.settle())
    assert hangups == [{"n": 1}]
    assert (await app.handle_callback(hangup_after(CALL, r0))).body == b"{}"
    await within(app.settle())
    assert hangups == [{"n": 1}]


async def test_hangup_whose_write_fails_is_refused_and_runs_later_with_the_state(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    app = make_app()
    hangups = counter_app(app)
    r0 = await app.handle_callback(first(CALL))
    r1 = await app.handle_callback(report(CALL, r0, "1"))
    r2 = await app.handle_callback(report(CALL, r1, "2"))

    store.fail_writes = True  # lock and read work, the write does not
    caplog.set_level(logging.ERROR, logger="rtcontrol")
    refused = await app.handle_callback(hangup_after(CALL, r2))
    assert refused.status == 503
    assert hangups == []
    assert "ended" not in await store.record(CALL)  # nothing recorded
    assert await store.lock_is_free(CALL)  # a failed write frees the lock
    assert any("could not save the call" in m for m in logged(caplog))

    store.fail_writes = False
    await within(app.settle())
    assert hangups == [{"n": 3}]
    assert (await store.record(CALL))["ended"] is True


async def test_first_post_is_a_hangup_while_the_store_is_down(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    app = make_app()
    hangups = counter_app(app)
    store.down = True
    assert (await app.handle_callback(first(CALL, status="HANGUP"))).status == 503
    assert hangups == []
    store.down = False
    await within(app.settle())
    assert hangups == [{}]
    assert (await store.record(CALL))["hangup"]["done"] is True


async def test_unanswered_outbound_call_while_the_store_blinks_is_not_acknowledged(
    make_app: Callable[..., App], store: SpyStore
) -> None:
    """The lock is taken, then the store fails reading the start_call binding: the
    NOANSWER must not be acknowledged (nor raise): 503, kept, on_hangup later."""
    app = make_app()
    app.serving = True
    seen: list[dict[str, Any]] = []

    class Reminder(Flow):
        async def start(self, call: Call) -> Command:
            return play(tts("Your appointment"))

        async def on_hangup(self, call: Call) -> None:
            seen.append(dict(call.state))

    app.add_flow(Reminder, name="reminder")
    request_hash = await app.start_call("+33612345678", flow="reminder", data={"ticket": 7})

    store.blink = "rtc:req:"
    reply = await within(
        app.handle_callback(first(CALL, status="NOANSWER", request_hash=request_hash))
    )
    assert reply.status == 503
    assert seen == []
    store.blink = None
    await within(app.settle())
    assert seen == [{"ticket": 7}]


# ------------------------------------------------------------------ state the store cannot keep


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        (datetime.datetime(2026, 11, 28, 10, 0), "datetime is not JSON"),
        ({"vip", "fr"}, "set is not JSON"),
        (float("nan"), "non-finite number"),
        ({1: "one"}, "object keys must be strings"),
    ],
    ids=["datetime", "set", "nan", "int-key"],
)
async def test_unstorable_state_gets_the_fallback_keeps_the_previous_state_and_frees_the_lock(
    make_app: Callable[..., App],
    store: SpyStore,
    caplog: pytest.LogCaptureFixture,
    value: Any,
    cause: str,
) -> None:
    app = make_app(lock_lease=5.0)  # a lock left held would block the HANGUP for seconds
    events = Recorder(app)
    hangups: list[dict[str, Any]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(bad)

    @app.step
    async def bad(call: Call) -> Command:
        call.state["n"] = 2
        call.state["when"] = value
        return play(tts("Noted")).then(bad)

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append(dict(call.state))

    r0 = await app.handle_callback(first(CALL))
    caplog.set_level(logging.INFO, logger="rtcontrol")
    reply = await app.handle_callback(report(CALL, r0, "1"))

    assert is_fallback(reply)
    assert events.last(CALL) is Disposition.FALLBACK
    errors = logged(caplog)
    assert len(errors) == 1, errors
    assert "main.bad" in errors[0]
    assert "call.state" in errors[0]
    assert cause in errors[0]
    assert (await store.record(CALL))["state"] == {"n": 1}  # the state before the step
    assert await store.lock_is_free(CALL)

    loop = asyncio.get_running_loop()
    began = loop.time()
    assert (await within(app.handle_callback(hangup_after(CALL, reply)))).body == b"{}"
    assert loop.time() - began < 2.0  # handled at once, not after the 5 s lease
    await within(app.settle())
    assert hangups == [{"n": 1}]


async def test_unstorable_state_in_an_outbound_start_keeps_the_start_call_data(
    make_app: Callable[..., App], store: SpyStore, control: FakeControl
) -> None:
    """The state before an outbound call's first step is the start_call data: a step
    that leaves unstorable state must not wipe it (on_hangup needs it)."""
    app = make_app()
    app.serving = True
    seen: list[dict[str, Any]] = []

    class Reminder(Flow):
        async def start(self, call: Call) -> Command:
            call.state["when"] = datetime.datetime(2026, 11, 28, 10, 0)
            return play(tts("Your appointment"))

        async def on_hangup(self, call: Call) -> None:
            seen.append(dict(call.state))

    app.add_flow(Reminder, name="reminder")
    request_hash = await app.start_call("+33612345678", flow="reminder", data={"ticket": 9})
    reply = await app.handle_callback(first(CALL, request_hash=request_hash))
    assert is_fallback(reply)
    assert (await store.record(CALL)).get("state") == {"ticket": 9}
    await app.handle_callback(hangup_after(CALL, reply, request_hash=request_hash))
    await within(app.settle())
    assert seen == [{"ticket": 9}]
