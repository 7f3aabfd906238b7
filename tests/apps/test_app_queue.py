"""apps/queue.py: callers on hold, agents freed over HTTP or in Python, breaks and dial-outs."""

from __future__ import annotations

from typing import Any, Literal

import pytest
from app_kit import (
    SPEED,
    app_client,
    assert_ended,
    basic_auth,
    params,
    results,
    said,
    startup_messages,
    without_credentials,
)

from apps.queue import AGENT_RING, LINE, QueueApp, build
from rtcontrol import OutcomeUnknown
from rtcontrol.emulator import Callee, EmulatedCall, EmulatorSettings, Transcript
from rtcontrol.store.redis import RedisStore
from rtcontrol.testing import EmulatedPlatform, random_credentials

AGENT = "+33100000001"
CALLERS = ["+33611111111", "+33622222222", "+33633333333"]
#: The hold music is media 42; one play of it lasts ten virtual minutes, so it is always
#: playing when a test frees an agent (a shorter one would loop, which works as well).
HOLD, HOLD_SECONDS = 42, 600.0
EMULATOR = EmulatorSettings(media_durations={HOLD: HOLD_SECONDS})
#: The agent answers after 1 s and hangs up 5 s later, which ends the bridged call.
AGENT_TALKS = Callee(answer_delay=1.0, hangup_after=5.0)
WELCOME = "Welcome to Example Corp."


def platform(
    app: QueueApp | None = None,
    *,
    over: Literal["asgi", "http"] = "http",
    agent: Callee = AGENT_TALKS,
) -> EmulatedPlatform:
    app = app or build(music=HOLD, **random_credentials())
    return EmulatedPlatform(
        app, over=over, speed=SPEED, settings=EMULATOR, phonebook={AGENT: agent}
    )


def on_hold(t: Transcript) -> bool:
    """The hold music is playing now (its reply arrived and the platform runs it)."""
    replies = [r for r in t.replies if r]
    last = replies[-1] if replies else {}
    return last.get("params", {}).get("media_id") == HOLD and len(t.executed) == len(replies)


async def join(p: EmulatedPlatform, caller: str, callee: Callee | None = None) -> EmulatedCall:
    """Place an inbound call and return once the caller hears the hold music."""
    call = p.emulator.start_call(p.app_hash, callee or Callee(), cli_number=caller)
    await call.wait_until(on_hold)
    return call


async def hang_up(p: EmulatedPlatform, *calls: EmulatedCall) -> list[Transcript]:
    for call in calls:
        assert p.emulator.hangup_call(call.callid)
    return [await call.wait() for call in calls]


def hold_broken_after(t: Transcript) -> float:
    """Virtual seconds the hold music played before ``calls.realtime_break`` stopped it."""
    started = broke = None
    for e in t.events:
        if e.kind == "reply" and e.data and e.data.get("params", {}).get("media_id") == HOLD:
            started = e.at
        if e.kind == "platform" and e.text == "calls.realtime_break interrupts play":
            broke = e.at
    assert started is not None, t.render()
    assert broke is not None, t.render()
    return broke - started


async def test_a_free_agent_breaks_the_hold_of_the_longest_waiting_caller() -> None:
    async with platform() as p:
        app: Any = p.app
        first, second, third = [await join(p, caller) for caller in CALLERS]
        assert await app.waiting() == [first.callid, second.callid, third.callid]
        async with app_client(p, basic_auth(p)) as client:
            response = await client.post(f"/agents/{AGENT}/free")
        assert response.status_code == 200
        assert response.json() == {"agent": AGENT, "caller": first.callid}
        t = await first.wait()
        assert await app.waiting() == [second.callid, third.callid]
        others = await hang_up(p, second, third)
        assert await app.waiting() == []
        assert await app.store.get(LINE) is None

    # welcome, "you are number 1", hold music (broken), then the agent
    assert t.executed == ["play", "play", "play", "dialout"]
    assert said(t)[:2] == [
        "Welcome to Example Corp.",
        "All our agents are busy. You are number 1 in line.",
    ]
    assert hold_broken_after(t) < HOLD_SECONDS
    broken = [r for r in t.requests if r["command"] == "play"][-1]
    assert broken["command_result"] == ""  # a break, where a finished play reports "0"
    [dial] = params(t, "dialout")
    assert dial["targets"] == [{"number": AGENT, "timeout": AGENT_RING}]
    assert t.requests[-1]["command_result"] == "ANSWER"
    assert_ended(t, "bridge")
    assert said(others[0])[1] == "All our agents are busy. You are number 2 in line."
    assert said(others[1])[1] == "All our agents are busy. You are number 3 in line."
    for other in others:
        assert "dialout" not in other.executed
        assert_ended(other, "api")


async def test_a_caller_hanging_up_leaves_the_line() -> None:
    async with platform() as p:
        app: Any = p.app
        # hangs up after two minutes of music
        first = await join(p, CALLERS[0], Callee(hangup_during=3, hangup_delay=120.0))
        second = await join(p, CALLERS[1])
        assert await app.waiting() == [first.callid, second.callid]
        gone = await first.wait()
        assert await app.waiting() == [second.callid]
        assert await app.agent_free(AGENT) == second.callid
        served = await second.wait()
    assert gone.executed == ["play", "play", "play"]
    assert_ended(gone, "callee")
    assert served.executed[-1] == "dialout"
    assert_ended(served, "bridge")


async def test_a_free_agent_waits_for_the_next_caller() -> None:
    async with platform(over="asgi") as p:
        app: Any = p.app
        assert await app.agent_free(AGENT) is None  # nobody waits: the agent is kept free
        assert await app.store.get(LINE) == {"waiting": [], "agents": [AGENT]}
        t = await p.call(Callee(), cli_number=CALLERS[0])
        assert await app.store.get(LINE) is None
    assert t.executed == ["play", "dialout"]
    assert params(t, "dialout")[0]["targets"][0]["number"] == AGENT
    assert_ended(t, "bridge")


async def test_a_caller_whose_agent_does_not_answer_goes_back_to_the_front() -> None:
    async with platform(agent=Callee(answer="noanswer")) as p:
        app: Any = p.app
        first = await join(p, CALLERS[0])
        second = await join(p, CALLERS[1])
        assert await app.agent_free(AGENT) == first.callid
        await first.wait_until(lambda t: "dialout" in t.executed and on_hold(t))
        assert await app.waiting() == [first.callid, second.callid]
        t, _ = await hang_up(p, first, second)
        assert await app.waiting() == []
    assert results(t, "dialout") == ["NOANSWER"]
    assert "Sorry, the agent could not take your call. You are first in line." in said(t)
    assert_ended(t, "api")


async def test_the_agents_route_wants_the_callback_credentials_and_a_number() -> None:
    async with platform(over="asgi") as p:
        async with app_client(p, None) as anonymous:
            assert (await anonymous.post(f"/agents/{AGENT}/free")).status_code == 401
        async with app_client(p, ("callr", "wrong")) as intruder:
            assert (await intruder.post(f"/agents/{AGENT}/free")).status_code == 401
        async with app_client(p, basic_auth(p)) as client:
            assert (await client.post("/agents/0100000001/free")).status_code == 422
            response = await client.post(f"/agents/{AGENT}/free")
        assert response.json() == {"agent": AGENT, "caller": None}
        assert await p.app.store.get(LINE) == {"waiting": [], "agents": [AGENT]}


async def test_an_agent_freed_on_another_worker_sharing_the_store() -> None:
    """Two Apps over one store are two workers: the line and the interrupt are shared."""
    credentials = random_credentials()
    async with platform(build(music=HOLD, **credentials)) as p:
        caller = await join(p, CALLERS[0])
        agents_worker = build(music=HOLD, store=p.app.store, **credentials)
        agents_worker.client = p.app.client
        assert await agents_worker.waiting() == [caller.callid]
        assert await agents_worker.agent_free(AGENT) == caller.callid
        t = await caller.wait()
    assert t.executed == ["play", "play", "play", "dialout"]
    assert_ended(t, "bridge")


class UnreachableApi:
    """A JSON-RPC client whose ``calls.realtime_break`` never gets through."""

    async def realtime_break(self, callid: int, **options: Any) -> bool:
        raise OutcomeUnknown("connection reset", method="calls.realtime_break", request={})


async def test_a_failed_break_connects_the_caller_when_the_music_ends() -> None:
    """The interrupt is recorded before the break is sent: it runs on the next callback."""
    credentials = random_credentials()
    short_music = EmulatorSettings(media_durations={HOLD: 30.0})
    app = build(music=HOLD, **credentials)
    async with EmulatedPlatform(
        app, over="asgi", speed=SPEED, settings=short_music, phonebook={AGENT: AGENT_TALKS}
    ) as p:
        caller = await join(p, CALLERS[0])
        agents_worker = build(music=HOLD, store=app.store, **credentials)
        agents_worker.client = UnreachableApi()  # type: ignore[assignment]
        assert await agents_worker.agent_free(AGENT) == caller.callid
        t = await caller.wait()
    assert t.executed[-1] == "dialout"
    assert set(t.executed[:-1]) == {"play"}
    assert results(t, "play")[-1] == "0"  # the music played to its end: no break
    assert_ended(t, "bridge")


@pytest.mark.redis
async def test_two_workers_on_redis(redis_url: str, redis_prefix: str) -> None:
    credentials = random_credentials()

    def worker() -> QueueApp:
        store = RedisStore.from_url(redis_url, prefix=redis_prefix)
        return build(music=HOLD, store=store, **credentials)

    async with platform(worker()) as p:
        first = await join(p, CALLERS[0])
        second = await join(p, CALLERS[1])
        agents_worker = worker()
        agents_worker.client = p.app.client
        try:
            assert await agents_worker.waiting() == [first.callid, second.callid]
            assert await agents_worker.agent_free(AGENT) == first.callid
            t = await first.wait()
            await hang_up(p, second)
            await p.app.settle()  # on_hangup runs after the reply to the hang-up
            assert await agents_worker.waiting() == []
        finally:
            await agents_worker.store.close()
    assert hold_broken_after(t) < HOLD_SECONDS
    assert t.executed == ["play", "play", "play", "dialout"]
    assert_ended(t, "bridge")


async def test_refuses_to_start_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    without_credentials(monkeypatch)
    [failed] = await startup_messages(build())
    assert failed["type"] == "lifespan.startup.failed"
    assert "RTCONTROL_CALLBACK_PASSWORD" in failed["message"]
