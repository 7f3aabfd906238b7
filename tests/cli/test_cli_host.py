"""``rtcontrol emulator`` and ``rtcontrol dev`` on an interface other than loopback: one
warning line on stderr at start (the control API and the softphone page have no
authentication); on loopback, none."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rtcontrol.cli import app
from tests.cli.support import ROOT, clean_env

WARNING = (
    "warning: --host {host} is not loopback: other machines can reach the emulator's "
    "control API and softphone page, which have no authentication (they can place calls "
    "and read transcripts); use --host 127.0.0.1 to keep them local\n"
)


def _emulator_stderr(host: str) -> str:
    """What ``rtcontrol emulator --host HOST`` printed on stderr once it listened."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcontrol.cli", "emulator", "--host", host, "--port", "0"],
        cwd=ROOT,
        env=clean_env(COLUMNS="40"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        while line := proc.stdout.readline():
            if line.startswith("Control API at "):
                break
        else:
            pytest.fail(f"the emulator did not start: exit {proc.wait(timeout=10)}")
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    return stderr


@pytest.mark.parametrize("host", ["0.0.0.0"])
def test_the_emulator_warns_once_off_loopback(host: str) -> None:
    assert _emulator_stderr(host) == WARNING.format(host=host)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_emulator_on_loopback_prints_no_warning(host: str) -> None:
    assert _emulator_stderr(host) == ""


@pytest.mark.parametrize(("host", "warned"), [("0.0.0.0", True), ("127.0.0.1", False)])
def test_dev_warns_once_off_loopback(
    host: str, warned: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``rtcontrol dev --host``: the same line, before the servers start (here a stand-in
    that records its options)."""
    from rtcontrol.devpage import run

    started: list[Any] = []

    async def run_dev(opts: Any, console: Any) -> None:
        started.append(opts)

    monkeypatch.setattr(run, "run_dev", run_dev)
    for name in ("RTCONTROL_CALLBACK_LOGIN", "RTCONTROL_CALLBACK_PASSWORD"):
        monkeypatch.setenv(name, "restored-after-the-test")
    # An app module of its own, imported once dev has set the callback credentials.
    module = f"host_check_app_{tmp_path.name}"
    (tmp_path / f"{module}.py").write_text("from rtcontrol import App\n\napp = App()\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        result = CliRunner().invoke(app, ["dev", f"{module}:app", "--host", host])
    finally:
        sys.modules.pop(module, None)
    assert result.exit_code == 0, result.output
    assert [opts.host for opts in started] == [host]
    assert result.stderr == (WARNING.format(host=host) if warned else "")
