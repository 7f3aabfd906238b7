"""Helpers of the dev-loop tests (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("RTCONTROL_CHROMIUM", "/usr/bin/chromium")
#: Seconds a process may take to come up on a busy 2-core machine.
START = 90.0


#: Init scripts: a browser without any microphone API (``navigator.mediaDevices`` gone)...
NO_MEDIA_DEVICES = """
Object.defineProperty(Navigator.prototype, "mediaDevices", { get: () => undefined });
"""
#: ... and one whose user refuses the microphone (``getUserMedia`` rejects).
MIC_DENIED = """
if (navigator.mediaDevices) {
  navigator.mediaDevices.getUserMedia = () =>
    Promise.reject(new DOMException("Permission denied", "NotAllowedError"));
}
"""


#: Milliseconds a page state may take to show up on a busy 2-core machine.
WAIT_MS = 45_000


def page_expect() -> Any:
    """Playwright's ``expect``, with :data:`WAIT_MS` as its timeout."""
    from playwright.sync_api import expect

    expect.set_options(timeout=WAIT_MS)
    return expect


def page_ready(page: Any) -> Any:
    """Wait until the page is set up and its event stream is live; return ``expect``."""
    expect = page_expect()
    expect(page.locator("body")).to_have_attribute("data-ready", "true")
    expect(page.locator("#connection")).to_have_text("live")
    return expect


def shown_callid(page: Any) -> int:
    """The call whose transcript the page shows (the softphone's call)."""
    title = page.locator("#log-title").inner_text()
    return int(title.split()[-1])


#: Each transcript row of the page: its event's seq and type, its time, its text.
ROWS_JS = """
[...document.querySelectorAll("#transcript .ev")].map((e) => ({
  seq: Number(e.dataset.seq),
  type: e.dataset.type,
  at: parseFloat(e.querySelector(".at").textContent),
  text: e.textContent,
}))
"""


def transcript_rows(page: Any) -> list[dict[str, Any]]:
    """The rows of the transcript the page shows, top to bottom."""
    rows: list[dict[str, Any]] = page.evaluate(ROWS_JS)
    return rows


#: An unmasked phone number (what the page must never show).
PHONE = re.compile(r"\+[0-9]{6,15}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CALLR_", "RTCONTROL_")) and k != "WEB_CONCURRENCY"
    }
    env["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    return {**env, **extra}


def wait_for(condition: Callable[[], Any], what: str, timeout: float = START) -> Any:
    """Poll ``condition`` until it returns something truthy (a condition, not a sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@dataclass
class Proc:
    """A CLI process whose output goes to a file (never a pipe nobody reads)."""

    proc: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_line(self, pattern: str, timeout: float = START) -> re.Match[str]:
        def found() -> re.Match[str] | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"exited with {self.proc.returncode}:\n{self.output()}")
            return re.search(pattern, self.output(), re.M)

        match: re.Match[str] = wait_for(found, f"/{pattern}/ in the output", timeout)
        return match

    def stop(self) -> None:
        """SIGTERM to the process (it stops what it started), then its group if needed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        try:  # the app's uvicorn (same process group) must be gone too
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return
        os.killpg(self.proc.pid, signal.SIGKILL)


def start_cli(
    tmp: Path,
    name: str,
    *args: str,
    command: tuple[str, ...] = (sys.executable, "-m", "rtcontrol.cli"),
    cwd: Path = ROOT,
    **env: str,
) -> Proc:
    """``rtcontrol *args`` in the background (``command`` runs it; ``env`` adds to a
    clean environment), its output in ``tmp/<name>.log``."""
    log = tmp / f"{name}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, *args],
            cwd=cwd,
            env=clean_env(COLUMNS="200", **env),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return Proc(proc, log)


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rtcontrol.cli", *args],
        cwd=ROOT,
        env=clean_env(COLUMNS="200"),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def start_dev(tmp: Path, target: str, *args: str, **kwargs: Any) -> Dev:
    """``rtcontrol dev TARGET`` on free ports, once its banner is printed."""
    port, emulator_port = free_port(), free_port()
    ports = ("--port", str(port), "--emulator-port", str(emulator_port))
    proc = start_cli(tmp, "dev", "dev", target, *ports, *args, **kwargs)
    try:
        page = proc.wait_line(r"^softphone  (http://\S+/)$").group(1)
        rpc, app_hash = proc.wait_line(
            r"^emulator   (http://\S+)  REALTIME10 app (\w{8})$"
        ).groups()
    except BaseException:
        proc.stop()
        raise
    return Dev(proc, page, rpc, app_hash)


@dataclass
class Dev:
    """A running ``rtcontrol dev module:app``."""

    proc: Proc
    page_url: str
    rpc_url: str
    app_hash: str

    @property
    def control(self) -> str:
        return self.page_url + "control/v1"

    def get(self, path: str) -> Any:
        response = httpx.get(self.control + path, timeout=30, trust_env=False)
        response.raise_for_status()
        return response.json()

    def send(self, method: str, path: str, body: Any = None) -> Any:
        response = httpx.request(
            method, self.control + path, json=body, timeout=30, trust_env=False
        )
        response.raise_for_status()
        return response.json()

    def call_events(self, callid: int) -> list[dict[str, Any]]:
        """An ended call's events, as its SSE stream replays them (it ends after
        ``call.ended``)."""
        events: list[dict[str, Any]] = []
        url = f"{self.control}/calls/{callid}/events"
        with httpx.stream("GET", url, timeout=30, trust_env=False) as response:
            response.raise_for_status()
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line.removeprefix("data: ")))
                    if events[-1]["type"] == "call.ended":
                        break
        return events

    def wait_ended(self, callid: int) -> dict[str, Any]:
        """The call's info once it is over."""
        found: dict[str, Any] = wait_for(
            lambda: (info := self.get(f"/calls/{callid}"))["state"] == "ended" and info,
            f"call {callid} to end",
            60,
        )
        return found

    def app_log_lines(self, pattern: str) -> list[str]:
        return [line for line in self.proc.output().splitlines() if re.search(pattern, line)]
