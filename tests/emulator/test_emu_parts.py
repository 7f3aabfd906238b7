"""The small parts: clock, callee scripts, settings, transcript rendering."""

from __future__ import annotations

import asyncio
import time

import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, run_inbound, tts
from rich.console import Console

from rtcontrol.emulator import Callee, EmulatorSettings, Press, ScaledClock, Silence, Speak


async def test_scaled_clock_runs_faster_than_real_time() -> None:
    clock = ScaledClock(200)
    start_real, start_virtual = time.monotonic(), clock.now()
    await clock.sleep(10)  # 10 virtual seconds
    real = time.monotonic() - start_real
    assert 0.04 <= real < 0.5
    assert clock.now() - start_virtual >= 10
    assert clock.real_seconds(10) == pytest.approx(0.05)
    assert clock.wall() > clock.wall().replace(year=2000)


@pytest.mark.parametrize("speed", [0, -1, float("inf"), float("nan")])
def test_scaled_clock_refuses_bad_speeds(speed: float) -> None:
    with pytest.raises(ValueError, match="speed"):
        ScaledClock(speed)


def test_callee_validation() -> None:
    with pytest.raises(ValueError, match="digits"):
        Press("12a")
    with pytest.raises(ValueError, match="digits"):
        Press("")
    with pytest.raises(ValueError, match=">= 0"):
        Speak(-1)
    with pytest.raises(ValueError, match="answer"):
        Callee("maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="from 1"):
        Callee(hangup_during=0)
    callee = Callee(actions=[Press("1"), Silence()])
    assert callee.actions == (Press("1"), Silence())
    assert hash(callee) == hash(Callee(actions=(Press("1"), Silence())))


def test_settings_are_frozen_and_strict() -> None:
    settings = EmulatorSettings()
    assert settings.reply_timeout == 5.0
    assert settings.on_late_reply == "hangup"
    with pytest.raises(ValueError, match="extra"):
        EmulatorSettings(reply_timout=1)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="frozen"):
        settings.reply_timeout = 1  # type: ignore[misc]
    assert settings.rpc_code("NEVER_HEARD_OF") == -32603
    fields = EmulatorSettings.model_fields
    assert all(
        fields[name].description
        for name in ("break_result", "break_when_idle", "missing_variables", "reply_timeout")
    )


async def test_transcript_renders_for_people(make_emu: EmuFactory) -> None:
    app = ScriptedApp(
        cmd("read", 1, media_id=tts("Pick"), max_digits=1, attempts=1, timeout_ms=1000),
        cmd("dance", 2),
        cmd("hangup", 3),
    )
    _, t = await run_inbound(make_emu, app, Callee(actions=[Press("5", barge_in=True, after=0.1)]))
    text = t.render()
    lines = text.splitlines()
    assert lines[0].startswith(f"Call {t.callid} (inbound)")
    assert "POST" in lines[1]
    assert "INCOMING_CALL" in lines[1]
    assert "presses '5' during the prompt (barge-in)" in text
    assert "refused 'dance': UNKNOWN_COMMAND" in text
    assert "[ignored]" in text
    assert lines[-1].startswith("ended by app after")
    assert "1 HANGUP, 1 error" in lines[-1]
    assert str(t) == text

    console = Console(record=True, width=160)
    console.print(t)
    rich_text = console.export_text()
    assert "UNKNOWN_COMMAND" in rich_text
    assert "REPLY 200" in rich_text


async def test_wait_until_raises_when_the_call_ends_first(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("hangup", 1))
    emu = make_emu(app)
    call = emu.start_call(emu.create_app(app.url).hash)
    from rtcontrol.errors import CallEnded

    with pytest.raises(CallEnded):
        await asyncio.wait_for(call.wait_command("play"), 5)
    assert emu.transcripts == [call.transcript]
