"""Fixtures of the engine tests: an App on a spying memory store and a fake call control.

``make_app(**settings)`` builds an App (handlers are registered by the test); every App
built is shut down after the test, and whatever it left running is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rtcontrol import App

from .kit import APP_HASH, FakeClock, FakeControl, Probe, SpyStore, as_client


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RTCONTROL_*/CALLR_* variable of the machine leaks into a test's settings."""
    for name in list(os.environ):
        if name.startswith(("RTCONTROL_", "CALLR_")) or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)


@pytest.fixture
def probe() -> Probe:
    return Probe()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(probe: Probe, clock: FakeClock) -> SpyStore:
    return SpyStore(probe, clock)


@pytest.fixture
def control(probe: Probe) -> FakeControl:
    return FakeControl(probe)


@pytest.fixture
async def make_app(store: SpyStore, control: FakeControl) -> AsyncIterator[Callable[..., App]]:
    """``make_app(handler_budget=0.3, ...)``: an App on the test's store and control."""
    built: list[App] = []

    def make(**kwargs: Any) -> App:
        kwargs.setdefault("store", store)
        kwargs.setdefault("client", as_client(control))
        kwargs.setdefault("app_hash", APP_HASH)
        app = App(**kwargs)
        built.append(app)
        return app

    yield make
    for app in built:
        store.down = False
        store.fail_writes = False
        store.blink = None
        await app.shutdown(timeout=2.0)
        left = [t for t in app._tasks if not t.done()]
        for task in left:
            task.cancel()
        for task in left:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 2.0)
