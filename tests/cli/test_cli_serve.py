"""``rtcontrol serve`` as a child process: configuration errors are one line and exit 1
(never uvicorn's exit 3 or a traceback); running, it logs one line per callback."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.support import ROOT, clean_env, free_port, wait_listening

Run = Callable[..., subprocess.CompletedProcess[str]]
CREDENTIALS = {"RTCONTROL_CALLBACK_LOGIN": "callr", "RTCONTROL_CALLBACK_PASSWORD": "pw-123456"}

FAILING_APP = """
async def app(scope, receive, send):  # an ASGI app whose start-up fails
    if scope["type"] == "lifespan":
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})
"""

PLAIN_APP = """
async def app(scope, receive, send):  # an ASGI app that answers 200 "ok"
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def only_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one line on stderr (failing when there are more)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_callback_credentials(run_cli: Run) -> None:
    result = run_cli("serve", "apps.menu:app", "--port", "0")
    assert result.returncode == 1
    assert only_line(result) == (
        "error: the callback route needs credentials: set RTCONTROL_CALLBACK_LOGIN and "
        "RTCONTROL_CALLBACK_PASSWORD (the login/password of the REALTIME10 app), "
        "or opt out explicitly with RTCONTROL_ALLOW_NO_AUTH=1"
    )


def test_half_credentials_as_options(run_cli: Run) -> None:
    result = run_cli("serve", "apps.menu:app", "--port", "0", "--login", "callr")
    assert result.returncode == 1
    assert only_line(result) == (
        "error: RTCONTROL_CALLBACK_PASSWORD is empty while its pair is set: set both "
        "RTCONTROL_CALLBACK_LOGIN and RTCONTROL_CALLBACK_PASSWORD (the login/password of the "
        "REALTIME10 app)"
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [(["--workers", "2"], {}), ([], {"WEB_CONCURRENCY": "3"}), ([], {"RTCONTROL_WORKERS": "2"})],
)
def test_several_workers_on_the_memory_store(
    run_cli: Run, args: list[str], env: dict[str, str]
) -> None:
    result = run_cli("serve", "apps.menu:app", "--port", "0", *args, env={**CREDENTIALS, **env})
    assert result.returncode == 1
    workers = (args[1:] or list(env.values()))[0]
    assert only_line(result) == (
        f"error: {workers} workers cannot share the memory store: each would see only its own "
        "calls. Set RTCONTROL_STORE_URL=redis://... or run one worker."
    )


def test_unreachable_redis_is_one_line_without_traceback(run_cli: Run) -> None:
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = {**CREDENTIALS, "RTCONTROL_STORE_URL": url, "RTCONTROL_STORE_CONNECT_TIMEOUT": "0.5"}
    result = run_cli("serve", "apps.menu:app", "--port", "0", env=env)
    assert result.returncode == 1
    line = only_line(result)
    assert line.startswith("error: cannot start: the store is unreachable (redis ping: ")
    assert line.endswith("); check RTCONTROL_STORE_URL")


def test_invalid_settings_are_a_configuration_error(run_cli: Run) -> None:
    result = run_cli("serve", "apps.menu:app", env={**CREDENTIALS, "RTCONTROL_WORKERS": "many"})
    assert result.returncode == 1
    assert only_line(result) == (
        "error: apps.menu: invalid settings: RTCONTROL_WORKERS: Input should be a valid "
        "integer, unable to parse string as an integer"
    )


def test_busy_port(run_cli: Run) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli("serve", "apps.menu:app", "--port", str(port), env=CREDENTIALS)
    assert result.returncode == 1
    assert only_line(result) == f"error: port {port} on 127.0.0.1 is in use"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["nope"], "error: TARGET must be module:attribute (e.g. apps.menu:app), got 'nope'"),
        (["apps.menu:nope"], "error: module 'apps.menu' has no attribute 'nope'"),
        (
            ["apps.nope:app"],
            "error: cannot import 'apps.nope': no module 'apps.nope' "
            "(run rtcontrol from the directory that holds it)",
        ),
        (
            ["apps.menu:app", "--reload", "--workers", "2"],
            "error: --reload and --workers cannot be combined: reload runs one worker",
        ),
        (
            ["apps.menu:app", "--log-level", "loud"],
            "error: Invalid value for '--log-level': Value error, 'loud' is not one of "
            "'critical', 'error', 'warning', 'info', 'debug', 'trace' "
            "(see 'rtcontrol serve --help')",
        ),
        (
            ["apps.menu:app", "--workers", "0"],
            "error: Invalid value for '--workers' (env var: 'WEB_CONCURRENCY'): Input should "
            "be greater than or equal to 1 (see 'rtcontrol serve --help')",
        ),
    ],
)
def test_bad_input_is_exit_2(run_cli: Run, args: list[str], line: str) -> None:
    result = run_cli("serve", *args, env=CREDENTIALS)
    assert result.returncode == 2
    assert only_line(result) == line


@pytest.mark.parametrize("workers", ["1", "2"])
def test_an_app_that_fails_to_start_is_exit_1(run_cli: Run, tmp_path: Path, workers: str) -> None:
    """uvicorn exits 3 with one worker and 0 with several: both are exit 1 here."""
    (tmp_path / "failing.py").write_text(FAILING_APP)
    result = run_cli("serve", "failing:app", "--port", "0", "--workers", workers, cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert "ERROR:    no database" in lines
    assert lines[-1] == "error: the app did not start (its reason is logged above)"


# ---------------------------------------------------------------- serving for real


class Served:
    def __init__(self, proc: subprocess.Popen[str], port: int) -> None:
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> tuple[int, str]:
        """Ctrl-C, then the exit code and everything printed."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)
        return self.proc.returncode, out


@pytest.fixture
def serve() -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Served:
        port = free_port()
        proc = subprocess.Popen(
            [sys.executable, "-m", "rtcontrol.cli", "serve", *args, "--port", str(port)],
            cwd=cwd,
            env=clean_env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # the access log goes to stdout
            text=True,
        )
        served = Served(proc, port)
        started.append(served)
        wait_listening(port, proc)
        return served

    yield start
    for served in started:
        if served.proc.poll() is None:
            served.proc.kill()
            served.proc.communicate(timeout=10)


def post_callback(url: str, callid: int, auth: tuple[str, str]) -> httpx.Response:
    body = {"callid": callid, "call_status": "UP", "number": "+33612345678"}
    deadline = time.monotonic() + 10
    while True:  # the port accepts once the socket listens; the app may still be starting
        try:
            return httpx.post(url + "/callback", json=body, auth=auth, timeout=5)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_default_logs_one_line_per_callback(serve: Callable[..., Served]) -> None:
    served = serve("apps.menu:app", "--login", "callr", "--password", "pw-123456")
    assert post_callback(served.url, 4242, ("callr", "pw-123456")).status_code == 200
    code, log = served.stop()
    assert code == 0, log
    lines = [line for line in log.splitlines() if "callback callid=" in line]
    assert lines == [
        "INFO:     callback callid=4242 command_id=0 step=start status=UP outcome=reply "
        + lines[0].rsplit(" ", 1)[1]
    ]
    assert lines[0].rsplit(" ", 1)[1].startswith("handler_ms=")
    assert "POST /callback" not in log  # no second line from uvicorn's access log
    assert "pw-123456" not in log
    assert "+33612345678" not in log


def test_log_level_warning_turns_the_callback_lines_down(serve: Callable[..., Served]) -> None:
    served = serve("apps.menu:app", "--log-level", "warning", env=CREDENTIALS)
    assert post_callback(served.url, 4243, ("callr", "pw-123456")).status_code == 200
    code, log = served.stop()
    assert code == 0, log
    assert "callback callid=" not in log


def test_access_log_on_request(serve: Callable[..., Served]) -> None:
    served = serve("apps.menu:app", "--access-log", env=CREDENTIALS)
    assert post_callback(served.url, 4244, ("callr", "pw-123456")).status_code == 200
    code, log = served.stop()
    assert code == 0, log
    assert '"POST /callback HTTP/1.1" 200' in log
    assert "callback callid=4244" in log


def test_several_workers_serve(serve: Callable[..., Served], tmp_path: Path) -> None:
    (tmp_path / "plain.py").write_text(PLAIN_APP)
    served = serve("plain:app", "--workers", "2", cwd=tmp_path)
    answers = {httpx.get(served.url + "/", timeout=5).text for _ in range(4)}
    code, log = served.stop()
    assert answers == {"ok"}
    assert code == 0, log
    assert "with 2 workers" in log
    assert log.count("Started server process") == 2


@pytest.mark.redis
def test_several_workers_on_redis(serve: Callable[..., Served], redis_url: str) -> None:
    env = {**CREDENTIALS, "RTCONTROL_STORE_URL": redis_url}
    served = serve("apps.menu:app", "--workers", "2", env=env)
    callids = [random.randrange(10**12, 10**13) for _ in range(3)]  # fresh keys in Redis
    for callid in callids:
        assert post_callback(served.url, callid, ("callr", "pw-123456")).status_code == 200
    code, log = served.stop()
    assert code == 0, log
    for callid in callids:
        assert f"callback callid={callid} " in log


def _readme_serve_commands() -> list[str]:
    """The uvicorn commands the README's menu IVR says to serve it with."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## A menu IVR", 1)[1].split("\n## ", 1)[0]
    serve = section.split("Serve it with", 1)[1].split("How it reads:", 1)[0]
    return [
        line.split("#", 1)[0].strip()
        for line in serve.splitlines()
        if "uvicorn apps.menu:app" in line and not line.startswith("Serve")
    ]


def test_the_readme_serves_the_menu_with_credentials_or_an_explicit_opt_out() -> None:
    """`uvicorn apps.menu:app` alone exits 3 (the callback route needs credentials): the
    README says, where it says to serve it, which variables to set."""
    commands = _readme_serve_commands()
    assert [c.split(" uvicorn ")[0].split()[0].split("=")[0] for c in commands] == [
        "RTCONTROL_CALLBACK_LOGIN",
        "RTCONTROL_ALLOW_NO_AUTH",
    ]
    for command in commands:
        *assignments, _, target = command.replace("...", "pw-123456").split()
        env = dict(a.split("=", 1) for a in assignments)
        port = free_port()
        argv = [sys.executable, "-m", "uvicorn", target, "--port", str(port)]
        proc = subprocess.Popen(argv, cwd=ROOT, env=clean_env(**env), stderr=subprocess.PIPE)
        try:
            wait_listening(port, proc)
            assert httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False).is_success
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
    alone = subprocess.run(
        [sys.executable, "-m", "uvicorn", "apps.menu:app", "--port", str(free_port())],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert alone.returncode == 3
    assert "RTCONTROL_ALLOW_NO_AUTH=1" in alone.stderr
