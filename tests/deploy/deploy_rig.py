"""Real processes on loopback for the deployment tests: uvicorn workers and nginx.

Every process is started in its own session (process group) and is killed by that
group's id when the test ends, whatever happened, so nothing outlives the test. The
nginx site config is the shipped ``deploy/nginx/rtcontrol.conf``: only its ``listen``
port and the path of its upstream ``include`` are substituted.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import NoReturn

import httpx
import pytest
from redis_server import free_port

__all__ = [
    "CALLBACK",
    "LOGIN",
    "PASSWORD",
    "REPO",
    "Nginx",
    "UvicornWorker",
    "nginx_exe",
    "shipped_server_params",
    "skip_or_fail",
    "worker_env",
]

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
SITE_CONF = REPO / "deploy" / "nginx" / "rtcontrol.conf"
UPSTREAMS_CONF = REPO / "deploy" / "nginx" / "upstreams.conf"
CALLBACK = "/callback"
LOGIN = "callr-deploy"
PASSWORD = "deploy-S3cret"
#: The uvicorn settings of deploy/systemd/rtcontrol@.service (and the Containerfile).
UVICORN_ARGS = (
    "--proxy-headers",
    "--forwarded-allow-ips",
    "127.0.0.1",
    "--timeout-keep-alive",
    "75",
    "--timeout-graceful-shutdown",
    "25",
)


def skip_or_fail(config: pytest.Config, reason: str) -> NoReturn:
    """The suite's rule (``tests/conftest.py``): skip, but fail under ``CI=true``.

    The root conftest is reached through pytest's plugin manager: ``import conftest``
    would pick whichever conftest module was loaded last.
    """
    root = config.pluginmanager.get_plugin(str(TESTS / "conftest.py"))
    if root is None:
        pytest.fail(f"tests/conftest.py is not loaded; cannot apply skip_or_fail: {reason}")
    root.skip_or_fail(reason)
    raise AssertionError("unreachable")  # pragma: no cover


def nginx_exe() -> str | None:
    found = shutil.which("nginx")
    if found is None and os.access("/usr/sbin/nginx", os.X_OK):
        found = "/usr/sbin/nginx"
    return found


def uvicorn_exe() -> str:
    """The uvicorn of the virtualenv running the tests (``.venv/bin/uvicorn``)."""
    beside = Path(sys.executable).with_name("uvicorn")
    if beside.exists():
        return str(beside)
    found = shutil.which("uvicorn")
    if found is None:
        pytest.fail("uvicorn not found beside the test interpreter nor on PATH")
    return found


def worker_env(**settings: str) -> dict[str, str]:
    """The environment of a worker: this one without any RTCONTROL_* or WEB_CONCURRENCY,
    plus ``settings`` (e.g. ``RTCONTROL_STORE_URL="redis://..."``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RTCONTROL_") and k not in ("WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS")
    }
    env["PYTHONUNBUFFERED"] = "1"
    env.update(settings)
    return env


def _kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the process group the test started (its own session), by its id.

    Only while its leader is not reaped: until then the id cannot belong to anyone
    else (a leader that just exited is a zombie still holding it).
    """
    if proc.returncode is None and proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


class UvicornWorker:
    """One ``uvicorn APP --host 127.0.0.1 --port P`` process with the production flags."""

    def __init__(
        self,
        app: str,
        env: Mapping[str, str],
        *,
        port: int | None = None,
        app_dir: Path | None = None,
        log_dir: Path,
        name: str = "worker",
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.app = app
        self.env = dict(env)
        self.port = port or free_port()
        self.app_dir = app_dir
        self.name = name
        self.log = log_dir / f"{name}.log"
        self.extra_args = extra_args
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [uvicorn_exe(), self.app, "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += UVICORN_ARGS
        if self.app_dir is not None:
            cmd += ["--app-dir", str(self.app_dir)]
        return cmd + list(self.extra_args)

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process (no wait); its output is appended to ``self.log``."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.name} is already running")
        self.starts += 1
        with self.log.open("ab") as out:
            out.write(f"---- start #{self.starts}: {' '.join(self.command())}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(
                self.command(),
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self.proc

    def start(self, timeout: float = 20.0) -> None:
        """Start and wait until ``/healthz`` answers 200 (store reachable)."""
        proc = self.spawn()
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {proc.returncode} at start-up:\n{self.output()}"
                    )
                try:
                    if client.get(self.url + "/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n{self.output()}")

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, like a crash (``kill -9``); returns once the process is reaped."""
        if self.proc is not None:
            _kill_group(self.proc)
            self.proc.wait(timeout=10)

    def output(self) -> str:
        return _tail(self.log, 60)

    def close(self) -> None:
        if self.proc is not None:
            _kill_group(self.proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None


def site_config(listen: str, upstreams: Path) -> str:
    """The shipped site config with only ``listen`` and the upstream include path changed."""
    text = SITE_CONF.read_text()
    text, listens = re.subn(r"(?m)^(\s*)listen 80;", rf"\1listen {listen};", text)
    text, includes = re.subn(
        r"(?m)^(\s*)include /etc/nginx/rtcontrol-upstreams\.conf;",
        rf"\1include {upstreams};",
        text,
    )
    if (listens, includes) != (1, 1):
        pytest.fail(
            f"{SITE_CONF} changed shape: expected one 'listen 80;' and one upstream include, "
            f"found {listens} and {includes}; update tests/deploy/deploy_rig.py"
        )
    return text


def shipped_server_params() -> str:
    """The parameters of the ``server`` lines of the shipped ``upstreams.conf`` (e.g.
    ``max_fails=0``), so the tests run the workers' list as it is deployed."""
    found = re.search(r"(?m)^\s*server\s+\S+\s*([^;#]*);", UPSTREAMS_CONF.read_text())
    if found is None:
        pytest.fail(f"{UPSTREAMS_CONF} has no `server host:port ...;` line")
    return found.group(1).strip()


class Nginx:
    """nginx with a private prefix: ``nginx -p DIR -c DIR/nginx.conf -g 'daemon off;'``.

    The worker list has one ``server 127.0.0.1:<port> <params>;`` line per port;
    ``server_params`` defaults to those of the shipped ``deploy/nginx/upstreams.conf``.
    """

    def __init__(
        self,
        exe: str,
        upstream_ports: list[int],
        *,
        workers: int = 1,
        server_params: str | None = None,
    ) -> None:
        self.exe = exe
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="rtc-nginx-"))
        # Worker processes drop root for nobody: they must be able to reach the dir.
        self.dir.chmod(0o755)
        self.error_log = self.dir / "error.log"
        self.access_log = self.dir / "access.log"
        self.upstreams = self.dir / "upstreams.conf"
        params = shipped_server_params() if server_params is None else server_params
        self.upstreams.write_text(
            "".join(f"server 127.0.0.1:{p} {params};\n".replace(" ;", ";") for p in upstream_ports)
        )
        (self.dir / "rtcontrol.conf").write_text(
            site_config(f"127.0.0.1:{self.port}", self.upstreams)
        )
        d = self.dir
        (d / "nginx.conf").write_text(
            f"""worker_processes {workers};
pid {d}/nginx.pid;
error_log {self.error_log} warn;
events {{ worker_connections 4096; }}
http {{
    log_format rtc '$msec|$status|$upstream_addr|$upstream_status|$request_time|$request_uri';
    access_log {self.access_log} rtc;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/rtcontrol.conf;
}}
"""
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        return [self.exe, "-p", f"{self.dir}/", "-c", str(self.dir / "nginx.conf")]

    def check(self) -> None:
        """``nginx -t``: the config (with the shipped site file) is valid."""
        done = subprocess.run(
            [*self._args(), "-e", str(self.error_log), "-t"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nginx -t failed:\n{done.stderr.decode(errors='replace')}")

    def start(self, timeout: float = 10.0) -> None:
        self.check()
        with (self.dir / "stderr.log").open("ab") as err:
            self.proc = subprocess.Popen(
                [*self._args(), "-e", str(self.error_log), "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        with httpx.Client(trust_env=False, timeout=1.0) as client:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"nginx exited at start-up:\n{_tail(self.error_log)}")
                try:
                    client.get(self.url + "/healthz")
                    return
                except httpx.TransportError:
                    time.sleep(0.05)
        raise RuntimeError(f"nginx did not listen on {self.url} in {timeout}s")

    def access_lines(self) -> list[list[str]]:
        """``[msec, status, upstream_addr, upstream_status, request_time, uri]`` per request;
        a request nginx passed on to another worker lists each try: ``"a, b"``."""
        try:
            return [line.split("|") for line in self.access_log.read_text().splitlines()]
        except OSError:
            return []

    def errors(self) -> list[str]:
        """error.log lines at [error] level and above (connection resets, 502s...)."""
        try:
            lines = self.error_log.read_text(errors="replace").splitlines()
        except OSError:
            return []
        return [ln for ln in lines if re.search(r"\[(error|crit|alert|emerg)\]", ln)]

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.proc.wait(timeout=5)
            _kill_group(self.proc)  # any worker left behind by a killed master
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def cleanup(*items: UvicornWorker | Nginx) -> Iterator[None]:
    try:
        yield
    finally:
        for item in items:
            item.close()
