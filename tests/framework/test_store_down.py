"""Store unavailable: hold the caller, carry the callback in variables, replay it; never a 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, RTRequest, hangup, read, tts

from .rig import FakeClient, Platform, Probe, SpyStore, step_of

APOLOGY = "TTS|TTS_EN-GB_SERENA|We are sorry, something went wrong. Please call again later."


def ivr(app: App) -> list[tuple[str, Any, dict[str, Any]]]:
    runs: list[tuple[str, Any, dict[str, Any]]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append(("start", call.status, dict(call.variables)))
        call.variables["lang"] = "fr"
        return read(tts("Your code?"), max_digits=4).then(check)

    @app.step
    async def check(call: Call) -> Command:
        runs.append(("check", call.digits, dict(call.variables)))
        return hangup()

    return runs


async def test_store_down_holds_and_replays_the_callback(
    app: App,
    platform: Platform,
    store: SpyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    runs = ivr(app)
    line = platform.line()
    await line.start()

    store.down = True
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        held = await line.report("1234")
    envelope = held["variables"]["_rtc"]
    assert {**held, "variables": {"lang": "fr"}} == {
        "command": "wait",
        "command_id": "0:main:@replay",
        "params": {"seconds": 1},
        "variables": {"lang": "fr"},
    }
    assert set(held["variables"]) == {"lang", "_rtc"}
    assert envelope["replay"] == ["read", "1:main:check", "1234", "", "UP"]
    assert envelope["n"] == 1
    assert isinstance(envelope["t"], float)  # when the first hold was given
    assert "holding the caller, store not ready" in caplog.text
    assert [r[0] for r in runs] == ["start"]  # nothing ran without the store

    store.down = False
    reply = await line.report("")  # the short wait ended: the platform echoes our variables
    assert reply["command"] == "hangup"
    assert reply["variables"] == {"lang": "fr"}  # rtcontrol's own data is gone
    # The original step ran with the original result and the caller's variables.
    assert runs[1] == ("check", "1234", {"lang": "fr"})


async def test_first_callback_while_the_store_is_down(
    app: App, platform: Platform, store: SpyStore
) -> None:
    runs = ivr(app)
    line = platform.line()
    store.down = True
    held = await line.start()
    assert held["command_id"] == "0:-:@replay"
    assert held["variables"]["_rtc"]["replay"] == ["", 0, "", "", "INCOMING_CALL"]
    store.down = False
    reply = await line.report("")
    assert step_of(reply) == "check"
    assert runs == [("start", "UP", {})]  # the call's status now: the wait answered it


async def test_fallback_after_max_replays_then_hangup_even_if_still_down(
    make_app: Callable[..., App], serve: Callable[..., Platform], store: SpyStore
) -> None:
    app = make_app(max_replays=2)
    runs = ivr(app)
    line = serve(app).line()
    await line.start()
    store.down = True
    first = await line.report("1234")
    second = await line.report("")
    assert (first["variables"]["_rtc"]["n"], second["variables"]["_rtc"]["n"]) == (1, 2)
    apology = await line.report("")
    assert apology["params"] == {"media_id": APOLOGY}
    assert "_rtc" not in apology["variables"]
    assert (await line.report("0"))["command"] == "hangup"  # no state needed to say goodbye
    assert [r[0] for r in runs] == ["start"]


async def test_hangup_while_the_store_is_down_is_refused_kept_and_run_once_back(
    app: App, platform: Platform, store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """K2: a terminal event is never acknowledged before its effect is durable."""
    ivr(app)
    ended: list[tuple[str, str]] = []

    @app.on_hangup
    async def done(call: Call) -> None:
        ended.append((str(call.status), call.idempotency_key))

    line = platform.line()
    await line.start()
    store.down = True
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        response = await platform.post(line.report_body(status="HANGUP"))
    assert response.status_code == 503
    assert response.json() == {"error": "store unavailable: hang-up kept for retry"}
    assert "hang-up not recorded yet" in caplog.text
    assert ended == []  # not run on a call whose state could not be read
    store.down = False  # Redis is back: the worker that kept the hang-up records it
    await asyncio.wait_for(app.settle(), 10)
    assert ended == [("HANGUP", f"{line.callid}:on_hangup")]
    assert (await store.record(line.callid))["ended"] is True
    # The platform re-sends it (it got a 503): answered, and on_hangup not run again.
    assert await line.hang_up() == {}
    assert len(ended) == 1


async def test_call_locked_past_the_deadline_is_held_and_replayed(
    make_app: Callable[..., App],
    serve: Callable[..., Platform],
    fake: FakeClient,
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The call's lock is held (an interrupt whose break RPC hangs): hold, then replay."""
    app = make_app(handler_budget=0.05)
    runs = ivr(app)
    line = serve(app).line()
    await line.start()
    fake.break_gate = asyncio.Event()
    interrupt = asyncio.ensure_future(app.interrupt(line.callid, then=hangup()))
    await probe.wait("break")  # the interrupt holds the call's lock
    fake.break_result = False
    with caplog.at_level(logging.WARNING, logger="rtcontrol"):
        held = await line.report("1234")
    assert step_of(held) == "@replay"
    fake.break_gate.set()
    await interrupt
    # The replayed report is the one the interrupt targeted: its action runs.
    assert (await line.report(""))["command"] == "hangup"
    assert [r[0] for r in runs] == ["start"]


async def test_store_down_never_answers_500(app: App, platform: Platform, store: SpyStore) -> None:
    ivr(app)
    store.down = True
    for body in (
        platform.line().body(status="INCOMING_CALL"),
        platform.line().body(command="read", command_id="3:main:check", result="1"),
        platform.line().body(command="read", command_id=17, result="1", status="HANGUP"),
    ):
        response = await platform.post(body)
        # a live callback gets a hold; a hang-up that cannot be recorded gets a 503 (K2)
        assert response.status_code == (503 if body["call_status"] == "HANGUP" else 200)


async def test_replay_data_is_hidden_from_handlers_called_directly(
    app: App, store: SpyStore
) -> None:
    """``app.handle`` (no HTTP) replays the same way."""
    runs = ivr(app)
    base = {"app": "4346423A", "callid": 5, "call_status": "UP"}
    await app.handle(RTRequest.model_validate({**base, "call_status": "INCOMING_CALL"}))
    replay = {"replay": ["read", "1:main:check", "77", "", "UP"], "n": 3}
    body = {
        **base,
        "command": "wait",
        "command_id": "0:main:@replay",
        "variables": {"lang": "fr", "_rtc": replay},
    }
    reply = await app.handle(RTRequest.model_validate(body))
    assert b'"command":"hangup"' in reply
    assert b"_rtc" not in reply
    assert runs[-1] == ("check", "77", {"lang": "fr"})
