"""Fixtures of the JSON-RPC client tests: a scripted endpoint and a client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from rpc_fake import FakeAPI

from rtcontrol.rpc import CallrClient


@pytest.fixture(autouse=True)
def _no_callr_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's real CALLR_* variables must never reach these tests."""
    for name in ("CALLR_API_URL", "CALLR_API_KEY", "CALLR_LOGIN", "CALLR_PASSWORD"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def api() -> FakeAPI:
    return FakeAPI()


@pytest.fixture
async def client(api: FakeAPI) -> AsyncIterator[CallrClient]:
    """API-key client, no backoff, two retries (the defaults otherwise)."""
    async with api.client() as c:
        yield c
