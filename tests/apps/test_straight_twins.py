"""The straight-line twins (apps/menu_straight.py, apps/survey_straight.py) on TWO
workers sharing one Redis, with every callback of a call on the other worker.

A worker is an App of its own (its own engine, store connection and coroutine
cache), as a second process would have; both are built by the twin's ``build()``
with the same settings and a Redis store under one test prefix. In front of them,
:class:`Alternate` is an ASGI app that sends each call's callbacks to the workers in
turn, so no worker ever answers two consecutive callbacks of a call: every step is
resumed from the journal (``flow_cache=0``: replayed from the top every time; with
the cache, each worker's copy catches up from what the other worker ran).

Each caller's transcript must be the one a single worker gives, and the one the
step-style twin gives: same commands, same parameters, same texts, same results,
same ending. The survey's results must be saved exactly once per call, equal to the
single-worker ones. The flows' coroutine starts are counted per worker (the twin's
flow function wrapped before ``build()`` registers it): a worker that never got a
call's first callback still started its flow, so it did replay.

Also: a worker dropped mid-call (taken out of the rotation, then ``shutdown()``)
while it holds the call's suspended coroutine; the other worker finishes the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import itertools
import json
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import httpx
import pytest
from app_kit import SPEED

from apps.sink import JsonLines
from rtcontrol import App, CallHungUp, LiveCall, tts
from rtcontrol.emulator import (
    DEFAULT_API_KEY,
    RPC_PATH,
    Callee,
    Emulator,
    HangUp,
    Press,
    ScaledClock,
    Silence,
    Transcript,
)
from rtcontrol.media import Target
from rtcontrol.rpc import CallrClient
from rtcontrol.store.redis import RedisStore
from rtcontrol.testing import CALLBACK_PATH, EmulatedPlatform, random_credentials

pytestmark = [pytest.mark.redis]

AGENTS = ("+33100000001", "+33100000002")
#: The agents answer after 2 s and hang up 5 s later, which ends the bridged call.
PHONEBOOK = {number: Callee(answer_delay=2.0, hangup_after=5.0) for number in AGENTS}
APP_URL = "http://workers.test" + CALLBACK_PATH
RPC_URL = "http://callr.test" + RPC_PATH


@dataclass(frozen=True)
class Twins:
    """A step-style example and its straight-line twin."""

    name: str  # the flow's name in both
    step: str  # module names
    straight: str
    #: Callers: name -> the callee's actions.
    callers: dict[str, list[Any]]


MENU = Twins(
    "menu",
    "apps.menu",
    "apps.menu_straight",
    {
        "press 1": [Press("1")],
        "invalid, then 2": [Press("7"), Press("2")],
        "silence x3": [Silence(), Silence(), Silence()],
        "three mistakes of both kinds": [Press("9"), Silence(), Press("*")],
        "hang-up during the welcome": [HangUp(after=1.5)],
    },
)
SURVEY = Twins(
    "survey",
    "apps.survey",
    "apps.survey_straight",
    {
        "three answers": [Press("4"), Press("1"), Press("2")],
        "asked again": [
            Press("7"),
            Silence(),
            Press("5"),
            Press("3"),
            Press("2"),
            Press("0"),
            Press("1"),
        ],
        "three failures": [Press("3"), Press("9"), Silence(), Press("#")],
        "hang-up after two answers": [Press("5"), Press("1"), HangUp(after=2.0)],
        "hang-up at once": [HangUp(after=0.5)],
    },
)


# --------------------------------------------------------------------------- the rig


class Alternate:
    """ASGI front: the callbacks of each call go to the live workers in turn.

    ``routed`` lists ``(callid, worker, call_status)`` for every callback, in order.
    ``drop_after(worker, n)``: once ``worker`` has answered ``n`` callbacks it gets no
    more (the reply is complete when this happens, so the next callback of every call
    goes elsewhere) and ``dropped[worker]`` is set.
    """

    def __init__(self, workers: list[App]) -> None:
        self.workers = workers
        self.alive = [True] * len(workers)
        self.turns: Counter[int] = Counter()
        self.answered: Counter[int] = Counter()
        self.routed: list[tuple[int, int, str]] = []
        self.dropped = [asyncio.Event() for _ in workers]
        self._drop_at: dict[int, int] = {}

    def drop_after(self, worker: int, callbacks: int) -> None:
        self._drop_at[worker] = callbacks

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        live = [i for i, up in enumerate(self.alive) if up]
        if scope["type"] != "http":
            await self.workers[live[0]](scope, receive, send)
            return
        messages = []
        while True:  # read the body, to route by the call's id, then hand it on
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        try:
            callback = json.loads(body)
            callid, status = int(callback["callid"]), str(callback["call_status"])
        except (ValueError, KeyError, TypeError):
            callid, status = -1, "?"
        worker = live[self.turns[callid] % len(live)]
        self.turns[callid] += 1
        self.routed.append((callid, worker, status))
        pending = iter(messages)

        async def replayed() -> Any:
            return next(pending, None) or await receive()

        await self.workers[worker](scope, replayed, send)
        self.answered[worker] += 1
        if self._drop_at.get(worker) == self.answered[worker]:
            self.alive[worker] = False
            self.dropped[worker].set()

    def workers_of(self, callid: int) -> list[int]:
        return [w for c, w, _ in self.routed if c == callid]


@dataclass
class Rig:
    emulator: Emulator
    front: Alternate
    workers: list[App]
    app_hash: str
    starts: list[Counter[int]]  # per worker: callid -> coroutine starts
    shut: set[int] = field(default_factory=set)

    async def call(self, actions: list[Any]) -> Transcript:
        return await self.emulator.place_call(self.app_hash, Callee(actions=list(actions)))

    async def settle(self) -> None:
        """Every worker still up has run its on_hangup and background work."""
        up = [app for i, app in enumerate(self.workers) if i not in self.shut]
        await asyncio.gather(*(app.settle() for app in up))

    async def shutdown(self, worker: int) -> None:
        self.shut.add(worker)
        await self.workers[worker].shutdown(timeout=10.0)


def counted(fn: Callable[[LiveCall], Awaitable[Any]], starts: Counter[int]) -> Any:
    """``fn``, counting its starts per call (a replay starts the flow from the top)."""

    @functools.wraps(fn)
    async def flow(call: LiveCall) -> Any:
        starts[call.id] += 1
        return await fn(call)

    return flow


def build_worker(
    twin: ModuleType,
    name: str,
    starts: Counter[int],
    monkeypatch: pytest.MonkeyPatch,
    **settings: Any,
) -> App:
    """``twin.build(**settings)`` with the flow function wrapped by :func:`counted`."""
    with monkeypatch.context() as patch:
        patch.setattr(twin, name, counted(getattr(twin, name), starts))
        return twin.build(**settings)  # type: ignore[no-any-return]


@contextlib.asynccontextmanager
async def two_workers(
    twins: Twins,
    redis_url: str,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    **settings: Any,
) -> AsyncIterator[Rig]:
    """Two workers of the straight twin on one Redis, behind :class:`Alternate`."""
    twin = importlib.import_module(twins.straight)
    credentials = random_credentials()
    starts: list[Counter[int]] = [Counter(), Counter()]
    workers = [
        build_worker(
            twin,
            twins.name,
            starts[i],
            monkeypatch,
            store=RedisStore.from_url(redis_url, prefix=prefix),
            store_url=redis_url,
            workers=2,
            **credentials,
            **settings,
        )
        for i in range(2)
    ]
    front = Alternate(workers)
    emulator = Emulator(
        transport=httpx.ASGITransport(front), clock=ScaledClock(SPEED), phonebook=PHONEBOOK
    )
    app_hash = emulator.create_app(
        APP_URL, login=credentials["callback_login"], password=credentials["callback_password"]
    ).hash
    for app in workers:
        await app.store.ping()
        app.client = CallrClient(
            api_url=RPC_URL,
            api_key=DEFAULT_API_KEY,
            transport=httpx.ASGITransport(emulator.rpc_app),
        )
        app.settings = app.settings.model_copy(update={"app_hash": app_hash})
        app.serving = True
    rig = Rig(emulator, front, workers, app_hash, starts)
    try:
        yield rig
    finally:
        await emulator.aclose()
        for i in range(len(workers)):
            if i not in rig.shut:
                await rig.shutdown(i)


# --------------------------------------------------------------------------- what is compared


def heard(t: Transcript) -> dict[str, Any]:
    """What the caller heard and did: every command with its parameters, every report,
    and how the call ended (callids, hashes and times left out)."""
    return {
        "replies": [(r["command"], r["params"]) for r in t.replies if r],
        "reports": [
            (r["call_status"], r["command"], r["command_result"], r["command_error"])
            for r in t.requests
        ],
        "executed": t.executed,
        "ended_by": t.ended_by,
        "hangups": t.hangup_count,
        "errors": t.errors,
    }


def saved(sink: JsonLines, t: Transcript) -> list[dict[str, Any]]:
    """The survey records saved for this call, without their callid and time."""
    return [
        {k: v for k, v in r.items() if k not in ("callid", "at")}
        for r in sink.records
        if r["callid"] == t.callid
    ]


async def one_worker(module: str, actions: list[Any]) -> tuple[Transcript, JsonLines]:
    """The same caller on one worker (memory store), for reference; with what it saved
    (the survey)."""
    twin = importlib.import_module(module)
    sink = JsonLines()
    extra = {"results": sink} if "survey" in module else {}
    app = twin.build(**random_credentials(), **extra)
    async with EmulatedPlatform(app, speed=SPEED, phonebook=PHONEBOOK) as p:
        t = await p.call(Callee(actions=list(actions)))
        await app.settle()
    return t, sink


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("cache", [0, 100], ids=["replay-from-the-top", "catch-up"])
@pytest.mark.parametrize("twins", [MENU, SURVEY], ids=lambda t: t.name)
async def test_every_callback_on_the_other_worker_gives_the_single_worker_call(
    twins: Twins,
    cache: int,
    redis_url: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    survey = twins is SURVEY
    sink = JsonLines()
    results = {"results": sink} if survey else {}
    async with two_workers(
        twins, redis_url, redis_prefix, monkeypatch, flow_cache=cache, **results
    ) as rig:
        for caller, actions in twins.callers.items():
            reference, reference_sink = await one_worker(twins.step, actions)
            single, single_sink = await one_worker(twins.straight, actions)
            t = await rig.call(actions)
            await rig.settle()
            where = f"{twins.name} / {caller}:\n{t.render()}"
            assert heard(single) == heard(reference), f"{twins.name} / {caller}: twins differ"
            assert heard(t) == heard(single), where
            # every callback on the other worker than the one before
            served = rig.front.workers_of(t.callid)
            assert len(served) == len(t.requests), where
            assert all(a != b for a, b in itertools.pairwise(served)), served
            if survey:  # once, by one worker, as on one worker
                assert len(saved(sink, t)) == 1, where
                assert saved(sink, t) == saved(single_sink, single), where
                assert saved(single_sink, single) == saved(reference_sink, reference), caller
            # Replay: worker 1 never got a first callback, yet started the flow (to
            # answer the second callback, or to end the flow at the hang-up).
            assert rig.starts[1][t.callid] >= 1, (caller, rig.starts)
            answered = len(t.requests) - 1  # the flow answers all but the HANGUP POST
            total = rig.starts[0][t.callid] + rig.starts[1][t.callid]
            if cache == 0:  # from the top on every callback (and for the hang-up)
                assert answered <= total <= answered + 1, (caller, rig.starts, served)
            else:  # one copy per worker catching up from the journal (and at most one
                # more replay, to raise the hang-up at the call's pending await)
                assert total <= 3, (caller, rig.starts)
        # The worker that did not get a call's HANGUP keeps its copy of the ended call
        # (dropped when idle for RTCONTROL_CALL_TTL, or past RTCONTROL_FLOW_CACHE).
        kept = sum(len(app.registry.sessions) for app in rig.workers)
        assert kept <= (len(twins.callers) if cache else 0)


@pytest.mark.parametrize("twins", [MENU, SURVEY], ids=lambda t: t.name)
async def test_a_worker_dropped_mid_call_leaves_the_call_to_the_other(
    twins: Twins, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Worker 0 answers the first and third callbacks, then leaves (taken out of the
    rotation and shut down while it holds the call's suspended coroutine); worker 1
    answers every callback after that, replaying the call from the journal."""
    survey = twins is SURVEY
    actions = [Press("5"), Press("1"), Press("2")] if survey else [Press("7"), Press("8")]
    actions += [] if survey else [Press("1")]
    sink = JsonLines()
    results = {"results": sink} if survey else {}
    reference, reference_sink = await one_worker(twins.step, actions)
    async with two_workers(twins, redis_url, redis_prefix, monkeypatch, **results) as rig:
        rig.front.drop_after(0, 2)
        call = rig.emulator.start_call(rig.app_hash, Callee(actions=list(actions)))
        await asyncio.wait_for(rig.front.dropped[0].wait(), timeout=30)
        held = len(rig.workers[0].registry.sessions)
        await rig.shutdown(0)  # the call goes on meanwhile, on worker 1
        t = await asyncio.wait_for(call.wait(), timeout=60)
        await rig.settle()
    where = t.render()
    assert held == 1, "worker 0 held the call's coroutine when it left"
    assert heard(t) == heard(reference), where
    served = rig.front.workers_of(t.callid)
    assert served[:3] == [0, 1, 0], served
    assert set(served[3:]) == {1}, served
    assert len(served) >= 5, served
    assert len(rig.workers[0].registry.sessions) == 0  # shutdown dropped its copies
    assert rig.starts[0][t.callid] == 1
    assert rig.starts[1][t.callid] >= 1
    if survey:
        assert saved(sink, t) == saved(reference_sink, reference), where
        assert saved(sink, t)[0]["answers"] == {"rating": 5, "recommend": "yes", "callback": "no"}


async def test_an_outbound_menu_call_alternates_workers_too(
    redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``start_call(flow="menu")`` on worker 0; the callbacks then alternate."""
    async with two_workers(MENU, redis_url, redis_prefix, monkeypatch, flow_cache=0) as rig:
        rig.emulator.phonebook["+33699999999"] = Callee(actions=[Press("9"), Press("2")])
        request_hash = await rig.workers[0].start_call(
            Target(number="+33699999999", timeout=30), flow="menu", app_hash=rig.app_hash
        )
        t = await asyncio.wait_for(rig.emulator.wait_request(request_hash), timeout=60)
        await rig.settle()
    assert t.direction == "outbound"
    assert t.executed == ["read", "read", "dialout"]
    assert [
        r["params"]["targets"][0]["number"] for r in t.replies if r and r["command"] == "dialout"
    ] == [AGENTS[1]]
    served = rig.front.workers_of(t.callid)
    assert served[:4] == [0, 1, 0, 1], served
    assert rig.starts[1][t.callid] >= 1


#: What the test-only flow below saw: hang-ups at its pending await, finally blocks run.
ENDINGS: Counter[str] = Counter()


async def three_questions(call: LiveCall) -> None:
    """A test-only flow: three reads, counting how it ends."""
    try:
        for n in range(3):
            await call.read(tts(f"Question {n}"), max_digits=1, attempts=1, timeout_ms=5000)
    except CallHungUp:
        ENDINGS["hung up"] += 1
        raise
    finally:
        ENDINGS["finally"] += 1


async def test_a_hang_up_raises_once_but_every_dropped_copy_runs_its_finally(
    redis_url: str, redis_prefix: str
) -> None:
    """Why the survey saves its results in ``on_hangup`` and not in a ``finally``: with
    callbacks alternating, each worker holds a copy of the call's coroutine. The
    hang-up raises ``CallHungUp`` once, but every copy's ``finally`` runs, when its
    worker drops it (here worker 0's, at shutdown, long after the call ended)."""
    ENDINGS.clear()
    credentials = random_credentials()
    workers = []
    for _ in range(2):
        app = App(
            store=RedisStore.from_url(redis_url, prefix=redis_prefix),
            store_url=redis_url,
            workers=2,
            **credentials,
        )
        app.call_flow(three_questions, inbound=True)
        workers.append(app)
    hooks: Counter[int] = Counter()
    for i, app in enumerate(workers):
        app.on_hangup(functools.partial(_count_hangup, hooks, i))
    front = Alternate(workers)
    async with Emulator(transport=httpx.ASGITransport(front), clock=ScaledClock(SPEED)) as emulator:
        app_hash = emulator.create_app(
            APP_URL,
            login=credentials["callback_login"],
            password=credentials["callback_password"],
        ).hash
        for app in workers:
            app.serving = True
        t = await emulator.place_call(
            app_hash, Callee(actions=[Press("1"), Press("2"), HangUp(after=1.0)])
        )
        await asyncio.gather(*(app.settle() for app in workers))
        assert t.executed == ["read", "read", "read"], t.render()
        assert front.workers_of(t.callid) == [0, 1, 0, 1]  # the HANGUP on worker 1
        assert ENDINGS["hung up"] == 1
        assert sum(hooks.values()) == 1  # on_hangup: once, on worker 1
        assert hooks[1] == 1
        ran = ENDINGS["finally"]
        assert ran >= 1
        assert len(workers[0].registry.sessions) == 1  # worker 0 still holds its copy
    for app in workers:
        await app.shutdown(timeout=10.0)
    assert ENDINGS["hung up"] == 1  # still once
    assert ENDINGS["finally"] == ran + 1  # worker 0 dropped its copy: its finally ran


async def _count_hangup(hooks: Counter[int], worker: int, call: Any) -> None:
    hooks[worker] += 1


#: What the test-only flow below had when the hang-up reached it.
AT_HANGUP: list[dict[str, Any]] = []


async def collect(call: LiveCall) -> None:
    """A test-only flow: three answers kept in a local list, looked at on the hang-up."""
    answers: list[str | None] = []
    try:
        for n in range(3):
            prompt = tts(f"Question {n}")
            answers.append(await call.read(prompt, max_digits=1, attempts=1, timeout_ms=5000))
    except CallHungUp:
        AT_HANGUP.append({"answers": list(answers), "position": call.position})
        raise


async def test_a_hang_up_reaches_the_calls_pending_await_on_a_worker_whose_copy_is_behind(
    redis_url: str, redis_prefix: str
) -> None:
    """Callbacks alternate: the worker that gets the HANGUP holds a copy of the
    coroutine one step behind (it answered the callback before the previous one). The
    hang-up must reach the flow at the call's pending await (the third read), with
    everything the call did before it, as on one worker; not at the second read."""
    AT_HANGUP.clear()
    credentials = random_credentials()
    workers = []
    for _ in range(2):
        app = App(
            store=RedisStore.from_url(redis_url, prefix=redis_prefix),
            store_url=redis_url,
            workers=2,
            **credentials,
        )
        app.call_flow(collect, inbound=True)
        workers.append(app)
    front = Alternate(workers)
    try:
        async with Emulator(
            transport=httpx.ASGITransport(front), clock=ScaledClock(SPEED)
        ) as emulator:
            app_hash = emulator.create_app(
                APP_URL,
                login=credentials["callback_login"],
                password=credentials["callback_password"],
            ).hash
            for app in workers:
                app.serving = True
            t = await emulator.place_call(
                app_hash, Callee(actions=[Press("1"), Press("2"), HangUp(after=1.0)])
            )
            await asyncio.gather(*(app.settle() for app in workers))
    finally:
        for app in workers:
            await app.shutdown(timeout=10.0)
    assert t.executed == ["read", "read", "read"], t.render()
    assert front.workers_of(t.callid) == [0, 1, 0, 1]
    assert AT_HANGUP == [{"answers": ["1", "2"], "position": 3}]
