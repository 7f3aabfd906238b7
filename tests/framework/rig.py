"""Test rig of the framework tests: a fake JSON-RPC client, a spying store, a scripted platform.

Everything here orders races with events and futures, never with sleeps:

* :class:`Probe` counts named events ("break", "acquire:rtc:lock:7"...) and lets a
  test ``await probe.wait(name, n)`` until the n-th one happened;
* :class:`FakeClient` stands in for ``rtcontrol.rpc.CallrClient``: it records
  ``realtime`` / ``realtime_break`` / ``hangup`` and lets a test gate them or make the
  "platform" react (post the first callback before ``realtime`` returns, report the
  broken command after a break);
* :class:`SpyStore` is a :class:`MemoryStore` on a clock the test moves, that reports
  lock attempts to the probe and can be switched "down" (``StoreUnavailable``);
* :class:`Platform` / :class:`Line` play the CALLR side over HTTP through the real ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from rtcontrol import App
from rtcontrol.errors import StoreUnavailable
from rtcontrol.store import MemoryStore
from rtcontrol.store.base import JSON, LockToken
from rtcontrol.testing import callback_body

LOGIN = "rt-app-login"
PASSWORD = "s3cret-Pa55word-never-logged"
APP_HASH = "4346423A"
OTHER_APP = "99AA77BB"
WAIT = 2.0  # safety net for awaits that should resolve at once: fail, never hang


class Probe:
    """Counts named events; ``await probe.wait(name, n)`` until ``name`` happened n times."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._waiters: list[tuple[str, int, asyncio.Future[None]]] = []

    def hit(self, name: str) -> None:
        self.counts[name] += 1
        for waiter in list(self._waiters):
            wanted, n, fut = waiter
            if wanted == name and self.counts[name] >= n:
                self._waiters.remove(waiter)
                if not fut.done():
                    fut.set_result(None)

    async def wait(self, name: str, n: int = 1, within: float = WAIT) -> None:
        if self.counts[name] >= n:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((name, n, fut))
        try:
            await asyncio.wait_for(fut, within)
        except TimeoutError:
            raise AssertionError(
                f"{name!r} happened {self.counts[name]} times, expected {n}"
            ) from None


class FakeClock:
    """``time.monotonic`` plus an offset the test advances (TTL checks without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


class SpyStore(MemoryStore):
    """A MemoryStore that reports lock attempts and can be switched unavailable."""

    def __init__(self, probe: Probe, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.probe = probe
        self.down = False
        self.closed = False
        #: When set, writes at the end of a callback wait for it (the lock stays held).
        self.save_gate: asyncio.Event | None = None

    async def get(self, key: str) -> JSON | None:
        value = await super().get(key)
        self.probe.hit(f"get:{key}")
        return value

    async def set(self, key: str, value: JSON, *, ttl: float) -> None:
        await super().set(key, value, ttl=ttl)
        self.probe.hit(f"set:{key}")

    async def acquire(self, key: str, *, lease: float, wait: float) -> LockToken:
        self.probe.hit(f"acquire:{key}")
        return await super().acquire(key, lease=lease, wait=wait)

    async def acquire_and_get(
        self, lock_key: str, key: str, *, lease: float, wait: float
    ) -> tuple[LockToken, JSON | None]:
        if self.down:
            self.probe.hit("store-down")
            raise StoreUnavailable("connection refused (test)")
        return await super().acquire_and_get(lock_key, key, lease=lease, wait=wait)

    async def set_and_release(
        self, key: str, value: JSON | None, *, ttl: float, lock_key: str, token: LockToken
    ) -> None:
        gate = self.save_gate
        if gate is not None:  # hold the call's lock past the callback's reply
            self.probe.hit("save-gated")
            await gate.wait()
        await super().set_and_release(key, value, ttl=ttl, lock_key=lock_key, token=token)

    async def close(self) -> None:
        self.closed = True

    async def record(self, callid: int) -> dict[str, Any]:
        """The stored CallRecord of a call, as JSON (asserting it exists)."""
        value = await super().get(f"rtc:{{{callid}}}:call")
        assert isinstance(value, dict), f"call {callid} is not in the store"
        return value


OnRealtime = Callable[[str], Awaitable[None]]
OnBreak = Callable[[int], None]


class FakeClient:
    """The four methods of ``CallrClient`` the framework uses, recorded and controllable."""

    def __init__(self, probe: Probe) -> None:
        self.probe = probe
        self.realtime_calls: list[tuple[str, Any, Any]] = []
        self.breaks: list[int] = []
        self.hangups: list[int] = []
        self.break_result = True
        #: When set, realtime_break blocks until the event is set (the RPC is in flight).
        self.break_gate: asyncio.Event | None = None
        #: Called (synchronously) when a break is received: the platform reacting to it.
        self.on_break: OnBreak | None = None
        #: Awaited inside realtime() before the request hash is returned.
        self.before_return: OnRealtime | None = None
        self.closed = False
        self._hashes = (f"RQ{n:06d}" for n in itertools.count(1))

    async def realtime(self, app: str, target: Any, options: Any) -> str:
        request_hash = next(self._hashes)
        self.realtime_calls.append((app, target, options))
        self.probe.hit("realtime")
        if self.before_return is not None:
            await self.before_return(request_hash)
        return request_hash

    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109 - the client's signature
        self.breaks.append(callid)
        if self.on_break is not None:
            self.on_break(callid)
        self.probe.hit("break")
        if self.break_gate is not None:
            await self.break_gate.wait()
        return self.break_result

    async def hangup(self, callid: int) -> bool:
        self.hangups.append(callid)
        self.probe.hit("hangup")
        return True

    async def aclose(self) -> None:
        self.closed = True


def request_body(
    callid: int,
    *,
    app: str = APP_HASH,
    request_hash: str | None = None,
    number: str = "+33100000000",
    cli_number: str = "+33611111111",
    command: str = "",
    command_id: int | str = 0,
    result: str = "",
    error: str = "",
    status: str = "UP",
    variables: dict[str, Any] | None = None,
    cdr_field: str = "",
) -> dict[str, Any]:
    """All 14 fields of an RT.Request, as the platform sends them."""
    return callback_body(
        app=app,
        callid=callid,
        request_hash=request_hash,
        cli_number=cli_number,
        number=number,
        command=command,
        command_id=command_id,
        command_result=result,
        command_error=error,
        call_status=status,
        cdr_field=cdr_field,
        variables=variables if variables is not None else {},
    )


class Line:
    """One call as the platform sees it: runs the command we replied, reports its result."""

    def __init__(self, platform: Platform, callid: int, **fields: Any) -> None:
        self.platform = platform
        self.callid = callid
        self.fields = fields
        #: The last command we answered: what the platform runs now.
        self.current: dict[str, Any] | None = None
        self.replies: list[dict[str, Any]] = []

    @property
    def outbound(self) -> bool:
        return self.fields.get("request_hash") is not None

    def body(self, **overrides: Any) -> dict[str, Any]:
        return request_body(self.callid, **{**self.fields, **overrides})

    def report_body(
        self, result: str = "", *, error: str = "", status: str = "UP", **overrides: Any
    ) -> dict[str, Any]:
        """The POST reporting the end of the current command (echoing id and variables)."""
        cur = self.current or {"command": "", "command_id": 0, "variables": {}}
        fields = {
            "command": cur["command"],
            "command_id": cur["command_id"],
            "variables": cur.get("variables", {}),
            "result": result,
            "error": error,
            "status": status,
            **overrides,
        }
        return self.body(**fields)

    async def send(self, body: dict[str, Any]) -> dict[str, Any]:
        raw = await self.platform.post_raw(body)
        if body.get("call_status") not in ("UP", "INCOMING_CALL"):
            await self.platform.app.settle()  # on_hangup runs after the reply
        reply: dict[str, Any] = json.loads(raw) if raw else {}
        self.replies.append(reply)
        if reply:
            self.current = reply
        return reply

    async def start(self, status: str | None = None, **overrides: Any) -> dict[str, Any]:
        """The first POST of the call (command "", command_id 0)."""
        if status is None:
            status = "UP" if self.outbound else "INCOMING_CALL"
        return await self.send(self.body(status=status, **overrides))

    async def report(
        self, result: str = "", *, error: str = "", status: str = "UP", **overrides: Any
    ) -> dict[str, Any]:
        """The current command finished (or was broken): POST its result."""
        return await self.send(self.report_body(result, error=error, status=status, **overrides))

    async def hang_up(self, status: str = "HANGUP", **overrides: Any) -> dict[str, Any]:
        """The call ended: the final POST carries the command that was running."""
        return await self.send(self.report_body(status=status, **overrides))


class Platform:
    """The CALLR side: POSTs callbacks to the real ASGI app with HTTP Basic credentials."""

    def __init__(self, app: App, http: httpx.AsyncClient, path: str = "/callback") -> None:
        self.app = app
        self.http = http
        self.path = path
        self.lines: dict[int, Line] = {}
        self.tasks: list[asyncio.Task[Any]] = []
        self._ids = itertools.count(421_000)

    def line(self, callid: int | None = None, **fields: Any) -> Line:
        callid = next(self._ids) if callid is None else callid
        line = self.lines[callid] = Line(self, callid, **fields)
        return line

    async def post(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post(self.path, json=body)

    async def post_raw(self, body: dict[str, Any]) -> bytes:
        response = await self.post(body)
        assert response.status_code == 200, (response.status_code, response.text)
        assert response.headers["content-type"] == "application/json"
        return response.content

    def spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.append(task)
        return task

    def breaks_report(self, client: FakeClient) -> list[asyncio.Task[dict[str, Any]]]:
        """Make every break stop the call's current command and report it, like the platform.

        Returns the list the report tasks are appended to (their results are our replies).
        The body is built when the break is received, so it names the broken command.
        """
        reports: list[asyncio.Task[dict[str, Any]]] = []

        def on_break(callid: int) -> None:
            line = self.lines[callid]
            if line.current is None or line.current.get("command") == "hangup":
                return
            reports.append(self.spawn(line.send(line.report_body(""))))

        client.on_break = on_break
        return reports

    async def close(self) -> None:
        for task in self.tasks:
            if not task.done():
                task.cancel()
        for task in self.tasks:
            with contextlib.suppress(BaseException):
                await task
        await self.http.aclose()


def connect(app: App, api: Any = None, path: str = "/callback") -> Platform:
    """A Platform posting to ``api`` (by default ``app.asgi(path)``)."""
    api = app.asgi(path) if api is None else api
    http = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=api),
        base_url="http://rtcontrol.test",
        auth=(LOGIN, PASSWORD),
        timeout=10.0,
    )
    return Platform(app, http, path)


def step_of(reply: dict[str, Any]) -> str:
    """The step a reply's command_id sends the result to ("<seq>:<flow>:<step>")."""
    return str(reply["command_id"]).split(":", 2)[2]


def flow_of(reply: dict[str, Any]) -> str:
    return str(reply["command_id"]).split(":", 2)[1]
