"""Helpers shared by the CLI tests."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

__all__ = ["ROOT", "clean_env", "free_port", "wait_listening"]

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes] | subprocess.Popen[str]) -> None:
    """Until something accepts on 127.0.0.1:port (the process must stay alive)."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        assert proc.poll() is None, f"exited with {proc.returncode}"
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


def clean_env(**extra: str) -> dict[str, str]:
    """os.environ without CALLR_*, RTCONTROL_* and WEB_CONCURRENCY, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CALLR_", "RTCONTROL_")) and k != "WEB_CONCURRENCY"
    }
    return {**env, **extra}
