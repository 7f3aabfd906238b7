"""Fixtures of the framework tests: apps wired to a fake client, a spying store, a platform.

``app`` is a default App (handlers are registered by the test after the fixture built
it: the App looks them up at dispatch time); ``platform`` drives it through the real
ASGI app. Tests that need other settings build their own with ``make_app(...)`` and
``serve(app)``.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import sys
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rtcontrol import App

from .rig import LOGIN, PASSWORD, FakeClient, FakeClock, Platform, Probe, SpyStore, connect


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RTCONTROL_*/CALLR_* variable of the machine leaks into a test's settings."""
    for name in list(os.environ):
        if name.startswith(("RTCONTROL_", "CALLR_")) or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _rpc_options(monkeypatch: pytest.MonkeyPatch) -> None:
    """``start_call`` imports ``rtcontrol.rpc.RealtimeOptions``; stand in until rpc exists."""
    try:
        importlib.import_module("rtcontrol.rpc")
    except ImportError:

        @dataclasses.dataclass(frozen=True)
        class RealtimeOptions:
            cli: str = "BLOCKED"
            cdr_field: str = ""

        stub = types.ModuleType("rtcontrol.rpc")
        stub.RealtimeOptions = RealtimeOptions  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "rtcontrol.rpc", stub)


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
def fake(probe: Probe) -> FakeClient:
    return FakeClient(probe)


@pytest.fixture
def make_app(store: SpyStore, fake: FakeClient) -> Callable[..., App]:
    """``make_app(handler_budget=0.05, hold=..., ...)``: an App on the test's store and client."""

    def make(**kwargs: Any) -> App:
        kwargs.setdefault("store", store)
        kwargs.setdefault("client", fake)
        kwargs.setdefault("callback_login", LOGIN)
        kwargs.setdefault("callback_password", PASSWORD)
        kwargs.setdefault("handler_budget", 1.0)
        return App(**kwargs)

    return make


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Platform]]:
    """``serve(app[, api])``: a Platform posting to ``app.asgi()``; closed and shut down after."""
    served: list[Platform] = []

    def start(app: App, api: Any = None) -> Platform:
        platform = connect(app, api)
        served.append(platform)
        return platform

    yield start
    for platform in served:
        await platform.close()
        await platform.app.shutdown(timeout=2.0)


@pytest.fixture
def app(make_app: Callable[..., App]) -> App:
    return make_app()


@pytest.fixture
def platform(app: App, serve: Callable[..., Platform]) -> Platform:
    return serve(app)
