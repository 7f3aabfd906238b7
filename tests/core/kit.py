"""Kit of the engine tests: no HTTP, the App driven through ``app.handle_callback``.

* :class:`FakeControl` stands in for the JSON-RPC client: it records breaks, hang-ups
  and ``calls.realtime``, and lets a test gate or fail them, or make the "platform"
  react (post the first callback before ``realtime`` returns);
* :class:`SpyStore` is a :class:`MemoryStore` on a clock the test moves, that reports
  lock attempts, reads and writes to a :class:`Probe` and can go "down", fail its writes
  or blink on some keys;
* :class:`Recorder` keeps every event the App emits;
* request builders turn a reply into the report the platform would POST for it.

Races are ordered with events and futures; :data:`WAIT` is only a safety net.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, cast

import pytest
from framework.rig import FakeClock, Probe  # one copy of the rig's probe and clock

from rtcontrol import App, RTRequest
from rtcontrol.core.ports import Reply
from rtcontrol.errors import StoreUnavailable
from rtcontrol.events import CallbackAnswered, Disposition, Event
from rtcontrol.store import MemoryStore
from rtcontrol.store.base import JSON, LockToken
from rtcontrol.testing import callback_body

T = TypeVar("T")

APP_HASH = "4346423A"
#: Safety net for awaits that should resolve soon: fail, never hang (busy machines).
WAIT = 10.0
APOLOGY = "TTS|TTS_EN-GB_SERENA|We are sorry, something went wrong. Please call again later."


async def within(aw: Awaitable[T], seconds: float = WAIT) -> T:
    """``await aw``, failing the test (not hanging it) after ``seconds``."""
    try:
        return await asyncio.wait_for(aw, seconds)
    except TimeoutError:
        raise AssertionError(f"not done within {seconds}s") from None


class EngineClock:
    """The engine's :class:`~rtcontrol.core.ports.Clock` with a wall clock set ahead
    (another worker, later: hang-up tickets come due)."""

    def __init__(self, wall_offset: float = 0.0) -> None:
        self.wall_offset = wall_offset

    def monotonic(self) -> float:
        return asyncio.get_running_loop().time()

    def wall(self) -> float:
        return time.time() + self.wall_offset


class SpyStore(MemoryStore):
    """A MemoryStore that reports what it is asked and can fail on demand.

    ``down``: every operation raises StoreUnavailable; ``fail_writes``: the write that
    ends a callback (``set_and_release``) fails; ``blink``: reads of keys starting with
    that prefix fail (the store blinked after the call's lock was taken).
    Probe names: ``lock:<callid>`` (a callback or operation asks for the call's lock),
    ``get:<key>``, ``set:<key>``, ``store-down``.
    """

    def __init__(self, probe: Probe, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.probe = probe
        self.down = False
        self.fail_writes = False
        self.blink: str | None = None

    def _check(self) -> None:
        if self.down:
            self.probe.hit("store-down")
            raise StoreUnavailable("connection refused (test)")

    async def get(self, key: str) -> JSON | None:
        self._check()
        if self.blink is not None and key.startswith(self.blink):
            self.probe.hit(f"blink:{key}")
            raise StoreUnavailable("timeout reading (test)")
        value = await super().get(key)
        self.probe.hit(f"get:{key}")
        return value

    async def set(self, key: str, value: JSON, *, ttl: float) -> None:
        self._check()
        await super().set(key, value, ttl=ttl)
        self.probe.hit(f"set:{key}")

    async def update(
        self, key: str, fn: Callable[[JSON | None], JSON | None], *, ttl: float
    ) -> JSON | None:
        self._check()
        return await super().update(key, fn, ttl=ttl)

    async def delete(self, *keys: str) -> None:
        self._check()
        await super().delete(*keys)

    async def acquire(self, key: str, *, lease: float, wait: float) -> LockToken:
        self._check()
        return await super().acquire(key, lease=lease, wait=wait)

    async def acquire_and_get(
        self, lock_key: str, key: str, *, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        self.probe.hit(f"lock:{lock_key.split('{')[1].split('}')[0]}")
        self._check()
        return await super().acquire_and_get(lock_key, key, lease=lease, wait=wait)

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        self._check()
        if self.fail_writes:
            self.probe.hit("write-failed")
            raise StoreUnavailable("write timed out (test)")
        await super().set_and_release(key, value, ttl=ttl, lock_key=lock_key, token=token)

    async def release(self, key: str, token: LockToken) -> bool:
        self._check()
        return await super().release(key, token)

    async def renew(self, key: str, token: LockToken, *, lease: float) -> bool:
        self._check()
        return await super().renew(key, token, lease=lease)

    async def index_add(self, index: str, member: str, score: float, *, ttl: float) -> None:
        self._check()
        await super().index_add(index, member, score, ttl=ttl)

    async def index_remove(self, index: str, *members: str) -> None:
        self._check()
        await super().index_remove(index, *members)

    async def index_range(
        self, index: str, low: float, high: float, *, limit: int = 100
    ) -> list[tuple[str, float]]:
        self._check()
        return await super().index_range(index, low, high, limit=limit)

    async def record(self, callid: int) -> dict[str, Any]:
        """The stored CallRecord of a call, as JSON (asserting it exists), even when down."""
        value = await super().get(call_key(callid))
        assert isinstance(value, dict), f"call {callid} is not in the store"
        return value

    async def lock_is_free(self, callid: int) -> bool:
        """Can the call's lock be taken at once? (taken and given back if so)"""
        try:
            token = await MemoryStore.acquire(self, lock_key(callid), lease=1.0, wait=0.001)
        except Exception:
            return False
        await MemoryStore.release(self, lock_key(callid), token)
        return True


def call_key(callid: int) -> str:
    return f"rtc:{{{callid}}}:call"


def lock_key(callid: int) -> str:
    return f"rtc:{{{callid}}}:lock"


def hold_key(callid: int, token: str) -> str:
    return f"rtc:{{{callid}}}:hold:{token}"


OnRealtime = Callable[[str], Awaitable[None]]


class FakeControl:
    """What the engine and ``start_call`` use of ``CallrClient``, recorded and controllable."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.breaks: list[int] = []
        self.hangups: list[int] = []
        self.realtime_calls: list[tuple[str, Any]] = []
        self.break_result = True
        #: When set, realtime_break waits for it (the RPC is in flight).
        self.break_gate: asyncio.Event | None = None
        #: When set, realtime_break raises it.
        self.break_error: BaseException | None = None
        #: Called when a break is received: the platform reacting to it.
        self.on_break: Callable[[int], None] | None = None
        #: Awaited inside realtime() before the request hash is returned.
        self.before_return: OnRealtime | None = None
        #: When set, realtime() raises it (after before_return).
        self.realtime_error: BaseException | None = None
        self.closed = False
        self._hashes = (f"RQ{n:06d}" for n in itertools.count(1))

    async def realtime(self, app: str, target: Any, options: Any) -> str:
        request_hash = next(self._hashes)
        self.realtime_calls.append((app, target))
        self.probe.hit("realtime")
        if self.before_return is not None:
            await self.before_return(request_hash)
        if self.realtime_error is not None:
            raise self.realtime_error
        return request_hash

    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - the client's signature
        self.breaks.append(callid)
        self.probe.hit("break")
        if self.on_break is not None:
            self.on_break(callid)
        if self.break_gate is not None:
            await self.break_gate.wait()
        if self.break_error is not None:
            raise self.break_error
        return self.break_result

    async def hangup(self, callid: int) -> bool:
        self.hangups.append(callid)
        self.probe.hit("hangup")
        return True

    async def aclose(self) -> None:
        self.closed = True


class Recorder:
    """Every event of one App, in order."""

    def __init__(self, app: App) -> None:
        self.events: list[Event] = []
        app.events.subscribe(self.events.append)

    def of(self, kind: type[T]) -> list[T]:
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def answers(self) -> list[CallbackAnswered]:
        return self.of(CallbackAnswered)

    def dispositions(self, callid: int | None = None) -> list[Disposition]:
        return [a.disposition for a in self.answers if callid is None or a.callid == callid]

    def last(self, callid: int) -> Disposition:
        found = self.dispositions(callid)
        assert found, f"no callback of call {callid} answered"
        return found[-1]


# ------------------------------------------------------------------ requests and replies


def request(callid: int, **fields: Any) -> RTRequest:
    """An RT.Request with all 14 fields (``callback_body`` defaults, ``fields`` win)."""
    return RTRequest.model_validate(callback_body(callid=callid, **fields))


def first(
    callid: int,
    *,
    status: str | None = None,
    request_hash: str | None = None,
    variables: dict[str, Any] | None = None,
) -> RTRequest:
    """The first POST of a call: command "" and command_id 0."""
    if status is None:
        status = "UP" if request_hash is not None else "INCOMING_CALL"
    return request(
        callid,
        call_status=status,
        request_hash=request_hash,
        variables=variables if variables is not None else {},
    )


def body(reply: Reply | bytes) -> dict[str, Any]:
    raw = reply.body if isinstance(reply, Reply) else reply
    data = strict_json(raw)
    assert isinstance(data, dict)
    return data


def report(
    callid: int,
    reply: Reply | bytes,
    result: str = "",
    *,
    status: str = "UP",
    error: str = "",
    request_hash: str | None = None,
) -> RTRequest:
    """The POST reporting the end of the command ``reply`` carried (echoing its id and
    variables), as the platform sends it."""
    sent = body(reply)
    return request(
        callid,
        command=sent["command"],
        command_id=sent["command_id"],
        command_result=result,
        command_error=error,
        call_status=status,
        request_hash=request_hash,
        variables=sent.get("variables", {}),
    )


def hangup_after(
    callid: int,
    reply: Reply | bytes | None,
    *,
    status: str = "HANGUP",
    request_hash: str | None = None,
) -> RTRequest:
    """The terminal POST of a call whose last reply was ``reply`` (None: never answered)."""
    if reply is None:
        return first(callid, status=status, request_hash=request_hash)
    return report(callid, reply, status=status, request_hash=request_hash)


def command_id(reply: Reply | bytes) -> str:
    cid = body(reply)["command_id"]
    assert isinstance(cid, str)
    return cid


def step_of(reply: Reply | bytes) -> str:
    return command_id(reply).split(":", 2)[2]


def _no_constant(name: str) -> Any:
    raise AssertionError(f"reply body carries {name}, which is not JSON")


def strict_json(raw: bytes | str) -> Any:
    """``json.loads`` refusing NaN and Infinity (what the platform's parser would do)."""
    return json.loads(raw, parse_constant=_no_constant)


def is_fallback(reply: Reply | bytes) -> bool:
    sent = body(reply)
    return (
        sent["command"] == "play"
        and sent["params"] == {"media_id": APOLOGY}
        and str(sent["command_id"]).endswith(":@bye")
    )


# ------------------------------------------------------------------ logs


def logged(
    caplog: pytest.LogCaptureFixture, level: int = logging.ERROR, *, exact: bool = False
) -> list[str]:
    """Messages of rtcontrol's loggers at ``level`` or above (exactly ``level`` if ``exact``)."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("rtcontrol") and (r.levelno == level if exact else r.levelno >= level)
    ]


def spawn(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    return asyncio.ensure_future(coro)


def as_client(control: FakeControl) -> Any:
    """The fake as the App's ``client`` (it has the methods the App uses)."""
    return cast(Any, control)
