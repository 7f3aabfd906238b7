"""The 5-second deadline: hold past the budget, deliver the slow handler's command by break."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rtcontrol import App, Call, Command, TransportError, hangup, play, read, tts, wait

from .rig import FakeClient, Platform, Probe, SpyStore, step_of

BUDGET = 0.05
APOLOGY = "TTS|TTS_EN-GB_SERENA|We are sorry, something went wrong. Please call again later."


class SlowApp:
    """An app whose ``lookup`` step waits for the test to release it."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.release = asyncio.Event()
        self.finished = asyncio.Event()
        self.result: Any = None
        self.error: BaseException | None = None
        self.after: list[dict[str, Any]] = []

        @app.on_inbound
        async def start(call: Call) -> Command:
            call.state["before"] = 1
            return read(tts("Your number?")).then(lookup)

        @app.step
        async def lookup(call: Call) -> Any:
            await self.release.wait()
            call.variables["customer"] = "Ada"
            call.state["found"] = call.digits
            self.finished.set()
            if self.error is not None:
                raise self.error
            if self.result is not None:
                return self.result
            return play(tts("Hello Ada")).then(after)

        @app.step
        async def after(call: Call) -> Command:
            self.after.append({"state": dict(call.state), "variables": dict(call.variables)})
            return hangup()


@pytest.fixture
def slow(make_app: Callable[..., App], serve: Callable[[App], Platform]) -> Iterator[SlowApp]:
    slow = SlowApp(make_app(handler_budget=BUDGET))
    yield slow
    slow.release.set()  # before serve's teardown shuts the app down


async def test_slow_handler_gets_the_hold_within_the_budget(
    slow: SlowApp, serve: Callable[[App], Platform]
) -> None:
    line = serve(slow.app).line()
    await line.start()
    loop = asyncio.get_running_loop()
    started = loop.time()
    held = await line.report("42")
    elapsed = loop.time() - started
    assert held == {
        "command": "wait",
        "command_id": "2:main:@hold",
        "params": {"seconds": 5},
        "variables": {},
    }
    # the hold leaves inside the budget, the store write included (K12)
    assert BUDGET / 2 <= elapsed < BUDGET + 0.5


async def test_hold_command_is_configurable(
    make_app: Callable[..., App], serve: Callable[[App], Platform]
) -> None:
    music = play(tts("Please hold"))
    slow = SlowApp(make_app(handler_budget=BUDGET, hold=music))
    line = serve(slow.app).line()
    await line.start()
    held = await line.report("42")
    assert held["command"] == "play"
    assert held["params"] == dict(music.params)
    assert step_of(held) == "@hold"
    slow.release.set()


async def test_finished_while_the_hold_plays_is_delivered_by_break(
    slow: SlowApp, serve: Callable[[App], Platform], fake: FakeClient, probe: Probe
) -> None:
    platform = serve(slow.app)
    line = platform.line()
    await line.start()
    assert step_of(await line.report("42")) == "@hold"
    assert fake.breaks == []

    slow.release.set()
    await probe.wait("break")  # the handler finished: break the hold at once
    assert fake.breaks == [line.callid]
    delivered = await line.report("")  # the platform reports the broken hold
    assert delivered == {
        "command": "play",
        "command_id": "3:main:after",
        "params": {"media_id": "TTS|TTS_EN-GB_SERENA|Hello Ada"},
        "variables": {"customer": "Ada"},  # set by the slow handler
    }
    assert (await line.report("0"))["command"] == "hangup"
    # The slow handler's state was saved for the next step.
    assert slow.after == [{"state": {"before": 1, "found": "42"}, "variables": {"customer": "Ada"}}]


async def test_hold_ends_before_the_handler_finishes_and_is_issued_again(
    slow: SlowApp, serve: Callable[[App], Platform], fake: FakeClient, probe: Probe
) -> None:
    platform = serve(slow.app)
    reports = platform.breaks_report(fake)
    line = platform.line()
    await line.start()
    first_hold = await line.report("42")
    second_hold = await line.report("")  # the wait ended by itself: still nothing to say
    third_hold = await line.report("")
    assert [h["command_id"] for h in (first_hold, second_hold, third_hold)] == [
        "2:main:@hold",
        "3:main:@hold",
        "4:main:@hold",
    ]
    assert second_hold["command"] == third_hold["command"] == "wait"
    assert fake.breaks == []  # re-issuing the hold needs no break

    slow.release.set()
    await probe.wait("break")
    delivered = await reports[0]
    assert delivered["command_id"] == "5:main:after"
    assert delivered["variables"] == {"customer": "Ada"}


async def test_duplicate_of_the_held_callback_gets_the_same_hold(
    slow: SlowApp, serve: Callable[[App], Platform]
) -> None:
    platform = serve(slow.app)
    line = platform.line()
    await line.start()
    body = line.report_body("42")
    held = await platform.post_raw(body)
    assert await platform.post_raw(body) == held  # not a second run of the slow handler
    slow.release.set()
    await asyncio.wait_for(slow.finished.wait(), 2)


async def test_background_timeout_gives_the_fallback(
    make_app: Callable[..., App],
    serve: Callable[[App], Platform],
    fake: FakeClient,
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    slow = SlowApp(make_app(handler_budget=BUDGET, background_timeout=0.1))
    platform = serve(slow.app)
    line = platform.line()
    await line.start()
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        assert step_of(await line.report("42")) == "@hold"
        await probe.wait("break")  # never released: the background timeout delivers
    apology = await line.report("")
    assert apology["params"] == {"media_id": APOLOGY}
    assert step_of(apology) == "@bye"
    assert (await line.report("0"))["command"] == "hangup"
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "handler main.lookup still running after" in error.getMessage()


async def test_hold_ending_after_the_background_timeout_gives_the_fallback(
    make_app: Callable[..., App], serve: Callable[[App], Platform], fake: FakeClient
) -> None:
    """The hold callback arrives once the slow handler's time is up and nothing came."""
    fake.break_result = False
    slow = SlowApp(make_app(handler_budget=BUDGET, background_timeout=0.1))
    line = serve(slow.app).line()
    await line.start()
    await line.report("42")
    await asyncio.wait_for(slow.app.settle(), 2)  # the background gave up
    apology = await line.report("")
    assert apology["params"] == {"media_id": APOLOGY}


async def test_slow_handler_lost_gives_the_fallback_when_the_hold_ends(
    slow: SlowApp,
    serve: Callable[..., Platform],
    store: SpyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker running the slow handler died: the hold's end finds nothing after its time."""
    line = serve(slow.app).line()
    await line.start()
    await line.report("42")
    slow.app.engine.deliveries.cancel(line.callid)  # the worker is gone, and so is its task
    await asyncio.wait_for(slow.app.settle(), 2)
    record = await store.record(line.callid)
    record["hold"]["until"] = 0  # ...and its background time is over
    await store.set(f"rtc:{{{line.callid}}}:call", record, ttl=60)
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        apology = await line.report("")
    assert apology["params"] == {"media_id": APOLOGY}
    assert f"callid={line.callid}: slow handler lost or timed out" in caplog.text


@pytest.mark.parametrize(
    ("error", "result", "message"),
    [
        (RuntimeError("crm exploded"), None, "handler main.lookup raised"),
        (TimeoutError("crm timeout"), None, "handler main.lookup raised"),
        (None, "not a command", "handler main.lookup returned str, not a command"),
        (None, read(tts("x")).then("missing"), "sent a command to step 'missing'"),
    ],
)
async def test_slow_handler_failing_after_the_budget_gets_the_fallback(
    slow: SlowApp,
    serve: Callable[[App], Platform],
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
    error: BaseException | None,
    result: Any,
    message: str,
) -> None:
    slow.error, slow.result = error, result
    line = serve(slow.app).line()
    await line.start()
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        assert step_of(await line.report("42")) == "@hold"
        slow.release.set()
        await probe.wait("break")
    apology = await line.report("")
    assert apology["params"] == {"media_id": APOLOGY}
    assert step_of(apology) == "@bye"
    assert (await line.report("0"))["command"] == "hangup"
    [logged] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert message in logged.getMessage()
    assert f"callid={line.callid}" in logged.getMessage()
    assert (logged.exc_info is not None) is (error is not None)


async def test_failed_break_still_delivers_when_the_hold_ends(
    slow: SlowApp,
    serve: Callable[[App], Platform],
    fake: FakeClient,
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken_break(callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        probe.hit("break")
        raise TransportError("connection reset")

    fake.realtime_break = broken_break  # type: ignore[method-assign]
    line = serve(slow.app).line()
    await line.start()
    await line.report("42")
    with caplog.at_level(logging.WARNING, logger="rtcontrol"):
        slow.release.set()
        await probe.wait("break")
        await asyncio.wait_for(slow.app.settle(), 2)
    assert any("break not sent" in r.getMessage() for r in caplog.records)
    delivered = await line.report("")  # the hold ended by itself
    assert delivered["command_id"] == "3:main:after"


async def test_slow_first_callback_and_slow_interrupt_step_hold_too(
    make_app: Callable[..., App], serve: Callable[[App], Platform], fake: FakeClient, probe: Probe
) -> None:
    app = make_app(handler_budget=BUDGET)
    release = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await release.wait()
        return wait(30)

    @app.step
    async def agent_ready(call: Call) -> Command:
        await release.wait()
        return hangup()

    platform = serve(app)
    reports = platform.breaks_report(fake)
    line = platform.line()
    assert step_of(await line.start()) == "@hold"
    release.set()
    await probe.wait("break")
    assert (await reports[0])["command"] == "wait"

    release.clear()
    await app.interrupt(line.callid, then=agent_ready)
    held = await reports[1]
    assert step_of(held) == "@hold"
    release.set()
    await probe.wait("break", 3)
    assert (await reports[2])["command"] == "hangup"
