"""`make run` runs `rtcontrol demo`: calls must complete with no account and no network."""

from __future__ import annotations

import io
import socket

import pytest
from rich.console import Console
from typer.testing import CliRunner

from rtcontrol import demo
from rtcontrol.cli import app
from rtcontrol.demo import SCENARIOS, run_demo
from rtcontrol.errors import ConfigurationError


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
