"""`make run` runs `rtcontrol demo`: calls must complete with no account and no network."""

from __future__ import annotations

import io
import queue
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rtcontrol import demo
from rtcontrol.cli import app
from rtcontrol.demo import SCENARIOS, run_demo
from rtcontrol.errors import ConfigurationError
from tests.cli.support import ROOT, clean_env

DEMO = [sys.executable, "-m", "rtcontrol.cli", "demo", "--port", "0", "--emulator-port", "0"]


async def test_demo_calls_complete_their_flows() -> None:
    out = io.StringIO()
    transcripts = await run_demo(
        "apps.menu:build", 0, 0, speed=200.0, keep_running=False, console=Console(file=out)
    )
    assert len(transcripts) == len(SCENARIOS) + 1
    assert all(t.hangup_count == 1 and not t.errors for t in transcripts)
    sales, support, silent, hangs_up, outbound = transcripts
    assert sales.executed == ["read", "dialout"]
    assert sales.replies[1]["params"]["targets"][0]["number"] == "+33100000001"
    assert support.executed == ["read", "read", "dialout"]
    assert support.replies[2]["params"]["targets"][0]["number"] == "+33100000002"
    assert silent.executed == ["read", "read", "read", "play", "hangup"]
    assert hangs_up.ended_by == "callee"
    assert outbound.direction == "outbound"
    assert outbound.executed == ["read", "dialout"]
    printed = out.getvalue()
    assert "rtcontrol demo" in printed
    assert printed.count("1 HANGUP") == len(transcripts)


def test_demo_command_runs_and_exits() -> None:
    result = CliRunner().invoke(
        app,
        ["demo", "--port", "0", "--emulator-port", "0", "--speed", "200", "--no-keep-running"],
    )
    assert result.exit_code == 0, result.output
    assert "An outbound call" in result.output


async def test_demo_takes_a_free_port_only_when_none_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The default ports busy: the demo runs elsewhere; a busy port given is an error."""
    with socket.socket() as busy_app, socket.socket() as busy_emulator:
        for s in (busy_app, busy_emulator):
            s.bind(("127.0.0.1", 0))
            s.listen()
        app_port, emulator_port = busy_app.getsockname()[1], busy_emulator.getsockname()[1]
        monkeypatch.setattr(demo, "DEFAULT_PORT", app_port)
        monkeypatch.setattr(demo, "DEFAULT_EMULATOR_PORT", emulator_port)
        out = io.StringIO()
        transcripts = await run_demo(
            "apps.menu:build", None, None, 200.0, keep_running=False, console=Console(file=out)
        )
        assert len(transcripts) == len(SCENARIOS) + 1
        printed = out.getvalue()
        assert "http://127.0.0.1:" in printed
        assert f":{app_port}/" not in printed
        assert f":{emulator_port}/" not in printed

        with pytest.raises(ConfigurationError) as refused:
            await run_demo("apps.menu:build", app_port, 0, 200.0, False, Console(file=out))
        assert str(refused.value) == f"port {app_port} on 127.0.0.1 is in use"


@pytest.mark.parametrize("columns", ["80", "40"])
def test_the_banner_lines_are_whole_in_any_terminal(columns: str) -> None:
    """Each address and the app hash on one line, never cut or wrapped to the width."""
    result = subprocess.run(
        [*DEMO, "--speed", "200", "--no-keep-running"],
        cwd=ROOT,
        env=clean_env(COLUMNS=columns, LINES="20"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    title, app_line, emulator_line, control_line, speed_line = result.stdout.splitlines()[:5]
    assert "rtcontrol demo" in title
    assert len(title) <= int(columns)
    assert re.fullmatch(r"app apps\.menu:build on http://127\.0\.0\.1:\d+/callback", app_line)
    found = re.fullmatch(
        r"CALLR emulator on (http://127\.0\.0\.1:\d+)/json-rpc/v1\.1/  "
        r"\(REALTIME10 app [A-Z0-9]{8}\)",
        emulator_line,
    )
    assert found is not None, emulator_line
    assert control_line == (
        f"its control API on {found.group(1)}/control/v1/  (rtcontrol call --inbound)"
    )
    assert speed_line == "time runs 200x faster than real time"


class _Lines:
    """The lines a process prints, read by a thread: wait for one, with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        self.stdout = proc.stdout
        self.lines: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.seen: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.stdout:
            self.lines.put(line.rstrip("\n"))

    def close(self) -> None:
        """Once the process has exited: the reader reaches the end, the pipe is closed."""
        self.reader.join(timeout=10)
        self.stdout.close()

    def wait(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matches {pattern!r} in:\n" + "\n".join(self.seen))


def test_call_inbound_works_against_the_running_demo() -> None:
    """The line the demo prints, typed in a second terminal, places an inbound call that
    the demo's emulator runs through the app and prints."""
    proc = subprocess.Popen(
        [*DEMO, "--speed", "200"],
        cwd=ROOT,
        env=clean_env(COLUMNS="80", PYTHONUNBUFFERED="1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = _Lines(proc)
    try:
        serving = out.wait(r"^Still serving\. .* --app (\w{8}) --api-url (\S+) ")
        app_hash, api_url = serving.groups()
        inbound = ["call", "--inbound", "+33123456789", "--app", app_hash, "--api-url", api_url]
        typed = out.wait(r"^Or have a caller call the app: \.venv/bin/rtcontrol (.*)$", 10)
        assert typed.group(1).split() == inbound
        placed = subprocess.run(
            [sys.executable, "-m", "rtcontrol.cli", *inbound],
            cwd=ROOT,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert placed.returncode == 0, placed.stderr
        callid = re.fullmatch(r"call id (\d+) \(inbound, app \w{8}\)\n", placed.stdout)
        assert callid is not None, placed.stdout
        out.wait(rf"─ call {callid.group(1)} ─")  # its transcript, printed when it ends
        out.wait(r"1 HANGUP")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        out.close()
