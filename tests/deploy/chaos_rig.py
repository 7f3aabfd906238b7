"""The chaos soak's rig: a slow-Redis proxy, a CALLR platform played over HTTP, the
fault schedule and the checks (``tests/deploy/test_chaos.py`` wires them together).

* :class:`DelayProxy`: a TCP proxy between the workers and Redis, in its own process
  (``python chaos_rig.py delay-proxy PORT UPSTREAM_PORT``), that can add a random
  delay to every chunk in each direction, in order, like a slow network. Commands on
  its stdin; it exits when its stdin closes, so it never outlives the test. While
  Redis is down it accepts and resets at once (what a proxy in front of Redis does).
* :class:`Platform` and :class:`VirtualCall`: the load generator. Each virtual call
  POSTs its first callback, runs the command it is told to run (for a while, in real
  time), POSTs its result, and so on until a ``hangup`` command or a caller hang-up,
  then the HANGUP POST. A reply must come within 5 s. The platform's JSON-RPC
  (``calls.realtime_break``, ``calls.hangup``) is :meth:`Platform.rpc_app`.
* :class:`Stack`: Redis (AOF everysec), the proxy, N uvicorn workers, nginx with the
  shipped site. :func:`run_faults`: worker SIGKILL and SIGTERM, Redis kill, Redis slow.
* :func:`check`: every invariant over every call, each violation with its call id,
  its time and the evidence (:class:`Report`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import queue
import random
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from starlette.types import ASGIApp, Receive, Scope, Send

REPO = Path(__file__).resolve().parents[2]
DEPLOY_DIR = Path(__file__).resolve().parent

#: The platform's deadline for a reply, from sending the POST to having the body.
DEADLINE = 5.0
#: What the app's flow sends, in order, when nothing goes wrong (holds are ``wait``).
EXPECTED = ("read", "play", "read", "play", "hangup")
#: A fallback reply is a ``play`` of this (rtcontrol's default apology).
FALLBACK_TEXT = "something went wrong"
#: Commands one call may receive before the platform gives up on it (holds included).
MAX_COMMANDS = 40
#: Seconds one call may last (about 15 s normally, 30 s through Redis outages) before
#: the platform hangs it up itself; this also bounds the soak's drain after the load.
MAX_CALL_SECONDS = 45.0
#: A reply cut mid-body within this many seconds after a SIGKILL is one the kill cut
#: while it was being written: nginx had passed the status line on and cannot retry.
CUT_WINDOW = 1.0
#: How h11 (under httpx) says a reply stopped after its status line and headers.
_MID_BODY = "without sending complete message body"


# ================================================================ the delay proxy


class _ProxyServer:
    """The proxy process: relay, with ``delay LO HI`` seconds per chunk when asked."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.rng = random.Random()
        self.delay = (0.0, 0.0)
        self.stats: Counter[str] = Counter()

    async def relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One direction: each chunk is written at its due time, never before the previous."""
        loop = asyncio.get_running_loop()
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def pump() -> None:
            while True:
                due, chunk = await chunks.get()
                if (pause := due - loop.time()) > 0:
                    await asyncio.sleep(pause)
                if not chunk:
                    return
                writer.write(chunk)
                await writer.drain()

        pumping = asyncio.create_task(pump())
        last = 0.0
        try:
            while True:
                try:
                    chunk = await reader.read(65536)
                except OSError:
                    chunk = b""
                lo, hi = self.delay
                last = max(loop.time() + (self.rng.uniform(lo, hi) if hi > 0 else 0.0), last)
                self.stats["delayed" if hi > 0 else "passed"] += bool(chunk)
                chunks.put_nowait((last, chunk))
                if not chunk:
                    break
            await pumping
        except OSError:
            pass
        finally:
            pumping.cancel()

    async def handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.stats["connections"] += 1
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            self.stats["refused"] += 1
            client_w.transport.abort()  # a reset: Redis is down
            return
        tasks = {
            asyncio.create_task(self.relay(client_r, up_w)),
            asyncio.create_task(self.relay(up_r, client_w)),
        }
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            for w in (client_w, up_w):
                w.transport.abort()

    def command(self, words: list[str]) -> str:
        if words[:1] == ["delay"] and len(words) == 3:
            self.delay = (float(words[1]), float(words[2]))
            return f"ok delay {self.delay[0]:g} {self.delay[1]:g}"
        if words == ["stats"]:
            return "stats " + json.dumps(dict(self.stats))
        return f"error unknown command {words!r}"

    async def serve(self, listen_port: int) -> None:
        """Serve until stdin closes (the test is done, or gone)."""
        loop = asyncio.get_running_loop()
        server = await asyncio.start_server(
            self.handle, "127.0.0.1", listen_port, reuse_address=True
        )
        print(f"ready {listen_port}", flush=True)
        control = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(control), sys.stdin)
        async with server:
            while line := await control.readline():
                print(self.command(line.decode().split()), flush=True)


class DelayProxy:
    """The proxy process seen from the test: ``delay(lo, hi)``, ``stats()``, ``close()``."""

    def __init__(self, upstream_port: int, port: int, log: Path) -> None:
        self.upstream_port = upstream_port
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader: threading.Thread | None = None

    def start(self, timeout: float = 15.0) -> None:
        cmd = [sys.executable, __file__, "delay-proxy", str(self.port), str(self.upstream_port)]
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                start_new_session=True,
            )
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        line = self._line(timeout)
        if line != f"ready {self.port}":
            self.close()
            raise RuntimeError(f"delay proxy did not start: {line!r}; see {self.log}")

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self._lines.put(raw.decode(errors="replace").strip())
        self._lines.put("")  # EOF: the process is gone

    def _line(self, timeout: float) -> str:
        try:
            return self._lines.get(timeout=timeout)
        except queue.Empty:
            return f"(no answer in {timeout}s)"

    def _command(self, text: str, timeout: float = 10.0) -> str:
        if self.proc is None or self.proc.stdin is None or self.proc.poll() is not None:
            raise RuntimeError("the delay proxy is not running")
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def delay(self, lo: float, hi: float) -> None:
        """Add ``lo``..``hi`` seconds to every chunk, each direction (0, 0: none)."""
        answer = self._command(f"delay {lo} {hi}")
        if not answer.startswith("ok delay"):
            raise RuntimeError(f"delay proxy: {answer!r}")

    def stats(self) -> dict[str, int]:
        answer = self._command("stats")
        if not answer.startswith("stats "):
            raise RuntimeError(f"delay proxy: {answer!r}")
        data: dict[str, int] = json.loads(answer[6:])
        return data

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()  # the proxy exits on EOF
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)  # it has read EOF: the pipe can be closed
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None


# ================================================================ the platform


@dataclass
class Exchange:
    """One POST of a virtual call and what came back."""

    n: int  # index in the call (re-sends included)
    uri: str  # the URI sent, ``/callback?chaos=<callid>.<n>`` (nginx logs it)
    status: str  # call_status sent
    reports: str  # "<command> #<command_id>" reported ("" on the first POST)
    sent: float  # wall clock
    done: float = 0.0
    latency: float | None = None  # None: no reply within the deadline
    http: int | None = None
    error: str = ""
    reply: dict[str, Any] | None = None
    resend: bool = False
    excused: str = ""  # why a failure is not a violation (a reply cut by a SIGKILL)
    cut: bool = False  # the connection closed after the status line, mid-body

    def describe(self, t0: float) -> str:
        lat = f"{self.latency * 1000:.0f} ms" if self.latency is not None else "-"
        if self.reply is not None:
            got = f"{self.reply.get('command')} #{self.reply.get('command_id')}"
            if self.reply.get("command") == "play":
                got += f" {str(self.reply.get('params', {}).get('media_id', ''))[:60]!r}"
        else:
            got = self.error
        re_sent = " (re-sent)" if self.resend else ""
        excused = f" [excused: {self.excused}]" if self.excused else ""
        return (
            f"{self.sent - t0:7.3f}s POST#{self.n}{re_sent} {self.status} "
            f"reports {self.reports or '-'} -> HTTP {self.http} in {lat}: {got}{excused}"
        )


@dataclass
class Violation:
    kind: str
    callid: int
    at: float  # wall clock
    detail: str
    uri: str = ""  # the POST concerned, if one is


@dataclass
class Fault:
    what: str
    kind: str  # kill, start, term, redis-kill, redis-start, slow, fast
    start: float  # wall clock
    end: float = 0.0
    note: str = ""


@dataclass(frozen=True)
class Script:
    """What one caller does: the digits it types, and maybe a hang-up of its own."""

    account: str
    menu: str  # "1", or chaos_app.MENU_SLOW: the slow step
    hangup_after: float | None  # seconds after the call starts


def _fallback(reply: dict[str, Any]) -> bool:
    return reply.get("command") == "play" and FALLBACK_TEXT in json.dumps(reply.get("params"))


def _valid_reply(reply: Any) -> bool:
    return (
        isinstance(reply, dict)
        and isinstance(reply.get("command"), str)
        and isinstance(reply.get("command_id"), int | str)
        and isinstance(reply.get("params", {}), dict)
        and isinstance(reply.get("variables", {}), dict)
    )


class VirtualCall:
    """One call as the platform runs it (see the module docstring)."""

    def __init__(self, platform: Platform, callid: int, script: Script) -> None:
        self.platform = platform
        self.callid = callid
        self.script = script
        self.rng = random.Random(callid)
        self.exchanges: list[Exchange] = []
        self.commands: list[dict[str, Any]] = []  # every reply the platform acted on
        self.executed: list[str] = []  # command names run (wait = a hold)
        self.violations: list[Violation] = []
        self.breaks = 0
        self.ended_by = ""
        self.hangup_acked = False
        self.hangup_refused = False  # a 503: not recorded yet, kept by the worker (K2)
        self.started = time.time()
        self.ended = 0.0
        self._t = asyncio.get_running_loop().time()
        self._running: str | None = None
        self._stop: asyncio.Future[str] | None = None
        self._hangup_requested = False
        self.client = platform.client()

    # ---------------------------------------------------------------- platform API side

    def request_break(self) -> bool:
        stop = self._stop
        if self._running is None or stop is None or stop.done():
            return False
        stop.set_result("break")
        self.breaks += 1
        return True

    def request_hangup(self) -> bool:
        if self.ended:
            return False
        self._hangup_requested = True
        if self._stop is not None and not self._stop.done():
            self._stop.set_result("hangup")
        return True

    # ---------------------------------------------------------------- the loop

    def violation(self, kind: str, detail: str, at: float | None = None, uri: str = "") -> None:
        self.violations.append(Violation(kind, self.callid, at or time.time(), detail, uri))

    def _elapsed(self) -> float:
        return asyncio.get_running_loop().time() - self._t

    def _caller_gone(self) -> bool:
        after = self.script.hangup_after
        return self._hangup_requested or (after is not None and self._elapsed() >= after)

    def _body(self, report: tuple[str, int | str, str, str], status: str, variables: Any) -> bytes:
        command, command_id, result, error = report
        return json.dumps(
            {
                "app": "C4A05000",
                "callid": self.callid,
                "request_hash": None,
                "cli_name": "",
                "cli_number": "+33612345678",
                "date_started": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.started)),
                "number": "+33123456789",
                "command": command,
                "command_id": command_id,
                "command_result": result,
                "command_error": error,
                "call_status": status,
                "cdr_field": "",
                "variables": variables,
            }
        ).encode()

    async def run(self) -> None:
        try:
            # the platform's own bound, plus a final POST and its re-send
            async with asyncio.timeout(MAX_CALL_SECONDS + 4 * DEADLINE + 5):
                await self._run()
        except TimeoutError:
            self.violation("rig-error", f"call still running after {MAX_CALL_SECONDS:g} s")
        except Exception as exc:  # a bug of the rig: reported, never hidden
            self.violation("rig-error", f"{type(exc).__name__}: {exc}")
        finally:
            self.ended = time.time()
            await self.client.aclose()

    async def _run(self) -> None:
        report: tuple[str, int | str, str, str] = ("", 0, "", "")
        status = "INCOMING_CALL"
        variables: Any = {}
        for _ in range(MAX_COMMANDS):
            reply = await self._ask(self._body(report, status, variables), status, report)
            if reply is None:  # failed twice: the platform ends the call
                await self._final((*report[:3], "HTTP_ERROR"), variables, "webhook failure")
                return
            if not _valid_reply(reply):
                self.violation("invalid-reply", f"not an RT.Response: {reply!r:.200}")
                await self._final((*report[:3], "INVALID_RESPONSE"), variables, "invalid reply")
                return
            self.commands.append(reply)
            variables = reply.get("variables", {})
            name, command_id = reply["command"], reply["command_id"]
            if _fallback(reply):
                self.violation("fallback", f"reply #{command_id} is the fallback apology")
            if gone := self._gone():  # while the app was asked: the command never runs
                await self._final(report, variables, gone)
                return
            if name == "hangup":
                self.executed.append(name)
                await self._final(("hangup", command_id, "", ""), variables, "app")
                return
            status = "UP"
            result, error, gone = await self._execute(name, reply.get("params", {}))
            report = (name, command_id, result, error)
            if gone:
                await self._final(report, variables, gone)
                return
        self.violation("too-many-commands", f"more than {MAX_COMMANDS} commands")
        await self._final(report, variables, "max commands")

    def _gone(self) -> str:
        """Why the call is over: the caller hung up, or the platform's own bound."""
        if self._caller_gone():
            return "caller"
        if self._elapsed() >= MAX_CALL_SECONDS:
            self.violation(
                "call-too-long",
                f"the platform hung up after {MAX_CALL_SECONDS:g} s; commands run: {self.executed}",
            )
            return "max duration"
        return ""

    async def _execute(self, name: str, params: dict[str, Any]) -> tuple[str, str, str]:
        """Run one command in real time: (command_result, command_error, why the call
        ended meanwhile or "")."""
        if name == "play":
            seconds, result = self.rng.uniform(0.5, 1.0), "0"
        elif name == "read":
            seconds = self.rng.uniform(0.4, 1.0)
            result = self.script.account if params.get("max_digits") == 4 else self.script.menu
        elif name == "wait":
            seconds, result = float(params.get("seconds", 1)), ""
        else:
            self.violation("unexpected-command", f"{name} {params!r:.200}")
            return "", "UNKNOWN_COMMAND", ""
        self.executed.append(name)
        after = self.script.hangup_after
        ends = MAX_CALL_SECONDS if after is None else min(after, MAX_CALL_SECONDS)
        seconds = min(seconds, max(0.0, ends - self._elapsed()))
        self._running = name
        stop = self._stop = asyncio.get_running_loop().create_future()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(stop), timeout=seconds)
        finally:
            self._running = None
            self._stop = None
        if stop.done() and stop.result() == "break":
            return "", "", ""
        if gone := self._gone():
            return "", "", gone
        return result, "", ""

    async def _ask(
        self, body: bytes, status: str, report: tuple[str, int | str, str, str]
    ) -> dict[str, Any] | None:
        """POST; on a failure send it once more (the platform's retry), then give up."""
        for resend in (False, True):
            ex = await self.platform.post(self, body, status, report, resend=resend)
            if not ex.error:
                return ex.reply
            ex.excused = self.platform.cut_by_kill(ex)
            if status == "HANGUP" and ex.http == 503:
                # K2: a hang-up the store cannot record yet is refused (503) and kept by
                # the worker; it counts as delivered if on_hangup then runs exactly once
                # (checked from the sink).
                self.hangup_refused = True
                continue
            if not ex.excused:
                kind = "late-reply" if ex.latency is None else "transport-error"
                if ex.http is not None:
                    kind = f"http-{ex.http}"
                self.violation(kind, ex.describe(self.platform.t0), at=ex.sent, uri=ex.uri)
        return None

    async def _final(
        self, report: tuple[str, int | str, str, str], variables: Any, ended_by: str
    ) -> None:
        self.ended_by = ended_by
        reply = await self._ask(self._body(report, "HANGUP", variables), "HANGUP", report)
        self.hangup_acked = reply is not None


class Platform:
    """The CALLR platform for the soak: virtual calls over HTTP through nginx."""

    def __init__(
        self,
        url: str,
        auth: tuple[str, str],
        *,
        seed: int,
        faults: list[Fault],
        slow_share: float = 0.2,
        hangup_share: float = 0.12,
    ) -> None:
        self.url = url
        self.auth = auth
        self.rng = random.Random(seed)
        self.faults = faults
        self.slow_share = slow_share
        self.hangup_share = hangup_share
        self._tls = ssl.create_default_context()  # unused (http), but built once, not per call
        self.calls: dict[int, VirtualCall] = {}
        self.t0 = time.time()
        self.running = 0
        self.peak = 0
        self.rpc: Counter[str] = Counter()
        self.loop_lag = 0.0
        self._next_id = self.rng.randrange(10**9, 2 * 10**9)

    def client(self) -> httpx.AsyncClient:
        """A call's own client and connection, like the platform's: one POST at a time.

        One shared pool for hundreds of calls stalled requests for seconds before they
        even reached nginx (httpcore's pool under this concurrency); a pool per call
        does not.
        """
        transport = httpx.AsyncHTTPTransport(
            verify=self._tls, limits=httpx.Limits(max_connections=1, max_keepalive_connections=1)
        )
        return httpx.AsyncClient(
            auth=self.auth, trust_env=False, timeout=DEADLINE * 3, transport=transport
        )

    def script(self) -> Script:
        rng = self.rng
        from chaos_app import MENU_SLOW

        menu = MENU_SLOW if rng.random() < self.slow_share else "1"
        hangup_after = rng.uniform(0.5, 10.0) if rng.random() < self.hangup_share else None
        return Script(f"{rng.randrange(10000):04d}", menu, hangup_after)

    async def post(
        self,
        call: VirtualCall,
        body: bytes,
        status: str,
        report: tuple[str, int | str, str, str],
        *,
        resend: bool,
    ) -> Exchange:
        n = len(call.exchanges) + 1
        uri = f"/callback?chaos={call.callid}.{n}"
        reports = f"{report[0]} #{report[1]}" if report[0] else ""
        ex = Exchange(n, uri, status, reports, time.time(), resend=resend)
        call.exchanges.append(ex)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            async with asyncio.timeout(DEADLINE):
                response = await call.client.post(
                    self.url + uri, content=body, headers={"content-type": "application/json"}
                )
            ex.latency = loop.time() - sent
            ex.http = response.status_code
            if response.status_code != 200:
                ex.error = f"HTTP {response.status_code}: {response.text[:80]!r}"
            else:
                try:
                    ex.reply = json.loads(response.content)
                except ValueError:
                    ex.error = f"reply is not JSON: {response.content[:80]!r}"
        except TimeoutError:
            ex.error = f"no reply within {DEADLINE:g} s"
        except httpx.HTTPError as exc:
            ex.latency = loop.time() - sent
            ex.error = f"{type(exc).__name__}: {exc}"[:200]
            ex.cut = _MID_BODY in str(exc)
        ex.done = time.time()
        return ex

    def cut_by_kill(self, ex: Exchange) -> str:
        """A reply cut after its status line, right at a SIGKILL: the one failure nginx
        cannot hide (it had passed the status line on, so it cannot retry)."""
        if not ex.cut:
            return ""
        for fault in self.faults:
            if fault.kind == "kill" and fault.start - 0.05 <= ex.done <= fault.end + CUT_WINDOW:
                return f"reply cut by {fault.what} at {fault.start - self.t0:.3f}s"
        return ""

    # ---------------------------------------------------------------- JSON-RPC

    def rpc_app(self) -> ASGIApp:
        """The platform's JSON-RPC, as a raw ASGI app (a plain coroutine function, which
        uvicorn recognises as ASGI 3, unlike a bound method)."""

        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            await self._rpc(scope, receive, send)

        return app

    async def _rpc(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``calls.realtime_break`` and ``calls.hangup`` for the workers."""
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": None}
        try:
            request = json.loads(body)
            answer["id"] = request["id"]
            method, params = request["method"], request["params"]
            call = self.calls.get(params[0])
            if method == "calls.realtime_break":
                answer["result"] = call is not None and call.request_break()
            elif method == "calls.hangup":
                answer["result"] = call is not None and call.request_hangup()
            else:
                answer["error"] = {"code": -32601, "message": f"no method {method}"}
            self.rpc[f"{method} -> {answer.get('result', 'error')}"] += 1
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            answer["error"] = {"code": -32600, "message": f"bad request: {exc}"}
            self.rpc["bad request"] += 1
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": json.dumps(answer).encode()})

    # ---------------------------------------------------------------- load

    async def _one(self) -> None:
        self._next_id += 1
        call = VirtualCall(self, self._next_id, self.script())
        self.calls[call.callid] = call
        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await call.run()
        finally:
            self.running -= 1

    async def run(self, concurrency: int, seconds: float, ramp: float) -> None:
        """Keep ``concurrency`` calls up for ``seconds``; calls started finish."""
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + seconds
        lag = asyncio.create_task(self._watch_lag())

        async def slot(i: int) -> None:
            await asyncio.sleep(ramp * i / concurrency)
            while loop.time() < stop_at:
                await self._one()

        try:
            await asyncio.gather(*(slot(i) for i in range(concurrency)))
        finally:
            lag.cancel()
            await asyncio.gather(lag, return_exceptions=True)

    async def _watch_lag(self) -> None:
        """How late the driver's own event loop runs (it inflates measured latency)."""
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(0.05)
            self.loop_lag = max(self.loop_lag, loop.time() - before - 0.05)


# ================================================================ the stack and faults


class Stack:
    """Redis (AOF) <- delay proxy <- N uvicorn workers <- nginx (shipped site)."""

    def __init__(self, nginx_exe: str, log_dir: Path, *, workers: int = 3) -> None:
        from deploy_rig import LOGIN, PASSWORD, Nginx, UvicornWorker, worker_env
        from redis_server import RedisServer, free_port

        self.log_dir = log_dir
        self.sink = log_dir / "sink.jsonl"
        self.sink.touch()
        self.redis = RedisServer(args=["--appendonly", "yes", "--appendfsync", "everysec"])
        self.proxy = DelayProxy(self.redis.port, free_port(), log_dir / "proxy.log")
        self.rpc_port = free_port()
        env = worker_env(
            RTCONTROL_STORE_URL=f"redis://127.0.0.1:{self.proxy.port}/0",
            RTCONTROL_CALLBACK_LOGIN=LOGIN,
            RTCONTROL_CALLBACK_PASSWORD=PASSWORD,
            RTCONTROL_WORKERS=str(workers),
            CALLR_API_URL=f"http://127.0.0.1:{self.rpc_port}/json-rpc/v1.1/",
            CALLR_API_KEY="chaos-soak-key",
            CHAOS_SINK=str(self.sink),
        )
        self.workers = [
            UvicornWorker(
                "chaos_app:app", env, app_dir=DEPLOY_DIR, log_dir=log_dir, name=f"w{i + 1}"
            )
            for i in range(workers)
        ]
        self.nginx = Nginx(nginx_exe, [w.port for w in self.workers])
        self.auth = (LOGIN, PASSWORD)
        #: pid -> "w2#3" (worker w2, its third start), to name who ran a step
        self.pids: dict[int, str] = {}
        self.faults: list[Fault] = []

    def start(self) -> None:
        self.redis.start()
        self.proxy.start()
        for worker in self.workers:
            self.start_worker(worker)
        self.nginx.start()

    def start_worker(self, worker: Any) -> None:
        worker.start(timeout=30.0)
        self.pids[worker.proc.pid] = f"{worker.name}#{worker.starts}"

    def close(self) -> None:
        for closing in (self.nginx.close, *(w.close for w in self.workers), self.proxy.close):
            with contextlib.suppress(Exception):
                closing()
        self.redis.close()

    def diagnostics(self) -> str:
        parts = ["--- nginx errors (last 30):", *self.nginx.errors()[-30:]]
        for worker in self.workers:
            parts.append(f"--- {worker.name} log (last 60 lines):\n{worker.output()}")
        return "\n".join(parts)


@dataclass(frozen=True)
class Step:
    at: float  # seconds after the start of the load
    what: str
    kind: str
    action: Callable[[], str | None]


def fault_plan(stack: Stack, cycles: int, cycle: float) -> list[Step]:
    """Each cycle: a worker SIGKILLed then restarted, another SIGTERMed (drained) and
    restarted, Redis killed and restarted, Redis slowed down for 10 s. The workers hit
    rotate from one cycle to the next."""
    plan: list[Step] = []
    n = len(stack.workers)

    def kill(worker: Any) -> Callable[[], str | None]:
        def action() -> str:
            pid = worker.proc.pid
            worker.kill()
            return f"pid {pid}"

        return action

    def start(worker: Any) -> Callable[[], str | None]:
        def action() -> str:
            stack.start_worker(worker)
            return f"pid {worker.proc.pid}, ready"

        return action

    def term(worker: Any) -> Callable[[], str | None]:
        def action() -> str:
            pid = worker.proc.pid
            worker.signal(signal.SIGTERM)
            code = worker.wait(timeout=40)
            return f"pid {pid} drained and exited with {code}"

        return action

    def slow() -> str:
        stack.proxy.delay(0.1, 0.4)
        return "every chunk delayed, in order"

    def fast() -> str:
        stack.proxy.delay(0.0, 0.0)
        return "no delay"

    def redis_start() -> str:
        stack.redis.start()
        return "answers PING"

    for k in range(cycles):
        c = k * cycle
        victim, drained = stack.workers[k % n], stack.workers[(k + 1) % n]
        plan += [
            Step(c + 8, f"kill -9 {victim.name}", "kill", kill(victim)),
            Step(c + 10, f"{victim.name} restarted", "start", start(victim)),
            Step(c + 16, f"SIGTERM {drained.name}", "term", term(drained)),
            Step(c + 16.01, f"{drained.name} restarted", "start", start(drained)),
            Step(c + 23, "redis kill -9", "redis-kill", stack.redis.stop),
            Step(c + 24, "redis restarted (AOF)", "redis-start", redis_start),
            Step(c + 30, "redis +100-400 ms per direction", "slow", slow),
            Step(c + 40, "redis at full speed again", "fast", fast),
        ]
    return plan


async def run_faults(plan: list[Step], faults: list[Fault], t0: float) -> None:
    """Run the plan in order, each step at its time (or as soon as the previous ended).

    Blocking actions run in a thread; each is recorded with its wall-clock start and
    end, for the violations to be set against them.
    """
    loop = asyncio.get_running_loop()
    start = loop.time() - (time.time() - t0)
    for step in plan:
        await asyncio.sleep(max(0.0, start + step.at - loop.time()))
        fault = Fault(step.what, step.kind, time.time())
        faults.append(fault)
        note: str | None = await asyncio.to_thread(step.action)
        fault.note = note or ""
        fault.end = time.time()


# ================================================================ checks


def read_sink(path: Path) -> list[dict[str, Any]]:
    lines = []
    for raw in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(raw))
    return lines


async def wait_for_hangups(path: Path, callids: Iterable[int], within: float) -> float:
    """Until every call has an ``on_hangup`` line in the sink (at most ``within`` s).

    Reads only what was appended since the last look (the sink of a long run is big).
    """
    missing = set(callids)
    loop = asyncio.get_running_loop()
    started = loop.time()
    offset, partial = 0, b""
    while True:
        with path.open("rb") as sink:
            sink.seek(offset)
            data = partial + sink.read()
        offset += len(data) - len(partial)
        *complete, partial = data.split(b"\n")
        for raw in complete:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if line.get("ev") == "hangup":
                    missing.discard(line.get("callid"))
        if not missing or loop.time() - started >= within:
            return loop.time() - started
        await asyncio.sleep(0.1)


@dataclass
class Report:
    violations: list[Violation] = field(default_factory=list)
    excused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # findings reported, not asserted
    figures: dict[str, Any] = field(default_factory=dict)

    def by_kind(self) -> Counter[str]:
        return Counter(v.kind for v in self.violations)


def nearest_fault(faults: list[Fault], at: float, t0: float) -> str:
    """Where ``at`` stands among the faults: those that began within the platform's
    deadline after it (a POST in flight then), else the last one before it."""
    during = [f for f in faults if at <= f.start <= at + DEADLINE]
    if during:
        return "; ".join(
            f"'{f.what}' {f.start - at:.2f}s later ({f.start - t0:.2f}s)" for f in during
        )
    before = [f for f in faults if f.start <= at]
    if not before:
        return "before any fault"
    f = before[-1]
    return f"{at - f.start:.2f}s after '{f.what}' ({f.start - t0:.2f}s)"


def _check_flow(call: VirtualCall) -> str | None:
    flow = [c for c in call.executed if c != "wait"]
    if tuple(flow) != EXPECTED[: len(flow)]:
        return f"commands {flow}, expected a prefix of {list(EXPECTED)}"
    complete = call.ended_by == "app"
    if complete and tuple(flow) != EXPECTED:
        return f"ended by {call.ended_by} after {flow}, expected {list(EXPECTED)}"
    return None


def _check_keys(
    callid: int, what: str, runs: list[dict[str, Any]], report: Report, pid_name: Any
) -> int:
    """Runs of one step (or on_hangup) of one call: same key = a re-run (allowed)."""
    keys = [r.get("key") for r in runs]
    distinct = set(keys)
    evidence = "; ".join(
        f"{r['t'] - report.figures['t0']:.3f}s by {pid_name(r['pid'])} key={r.get('key')!r} "
        f"reporting {r.get('cid')!r}"
        for r in runs
    )
    if len(runs) > 1 and (None in distinct or len(distinct) > 1):
        kind = "on_hangup-repeated" if what == "on_hangup" else "step-rerun"
        detail = f"{what} ran {len(runs)} times with {len(distinct)} distinct keys: {evidence}"
        report.violations.append(Violation(kind, callid, runs[1]["t"], detail))
        return 0
    return len(runs) - 1


def _classify_late(v: Violation, line: list[str] | None) -> None:
    """Name a late reply after what nginx saw of it (its access-log line)."""
    if v.kind != "late-reply" or line is None:
        return
    if float(line[4]) < DEADLINE - 0.25:
        # nginx had the reply in time: the delay was in this process
        v.kind = "late-in-load-generator"
        v.detail += f" (nginx answered in {line[4]} s: the test machine is overloaded)"
    elif "," in line[2]:
        # the worker died (or refused) with the callback: another one got what was left
        # of the 5 s
        v.kind = "late-after-failover"
        v.detail += f" (nginx tried {line[2]}: {line[3]})"


def check(
    calls: list[VirtualCall],
    sink: list[dict[str, Any]],
    access: list[list[str]],
    t0: float,
    pid_name: Callable[[int], str],
) -> Report:
    """Every invariant over every call (see test_chaos's docstring); ``access`` is
    nginx's access log, to tell a late reply from a late load generator."""
    report = Report()
    report.figures["t0"] = t0
    in_nginx = {line[5]: line for line in access if len(line) >= 6}
    for call in calls:
        for v in call.violations:
            _classify_late(v, in_nginx.get(v.uri))
        report.violations += call.violations
        report.excused += [
            f"callid={call.callid} {ex.describe(t0)}" for ex in call.exchanges if ex.excused
        ]
        if not call.hangup_acked and not call.hangup_refused:
            report.violations.append(
                Violation("hangup-not-acknowledged", call.callid, call.ended, call.ended_by)
            )
        if (problem := _check_flow(call)) is not None:
            report.violations.append(Violation("flow", call.callid, call.ended, problem))

    known = {c.callid: c for c in calls}
    steps: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    hangups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for line in sink:
        if line.get("ev") == "step":
            steps[(line["callid"], line["step"])].append(line)
        elif line.get("ev") == "hangup":
            hangups[line["callid"]].append(line)
    strangers = {callid for callid, _ in steps} - set(known)
    if strangers:
        report.violations.append(
            Violation("unknown-call", min(strangers), t0, f"steps of unknown calls: {strangers}")
        )
    reruns = sum(_check_keys(c, s, runs, report, pid_name) for (c, s), runs in steps.items())
    hangup_reruns = 0
    for call in calls:
        runs = hangups.get(call.callid, [])
        if not runs:
            report.violations.append(
                Violation(
                    "on_hangup-missing",
                    call.callid,
                    call.ended,
                    f"no on_hangup; call ended by {call.ended_by}, HANGUP "
                    f"{'acknowledged' if call.hangup_acked else 'NOT acknowledged'}",
                )
            )
        else:
            hangup_reruns += _check_keys(call.callid, "on_hangup", runs, report, pid_name)
    keyless = sum(1 for line in sink if line.get("key") is None)
    if keyless:
        report.notes.append(
            f"call.idempotency_key is missing (None) on {keyless} of {len(sink)} executions: "
            "a step run twice cannot be told from a re-run, so every repeat is a violation"
        )
    report.figures.update(
        step_runs=sum(1 for line in sink if line.get("ev") == "step"),
        hangup_runs=sum(1 for line in sink if line.get("ev") == "hangup"),
        reruns_same_key=reruns,
        hangup_reruns_same_key=hangup_reruns,
    )
    _state_notes(calls, report)
    report.violations.sort(key=lambda v: v.at)
    return report


def _state_notes(calls: list[VirtualCall], report: Report) -> None:
    """The last prompt names the account typed at the start, read back from call.state."""
    from chaos_app import done_text

    lost = []
    for call in calls:
        plays = [c for c in call.commands if c.get("command") == "play"]
        if len(plays) >= 2 and not _fallback(plays[-1]):
            media = str(plays[-1].get("params", {}).get("media_id", ""))
            if not media.endswith(done_text(call.script.account)):
                lost.append(f"callid={call.callid} typed {call.script.account}, heard {media!r}")
    if lost:
        report.notes.append(
            f"call.state lost in {len(lost)} calls (the account typed is not in the last "
            "prompt): " + "; ".join(lost[:5])
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


_CALLID = re.compile(r"callid=(\d+)")


def worker_lines(logs: dict[str, Path]) -> dict[int, list[str]]:
    """The workers' log lines that name a call (``callid=N: ...``), by call id."""
    found: dict[int, list[str]] = defaultdict(list)
    for name, path in logs.items():
        with contextlib.suppress(OSError):
            for line in path.read_text(errors="replace").splitlines():
                if (m := _CALLID.search(line)) is not None:
                    found[int(m.group(1))].append(f"{name}: {line.strip()[:300]}")
    return found


def timeline(
    call: VirtualCall, sink: list[dict[str, Any]], t0: float, pid_name: Callable[[int], str]
) -> str:
    """Everything known about one call, in time order: POSTs and executions."""
    rows = [(ex.sent, "  " + ex.describe(t0)) for ex in call.exchanges]
    for line in sink:
        if line.get("callid") == call.callid:
            what = "on_hangup" if line["ev"] == "hangup" else f"step {line['step']}"
            rows.append(
                (
                    line["t"],
                    f"  {line['t'] - t0:7.3f}s {pid_name(line['pid'])} ran {what} "
                    f"key={line.get('key')!r} (callback reported {line.get('cid')!r})",
                )
            )
    head = (
        f"callid={call.callid} script={call.script} ended_by={call.ended_by} "
        f"hangup_acked={call.hangup_acked} executed={call.executed} breaks={call.breaks}"
    )
    return "\n".join([head] + [text for _, text in sorted(rows, key=lambda r: r[0])])


def nginx_evidence(
    lines: list[list[str]], uris: set[str], names: dict[str, str] | None = None
) -> list[str]:
    """nginx's access-log lines of some POSTs (the URI names the call and the POST):
    ``msec|status|upstreams tried|their statuses|seconds in nginx|uri``, each upstream
    address replaced by its worker's name when ``names`` has it."""
    found = []
    for line in lines:
        if len(line) >= 6 and line[5] in uris:
            text = "|".join(line)
            for addr, name in (names or {}).items():
                text = text.replace(addr, name)
            found.append(text)
    return found


_REQUEST = re.compile(r'request: "POST (\S+)')


def nginx_errors_by_uri(errors: list[str]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for line in errors:
        if (m := _REQUEST.search(line)) is not None:
            found[m.group(1)].append(line)
    return found


if __name__ == "__main__" and sys.argv[1:2] == ["delay-proxy"]:
    asyncio.run(_ProxyServer(int(sys.argv[3])).serve(int(sys.argv[2])))
