"""A private, throw-away Redis Cluster for tests: three masters on free loopback ports.

Each node is a ``redis-server --cluster-enabled yes`` in its own temp directory, no
persistence; ``redis-cli --cluster create`` assigns the 16384 slots, and start-up
waits until every node says ``cluster_state:ok`` and agrees on the slot map. Used by
the root conftest (``redis_cluster_url``, one per session).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from redis_server import free_port

__all__ = ["RedisClusterServer"]


class RedisClusterServer:
    """``with RedisClusterServer() as cluster: cluster.url  # redis+cluster://127.0.0.1:N1,...``"""

    def __init__(self, *, masters: int = 3) -> None:
        server = shutil.which("redis-server")
        cli = shutil.which("redis-cli")
        if server is None or cli is None:
            raise FileNotFoundError("redis-server and redis-cli are needed for a cluster")
        self.server_exe, self.cli_exe = server, cli
        self.ports = self._ports(masters)
        self._tmp = tempfile.TemporaryDirectory(prefix="rtc-cluster-")
        self.dir = Path(self._tmp.name)
        self._procs: list[subprocess.Popen[bytes]] = []

    @staticmethod
    def _ports(n: int) -> list[int]:
        """Distinct free ports whose cluster bus ports (port + 10000) are free too."""
        ports: list[int] = []
        while len(ports) < n:
            port = free_port()
            if port + 10000 > 65535 or port in ports or not _free(port + 10000):
                continue
            ports.append(port)
        return ports

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", p) for p in self.ports]

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster, wait until it serves every slot."""
        deadline = time.monotonic() + timeout
        for port in self.ports:
            node_dir = self.dir / str(port)
            node_dir.mkdir()
            cmd = [self.server_exe, "--port", str(port), "--bind", "127.0.0.1"]
            cmd += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            cmd += ["--cluster-node-timeout", "5000", "--dir", str(node_dir)]
            cmd += ["--save", "", "--appendonly", "no", "--daemonize", "no"]
            cmd += ["--logfile", str(node_dir / "redis.log")]
            self._procs.append(
                subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            )
        try:
            for port in self.ports:
                self._wait(deadline, lambda p=port: _command(p, "PING").startswith("+PONG"))
            create = [self.cli_exe, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
            create += ["--cluster-replicas", "0", "--cluster-yes"]
            done = subprocess.run(
                create,
                capture_output=True,
                timeout=max(deadline - time.monotonic(), 1),
                check=False,
            )
            if done.returncode != 0:
                out = (done.stdout + done.stderr).decode(errors="replace")
                raise RuntimeError(f"redis-cli --cluster create failed: {out.strip()[-500:]}")
            for port in self.ports:
                self._wait(
                    deadline, lambda p=port: "cluster_state:ok" in _command(p, "CLUSTER INFO")
                )
            self._wait(deadline, self._agreed)
        except BaseException:
            self.close()
            raise

    def _agreed(self) -> bool:
        """Every node knows every other node as a master with slots (gossip settled)."""
        for port in self.ports:
            serving = 0
            for line in _command(port, "CLUSTER NODES").splitlines():
                fields = line.split()
                # id addr flags master ping pong epoch link-state slot...
                if (
                    len(fields) > 8
                    and "master" in fields[2].split(",")
                    and fields[7] == "connected"
                ):
                    serving += 1
            if serving != len(self.ports):
                return False
        return True

    def _wait(self, deadline: float, ready: Callable[[], bool]) -> None:
        while time.monotonic() < deadline:
            for proc in self._procs:
                if proc.poll() is not None:
                    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"a cluster node exited at start-up: {err.strip()[:500]}")
            if ready():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis cluster on ports {self.ports} not ready in time")

    def stop(self) -> None:
        for proc in self._procs:
            if proc.poll() is None:
                proc.kill()
        for proc in self._procs:
            proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
        self._procs.clear()

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> RedisClusterServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _command(port: int, command: str) -> str:
    """One inline command over a raw socket; the reply as text, '' when unreachable."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as s:
            s.sendall(command.encode() + b"\r\n")
            data = b""
            s.settimeout(1.0)
            while True:
                chunk = s.recv(65536)
                data += chunk
                if not chunk or _complete(data):
                    return data.decode(errors="replace")
    except OSError:
        return ""


def _complete(data: bytes) -> bool:
    """A whole simple, error or bulk-string reply (all this harness reads)."""
    if data[:1] in (b"+", b"-", b":"):
        return data.endswith(b"\r\n")
    if data[:1] == b"$":
        head, sep, rest = data.partition(b"\r\n")
        if not sep:
            return False
        size = int(head[1:])
        return size < 0 or len(rest) >= size + 2
    return False
