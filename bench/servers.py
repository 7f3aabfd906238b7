"""Start the benchmarked apps under uvicorn on CPU0, and run wrk on CPU1.

Every server is ``taskset -c 0 uvicorn --factory bench.apps:make_<app> --workers 1
--http httptools --loop uvloop --log-level warning --no-access-log`` on 127.0.0.1.
Idle servers use no CPU, so all of them stay up during a phase and the load is
interleaved between them (A B C D A B C D...).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.apps import REDIS_URL_ENV

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
SERVER_CPU = "0"
LOAD_CPU = "1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def uvicorn_command(app: str, port: int) -> list[str]:
    return [
        "taskset",
        "-c",
        SERVER_CPU,
        PYTHON,
        "-m",
        "uvicorn",
        "--factory",
        f"bench.apps:make_{app.lower()}",
        "--app-dir",
        str(ROOT),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--log-level",
        "warning",
        "--no-access-log",
    ]


class Server:
    def __init__(self, app: str, redis_url: str, log_dir: Path) -> None:
        self.app = app
        self.port = _free_port()
        self.log = log_dir / f"server-{app}.log"
        env = dict(os.environ, **{REDIS_URL_ENV: redis_url})
        env.pop("RTCONTROL_STORE_URL", None)
        self.command = uvicorn_command(app, self.port)
        self._log_file = self.log.open("wb")
        self.proc = subprocess.Popen(
            self.command, cwd=ROOT, env=env, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.app} exited: {self.log.read_text()[-2000:]}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2),
            ):
                return
            time.sleep(0.1)
        raise RuntimeError(f"server {self.app} did not listen within {timeout}s")

    def cpu_seconds(self) -> float:
        """User+system CPU time of the server process so far (from /proc)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return float("nan")
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text()[-4000:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()


@contextlib.contextmanager
def serving(apps: list[str], redis_url: str, log_dir: Path) -> Iterator[dict[str, Server]]:
    servers: dict[str, Server] = {}
    try:
        for app in apps:
            servers[app] = Server(app, redis_url, log_dir)
        for server in servers.values():
            server.wait_ready()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def check_tools() -> list[str]:
    return [tool for tool in ("wrk", "taskset") if shutil.which(tool) is None]


def wrk(
    url: str,
    script: Path,
    *,
    duration: float,
    connections: int,
    args: list[str],
    timeout: float = 10.0,
) -> dict[str, Any]:
    """One pinned wrk run; the parsed ``done()`` JSON plus req/s."""
    command = [
        "taskset",
        "-c",
        LOAD_CPU,
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        f"--timeout={timeout:g}s",
        "--latency",
        "-s",
        str(script),
        url,
        "--",
        *args,
    ]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("WRKJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    result: dict[str, Any] = json.loads(line[len("WRKJSON ") :])
    if "duration_us" in result:
        result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def wrk_command_line(connections: int, duration: float) -> str:
    return (
        f"taskset -c {LOAD_CPU} wrk -t1 -c{connections} -d{round(duration)}s --latency "
        "-s post.lua http://127.0.0.1:PORT/cb -- BASE CALLS SEQ0"
    )
