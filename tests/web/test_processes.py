"""K9: per-process state is never silently split between processes.

Processes that serve one app share its server socket; each claims a lock named
after the socket, so a second process serving it with a memory store is refused:
at lifespan start-up (``uvicorn --workers`` then stops), or with a 503 on its first
request when the lifespan is off. A shared store (Redis) is never refused.

Real processes throughout: children that inherit a socket (``pass_fds``),
``uvicorn --workers 2``, and servers that fork. Ordered by process events (output
lines, exits), with generous limits for a busy machine.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rtcontrol import App, ConfigurationError
from rtcontrol.adapters import process
from rtcontrol.adapters.endpoint import UNAVAILABLE
from rtcontrol.store import MemoryStore
from rtcontrol.web import callback_router

from .conftest import AUTH, Counter, client_for, counting_app, encode, rt_request
from .test_callback_path import lifespan_startup

ROOT = Path(__file__).resolve().parents[2]
SPLIT = "cannot share the memory store: each would see only its own calls"
#: Generous: a busy 2-core machine starts a uvicorn worker in well under this.
LIMIT = 90.0


class Child:
    """A process we started, its output collected line by line as it comes."""

    def __init__(self, args: list[str], *, cwd: Path, env: dict[str, str], **kw: Any) -> None:
        self.proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: a forked grandchild is ours to end
            **kw,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, count: int = 1, timeout: float = LIMIT) -> list[str]:
        """The first ``count`` lines containing ``text``; fails with the output otherwise."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [line for line in self.lines if text in line]
                if len(found) >= count:
                    return found[:count]
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {count}x {text!r} in the output:\n{self.output}")
                self._changed.wait(min(left, 0.5))

    def wait_exit(self, timeout: float = LIMIT) -> int:
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None
        self._reader.join(timeout=10)
        return code

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """SIGTERM to its process group (ours: started with a new session), then SIGKILL."""
        if self.proc.poll() is None or _group_alive(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # a forked grandchild left behind
        self._reader.join(timeout=10)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def child_env(*paths: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("RTCONTROL_", "CALLR_")) and k != "WEB_CONCURRENCY"
    }
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (*paths, ROOT))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        child.stop()


def claimer(
    children: list[Child], tmp_path: Path, sock: socket.socket, *, hold: bool = True
) -> Child:
    """A child process that inherits ``sock``, claims, prints the outcome and waits."""
    script = textwrap.dedent(
        """
        import json, sys
        from rtcontrol.adapters import process
        print("RESULT " + json.dumps(process.claim_listeners()), flush=True)
        sys.stdin.readline()
        """
    )
    child = Child(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=child_env(),
        pass_fds=[sock.fileno()],
    )
    children.append(child)
    return child


def result_of(child: Child) -> str | None:
    line = child.wait_for("RESULT ")[0]
    outcome: str | None = json.loads(line.removeprefix("RESULT "))
    return outcome


def tcp_server(*, listen: bool = True) -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    if listen:
        sock.listen()
    return sock


# --------------------------------------------------------------------- the check


def test_this_process_claims_its_server_sockets_once() -> None:
    with tcp_server() as sock:
        inode = os.fstat(sock.fileno()).st_ino
        assert process.server_sockets()[inode] == f"TCP 127.0.0.1:{sock.getsockname()[1]}"
        assert process.claim_listeners() is None
        assert process.claim_listeners() is None  # our own claim does not refuse us
        lock = process.runtime_dir() / f"socket-{inode}.lock"
        assert lock.read_text().strip() == str(os.getpid())
    assert process.claim_listeners() is None  # the socket is gone: its claim too
    assert not lock.exists()


def test_connected_and_unbound_sockets_are_not_server_sockets() -> None:
    with tcp_server() as server, socket.create_connection(server.getsockname()) as client:
        accepted, _ = server.accept()
        a, b = socket.socketpair()
        with accepted, a, b:
            found = process.server_sockets()
            inodes = {os.fstat(s.fileno()).st_ino for s in (client, accepted, a, b)}
            assert not inodes & set(found)
            assert os.fstat(server.fileno()).st_ino in found


@pytest.mark.parametrize("listen", [True, False], ids=["listening", "bound-not-listening"])
def test_a_process_sharing_the_socket_is_refused(
    children: list[Child], tmp_path: Path, listen: bool
) -> None:
    """``uvicorn --workers`` binds in the supervisor and listens in each worker after
    its start-up: a bound socket counts as much as a listening one."""
    with tcp_server(listen=listen) as sock:
        assert process.claim_listeners() is None
        refusal = result_of(claimer(children, tmp_path, sock))
    assert refusal is not None
    assert f"this one and process {os.getpid()} share the socket TCP 127.0.0.1:" in refusal
    assert SPLIT in refusal
    assert "RTCONTROL_STORE_URL=redis://" in refusal


def test_a_unix_socket_is_claimed_too(children: list[Child], tmp_path: Path) -> None:
    path = tmp_path / "rt.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        sock.listen()
        assert process.claim_listeners() is None
        refusal = result_of(claimer(children, tmp_path, sock))
    assert refusal is not None
    assert f"socket unix {path}" in refusal


def test_a_dead_holder_does_not_block(children: list[Child], tmp_path: Path) -> None:
    with tcp_server() as sock:
        child = claimer(children, tmp_path, sock)
        assert result_of(child) is None  # the child claimed first
        refusal = process.claim_listeners()
        assert refusal is not None
        assert f"process {child.proc.pid}" in refusal
        child.proc.kill()  # a crash: its lock goes with its last descriptor
        child.wait_exit()
        assert process.claim_listeners() is None


def test_not_linux_skips_the_check(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(process.sys, "platform", "darwin")
    caplog.set_level(logging.DEBUG, logger="rtcontrol.app")
    with tcp_server():
        assert process.claim_listeners() is None
    assert any("needs Linux /proc" in r.getMessage() for r in caplog.records)


# ------------------------------------------------------------ the app, in process


class SharedStore(MemoryStore):
    """Stands for Redis: shared between processes."""

    shared = True


@pytest.fixture
def held_elsewhere(children: list[Child], tmp_path: Path) -> Iterator[Child]:
    """A server socket of this process, already claimed by another live process."""
    with tcp_server() as sock:
        child = claimer(children, tmp_path, sock)
        assert result_of(child) is None
        yield child


async def test_first_request_refused_without_lifespan(
    held_elsewhere: Child, counter: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR)
    api = counting_app(counter).asgi()
    async with client_for(api) as c:
        first = await c.post("/callback", content=encode(rt_request()), headers=AUTH)
        health = await c.get("/healthz")
        again = await c.post("/callback", content=encode(rt_request(callid=2)), headers=AUTH)
    for response in (first, health, again):
        assert response.status_code == 503
        assert response.json() == {"error": UNAVAILABLE}
    assert SPLIT not in first.text  # the reason is for the log, not the caller
    logged = [r.getMessage() for r in caplog.records if SPLIT in r.getMessage()]
    assert len(logged) == 1  # once, not per request
    assert f"process {held_elsewhere.proc.pid}" in logged[0]
    assert counter.total == 0


async def test_lifespan_refuses_to_start(held_elsewhere: Child, counter: Counter) -> None:
    answer, shutdown = await lifespan_startup(counting_app(counter).asgi())
    await shutdown()
    assert answer["type"] == "lifespan.startup.failed"
    assert SPLIT in answer["message"]
    assert f"process {held_elsewhere.proc.pid}" in answer["message"]


async def test_your_app_with_the_router_refuses_the_callback(
    held_elsewhere: Child, counter: Counter
) -> None:
    """Mounted with ``callback_router``, the lifespan is yours: the callback itself checks."""
    existing = FastAPI()
    existing.include_router(callback_router(counting_app(counter)))
    async with client_for(existing) as c:
        response = await c.post("/callback", content=encode(rt_request()), headers=AUTH)
    assert response.status_code == 503
    assert response.json() == {"error": UNAVAILABLE}
    assert counter.total == 0


async def test_a_shared_store_is_never_refused(held_elsewhere: Child, counter: Counter) -> None:
    api = counting_app(counter, store=SharedStore()).asgi()
    answer, shutdown = await lifespan_startup(api)
    try:
        assert answer["type"] == "lifespan.startup.complete"
        async with client_for(api) as c:
            response = await c.post("/callback", content=encode(rt_request()), headers=AUTH)
    finally:
        await shutdown()
    assert response.status_code == 200
    assert counter.total == 1


def test_the_workers_setting_message_is_the_same() -> None:
    app = App(store=MemoryStore(), allow_no_auth=True, workers=3)
    with pytest.raises(ConfigurationError, match=SPLIT) as raised:
        app.asgi()
    assert str(raised.value).startswith("3 workers cannot share the memory store")


# ------------------------------------------------------------------ real servers

APP_MODULE = """
import os
from rtcontrol import App, hangup

store = None
if os.environ.get("K9_REDIS_URL"):
    from rtcontrol.store.redis import RedisStore

    store = RedisStore.from_url(os.environ["K9_REDIS_URL"], prefix=os.environ["K9_PREFIX"])
rt = App(store=store) if store is not None else App()


@rt.on_inbound
async def welcome(call):
    return hangup()


app = rt.asgi()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def uvicorn_workers(
    children: list[Child], tmp_path: Path, port: int, *extra: str, **env: str
) -> Child:
    (tmp_path / "k9_app.py").write_text(APP_MODULE)
    args = [sys.executable, "-m", "uvicorn", "k9_app:app", "--host", "127.0.0.1"]
    args += ["--port", str(port), "--workers", "2", *extra]
    child = Child(args, cwd=tmp_path, env=child_env(tmp_path, RTCONTROL_ALLOW_NO_AUTH="1", **env))
    children.append(child)
    return child


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_uvicorn_two_workers_with_the_memory_store_is_refused(
    children: list[Child], tmp_path: Path
) -> None:
    server = uvicorn_workers(children, tmp_path, free_port())
    server.wait_exit(timeout=180)  # uvicorn stops when a worker fails to start
    refusal = server.wait_for(SPLIT)[0]
    assert "several processes serve this app: this one and process " in refusal
    assert "failed to start, stopping the parent process" in server.output
    assert "Application startup complete." in server.output  # the other worker had started


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.timeout(300)
def test_uvicorn_two_workers_with_redis_start(
    children: list[Child], tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    port = free_port()
    server = uvicorn_workers(
        children, tmp_path, port, K9_REDIS_URL=redis_url, K9_PREFIX=redis_prefix
    )
    server.wait_for("Application startup complete.", count=2)
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        response = c.post("/callback", content=encode(rt_request()))
        health = c.get("/healthz")
    assert response.status_code == 200
    assert response.json()["command"] == "hangup"
    assert health.status_code == 200
    assert server.proc.poll() is None
    assert SPLIT not in server.output
    server.stop()


FORKED_SERVERS = """
import os, socket, sys
import uvicorn
from k9_app import app

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.set_inheritable(True)
print("PORT", sock.getsockname()[1], flush=True)
role = "child" if os.fork() == 0 else "parent"
config = uvicorn.Config(app, lifespan="on", log_config=None, ws="none")
try:
    uvicorn.Server(config).run(sockets=[sock])
except SystemExit as exc:
    print("EXIT", role, os.getpid(), exc.code, flush=True)
    raise
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_server_that_forks_serves_from_one_process_only(
    children: list[Child], tmp_path: Path
) -> None:
    """A pre-fork server (both processes start uvicorn on the inherited socket):
    one of the two refuses to start, the other serves."""
    (tmp_path / "k9_app.py").write_text(APP_MODULE)
    (tmp_path / "forked.py").write_text(FORKED_SERVERS)
    env = child_env(tmp_path, RTCONTROL_ALLOW_NO_AUTH="1")
    server = Child([sys.executable, "-c", _with_logging("forked.py")], cwd=tmp_path, env=env)
    children.append(server)
    port = int(server.wait_for("PORT ")[0].split()[1])
    server.wait_for(SPLIT)
    exited = server.wait_for("EXIT ")[0].split()
    assert exited[3] == "3"  # uvicorn's start-up failure
    server.wait_for("Application startup complete.")
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as c:
        assert c.post("/callback", content=encode(rt_request())).status_code == 200
    assert server.output.count("Application startup complete.") == 1


FORK_AFTER_SERVING = """
import asyncio, os, socket, json
from k9_app import app

sock = socket.socket()
sock.bind(("127.0.0.1", 0))
sock.listen()
body = json.dumps({"callid": 7, "call_status": "INCOMING_CALL"}).encode()


async def post():
    scope = {"type": "http", "method": "POST", "path": "/callback", "root_path": "",
             "query_string": b"", "headers": [(b"content-type", b"application/json")],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 1), "asgi": {"version": "3.0"}}
    sent = []
    async def receive():
        return {"type": "http.request", "body": body, "more_body": False}
    async def send(message):
        sent.append(message)
    await app(scope, receive, send)
    return sent[0]["status"]


print("PARENT", asyncio.run(post()), flush=True)
pid = os.fork()
if pid == 0:
    print("CHILD", asyncio.run(post()), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("DONE", flush=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_fork_after_serving_without_lifespan(children: list[Child], tmp_path: Path) -> None:
    """A process that served, then forked: the child's first request is refused (503),
    because the parent still holds the socket's claim."""
    (tmp_path / "k9_app.py").write_text(APP_MODULE)
    (tmp_path / "fork_after.py").write_text(FORK_AFTER_SERVING)
    env = child_env(tmp_path, RTCONTROL_ALLOW_NO_AUTH="1")
    script = Child([sys.executable, "-c", _with_logging("fork_after.py")], cwd=tmp_path, env=env)
    children.append(script)
    assert script.wait_for("PARENT ")[0] == "PARENT 200"
    assert script.wait_for("CHILD ")[0] == "CHILD 503"
    script.wait_for("DONE")
    assert script.wait_exit() == 0
    assert len([line for line in script.lines if SPLIT in line]) == 1  # the child's log


def _with_logging(script: str) -> str:
    return (
        "import logging, runpy; logging.basicConfig(level=logging.INFO); "
        f"runpy.run_path({script!r}, run_name='__main__')"
    )
