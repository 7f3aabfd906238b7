"""Fixtures of the emulator tests (helpers live in emu_helpers.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from emu_helpers import SPEED, EmuFactory, ScriptedApp

from rtcontrol.emulator import Callee, Emulator, EmulatorSettings, ScaledClock


@pytest.fixture
async def make_emu() -> AsyncIterator[EmuFactory]:
    """Build emulators wired in-process to an app; every one is closed after the test."""
    made: list[Emulator] = []

    def factory(
        app: ScriptedApp | None = None,
        *,
        speed: float = SPEED,
        phonebook: dict[str, Callee] | None = None,
        default_callee: Callee | None = None,
        **settings: Any,
    ) -> Emulator:
        transport = httpx.ASGITransport(app.asgi) if app is not None else None
        emu = Emulator(
            EmulatorSettings(**settings),
            clock=ScaledClock(speed),
            transport=transport,
            phonebook=phonebook,
            default_callee=default_callee,
        )
        made.append(emu)
        return emu

    yield factory
    for emu in made:
        await emu.aclose()
