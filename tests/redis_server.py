"""A private, throw-away ``redis-server`` for tests: start, stop, restart on the same port.

Used by the root conftest (session Redis) and by tests that kill or restart Redis
mid-run. No persistence unless asked (``args``), nothing written outside a temp dir.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

__all__ = ["RedisServer", "free_port"]


def free_port() -> int:
    """A loopback TCP port that was free a moment ago (also handy as a closed port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """``with RedisServer() as srv: srv.url; srv.restart()``.

    ``args`` are extra ``redis-server`` options, e.g. ``["--appendonly", "yes"]``; the
    data directory survives :meth:`restart`, so AOF tests can check what was kept.
    """

    def __init__(self, *, port: int | None = None, args: list[str] | None = None) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise FileNotFoundError("redis-server not found on PATH")
        self.exe = exe
        self.port = port or free_port()
        self.args = list(args or [])
        self._tmp = tempfile.TemporaryDirectory(prefix="rtc-redis-")
        self.dir = Path(self._tmp.name)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        """Start and wait until it answers PING; raise RuntimeError otherwise."""
        if self.running:
            return
        cmd = [self.exe, "--port", str(self.port), "--bind", "127.0.0.1"]
        cmd += ["--save", "", "--appendonly", "no", "--dir", str(self.dir)]
        cmd += ["--daemonize", "no", "--logfile", str(self.dir / "redis.log"), *self.args]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._reap()
                raise RuntimeError(f"redis-server exited at start-up: {err.strip()[:500]}")
            if self._answers():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def stop(self) -> None:
        """Stop at once (SIGKILL, like a crash: the port is free when this returns)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._reap()

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def _reap(self) -> None:
        assert self._proc is not None
        self._proc.wait(timeout=10)
        if self._proc.stderr is not None:
            self._proc.stderr.close()
        self._proc = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
