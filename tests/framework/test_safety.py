"""Safe replies: fallback on errors, duplicates answered from cache, one callback at a time."""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, hangup, play, read, tts, wait

from .rig import Platform, Probe, step_of

APOLOGY = "TTS|TTS_EN-GB_SERENA|We are sorry, something went wrong. Please call again later."


def errors_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_raising_handler_gets_apology_then_hangup_logged_once(
    app: App, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("code")).then(lookup)

    @app.step
    async def lookup(call: Call) -> Command:
        call.variables["seen"] = True
        raise KeyError("customer 42")

    line = platform.line()
    await line.start()
    with caplog.at_level(logging.INFO, logger="rtcontrol"):
        reply = await line.report("42")
        assert reply == {
            "command": "play",
            "command_id": "2:main:@bye",
            "params": {"media_id": APOLOGY},
            "variables": {"seen": True},
        }
        bye = await line.report("0")
    assert bye["command"] == "hangup"
    [error] = errors_of(caplog)
    assert error.name == "rtcontrol.handler"
    assert error.getMessage() == (
        f"callid={line.callid}: handler main.lookup raised; answering with the fallback"
    )
    assert error.exc_info is not None
    assert error.exc_info[0] is KeyError
    assert "customer 42" in caplog.text
    assert "in lookup" in caplog.text
    outcomes = [
        getattr(r, "outcome", None) for r in caplog.records if r.name == "rtcontrol.callback"
    ]
    assert outcomes == ["fallback", "reply"]


async def test_configurable_fallback(
    make_app: Callable[..., App], serve: Callable[[App], Platform]
) -> None:
    app = make_app(fallback=hangup())

    @app.on_inbound
    async def start(call: Call) -> Command:
        raise RuntimeError("boom")

    reply = await serve(app).line().start()
    assert reply == {"command": "hangup", "command_id": "1:main:-", "params": {}, "variables": {}}


async def test_fallback_that_keeps_the_call_up_still_says_goodbye(
    make_app: Callable[..., App], serve: Callable[[App], Platform]
) -> None:
    app = make_app(fallback=play(tts("Oops")))

    @app.on_inbound
    async def start(call: Call) -> Command:
        raise RuntimeError("boom")

    line = serve(app).line()
    reply = await line.start()
    assert reply["params"] == {"media_id": "TTS|TTS_EN-GB_SERENA|Oops"}
    assert step_of(reply) == "@bye"
    assert (await line.report("0"))["command"] == "hangup"


@pytest.mark.parametrize("returned", [None, "hangup", {"command": "hangup"}, hangup])
async def test_handler_returning_a_non_command_gets_the_fallback(
    app: App, platform: Platform, caplog: pytest.LogCaptureFixture, returned: Any
) -> None:
    @app.on_inbound
    async def start(call: Call) -> Any:
        return returned

    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        reply = await platform.line().start()
    assert reply["params"] == {"media_id": APOLOGY}
    [error] = errors_of(caplog)
    assert "handler main.start returned" in error.getMessage()
    assert "not a command; return a command built with rtcontrol's builders" in error.getMessage()


async def test_command_bound_to_a_missing_step_gets_the_fallback(
    app: App, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("code")).then("typo_in_step_name")

    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        reply = await platform.line().start()
    assert step_of(reply) == "@bye"
    [error] = errors_of(caplog)
    assert "sent a command to step 'typo_in_step_name', which flow main does not have" in (
        error.getMessage()
    )


async def test_command_without_then_and_no_on_result_gets_the_fallback(
    app: App, platform: Platform
) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return play(tts("no step for my result"))

    line = platform.line()
    assert step_of(await line.start()) == "-"
    assert step_of(await line.report("0")) == "@bye"


async def test_handler_raising_timeout_error_is_a_handler_error_not_a_slow_handler(
    app: App, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    """A TimeoutError raised by the handler itself (its own HTTP call...) is an error."""

    @app.on_inbound
    async def start(call: Call) -> Command:
        raise TimeoutError("crm did not answer")

    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        reply = await platform.line().start()
    assert reply["params"] == {"media_id": APOLOGY}  # at once, not the hold
    [error] = errors_of(caplog)
    assert "handler main.start raised" in error.getMessage()
    assert error.exc_info is not None
    assert error.exc_info[0] is TimeoutError


# ---------------------------------------------------------------- duplicates


async def test_duplicate_gets_the_byte_identical_reply_without_running_the_handler(
    app: App, platform: Platform
) -> None:
    runs: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        runs.append("start")
        call.variables["nonce"] = random.random()
        return read(tts("code")).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        runs.append("choice")
        call.variables["nonce"] = random.random()
        return play(tts(f"{random.random()}")).then(choice)

    line = platform.line()
    first_body = line.body(status="INCOMING_CALL")
    first = await platform.post_raw(first_body)
    assert await platform.post_raw(first_body) == first
    line.current = json.loads(first)
    body = line.report_body("1")
    reply = await platform.post_raw(body)
    assert await platform.post_raw(body) == reply
    # Same callid, command_id, command and status: a duplicate even with another result.
    assert await platform.post_raw({**body, "command_result": "2"}) == reply
    assert runs == ["start", "choice"]
    # Another status is not a duplicate: it is the hang-up.
    assert await platform.post_raw({**body, "call_status": "HANGUP"}) == b"{}"


async def test_concurrent_duplicate_waits_and_gets_the_same_bytes(
    app: App, platform: Platform, probe: Probe
) -> None:
    runs = 0
    release, running = asyncio.Event(), asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        nonlocal runs
        runs += 1
        running.set()
        await release.wait()
        return play(tts(f"{random.random()}"))

    line = platform.line()
    body = line.body(status="INCOMING_CALL")
    original = platform.spawn(platform.post_raw(body))
    await asyncio.wait_for(running.wait(), 2)
    duplicate = platform.spawn(platform.post_raw(body))
    await probe.wait(f"acquire:rtc:{{{line.callid}}}:lock", 2)  # the duplicate waits for the lock
    assert runs == 1
    release.set()
    first, second = await asyncio.gather(original, duplicate)
    assert first == second
    assert runs == 1


# ---------------------------------------------------------------- one at a time


async def test_callbacks_of_one_call_run_one_at_a_time(
    app: App, platform: Platform, probe: Probe
) -> None:
    running = 0
    overlap = 0
    order: list[str] = []
    release, a_running = asyncio.Event(), asyncio.Event()

    @app.step
    async def a(call: Call) -> Command:
        nonlocal running, overlap
        running += 1
        overlap = max(overlap, running)
        order.append("a:start")
        a_running.set()
        await release.wait()
        order.append("a:end")
        running -= 1
        return wait(1).then(b)

    @app.step
    async def b(call: Call) -> Command:
        nonlocal running, overlap
        running += 1
        overlap = max(overlap, running)
        order.append("b")
        running -= 1
        return wait(1).then(b)

    line = platform.line()
    lock = f"acquire:rtc:{{{line.callid}}}:lock"
    first = platform.spawn(
        platform.post_raw(line.body(command="wait", command_id="1:main:a", variables={}))
    )
    await asyncio.wait_for(a_running.wait(), 2)
    second = platform.spawn(
        # the report of the command the first callback is about to send (K1: only the
        # current command's report is new)
        platform.post_raw(line.body(command="wait", command_id="2:main:b", variables={}))
    )
    await probe.wait(lock, 2)  # the second callback arrived and waits for the lock
    assert order == ["a:start"]
    release.set()
    await asyncio.gather(first, second)
    assert order == ["a:start", "a:end", "b"]
    assert overlap == 1


async def test_different_calls_run_in_parallel(app: App, platform: Platform) -> None:
    started = {1: asyncio.Event(), 2: asyncio.Event()}

    @app.on_inbound
    async def start(call: Call) -> Command:
        me = int(call.variables.get("n", 0)) or (1 if call.id % 2 else 2)
        started[me].set()
        other = started[2 if me == 1 else 1]
        await other.wait()  # deadlocks (then holds) if calls were serialized
        return hangup()

    one, two = platform.line(1001), platform.line(1002)
    replies = await asyncio.gather(one.start(), two.start())
    assert [r["command"] for r in replies] == ["hangup", "hangup"]
