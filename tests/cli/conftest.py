"""Fixtures for the CLI tests: a real emulator process on loopback, a clean environment."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rtcontrol.emulator import RPC_PATH
from tests.cli.support import ROOT, clean_env, free_port, wait_listening


@pytest.fixture(scope="module")
def api_url() -> Iterator[str]:
    """The JSON-RPC URL of an ``rtcontrol emulator`` process (time 50x faster)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcontrol.cli", "emulator", "--port", str(port), "--speed", "50"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_listening(port, proc)
        yield f"http://127.0.0.1:{port}{RPC_PATH}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


@pytest.fixture
def run_cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``rtcontrol ARGS`` as a child process: real exit codes, real stderr, no TTY."""

    def run(
        *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "rtcontrol.cli", *args],
            cwd=cwd,
            env=clean_env(**(env or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run
