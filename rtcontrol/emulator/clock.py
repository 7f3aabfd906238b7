"""Virtual time: command durations are simulated, so a 30 s ``wait`` need not take 30 s.

Virtual seconds advance with real time times ``speed``. That keeps every race real (a
``calls.realtime_break`` still lands *while* a play runs) while a test at ``speed=50``
spends 0.2 s on a 10 s prompt. The webhook reply deadline is not virtual: it is about
HTTP latency and is always measured in real seconds.
"""

from __future__ import annotations

import asyncio
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol

__all__ = ["Clock", "ScaledClock"]


class Clock(Protocol):
    """What the engine needs from time."""

    def now(self) -> float:
        """Virtual seconds since the clock started."""
        ...

    def wall(self) -> datetime:
        """The virtual UTC date-time (for ``date_started``)."""
        ...

    def real_seconds(self, virtual: float) -> float:
        """How many real seconds ``virtual`` seconds take."""
        ...

    async def sleep(self, virtual: float) -> None:
        """Let ``virtual`` seconds pass."""
        ...


class ScaledClock:
    """Virtual time = real time x ``speed`` (1 for live demos, 50+ in tests)."""

    def __init__(self, speed: float = 1.0, *, start: datetime | None = None) -> None:
        if not math.isfinite(speed) or speed <= 0:
            raise ValueError(f"speed must be a positive number, got {speed!r}")
        self.speed = speed
        self._t0 = time.monotonic()
        self._start = start or datetime.now(UTC).replace(microsecond=0)

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed

    def wall(self) -> datetime:
        return self._start + timedelta(seconds=self.now())

    def real_seconds(self, virtual: float) -> float:
        return max(0.0, virtual) / self.speed

    async def sleep(self, virtual: float) -> None:
        await asyncio.sleep(self.real_seconds(virtual))

    def __repr__(self) -> str:
        return f"ScaledClock(speed={self.speed})"
