"""The blocking facade forwards to the async client: same wire, same errors."""

from __future__ import annotations

import httpx
import pytest
from rpc_fake import API_KEY, API_URL, FakeAPI, result

from rtcontrol.errors import OutcomeUnknown
from rtcontrol.rpc import SyncCallrClient


def test_sync_client_calls_and_reuses_one_loop(api: FakeAPI) -> None:
    transport = httpx.MockTransport(api.handler)
    api.then(result(1_700_000_000), result("4260XMAQ"), httpx.ReadTimeout("slow"))
    with SyncCallrClient(api_url=API_URL, api_key=API_KEY, transport=transport) as client:
        assert client.get_timestamp() == 1_700_000_000
        assert client.realtime("4346423A", "+33612345678") == "4260XMAQ"
        with pytest.raises(OutcomeUnknown):
            client.realtime_break(421889)
    assert [b["method"] for b in api.bodies] == [
        "system.get_timestamp",
        "calls.realtime",
        "calls.realtime_break",
    ]
    assert api.bodies[1]["params"][1] == {"number": "+33612345678", "timeout": 30}
    client.close()  # a second close is harmless
    with pytest.raises(RuntimeError, match="closed"):
        client.get_timestamp()


def test_sync_client_from_env(api: FakeAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLR_API_KEY", API_KEY)
    transport = httpx.MockTransport(api.handler)
    with SyncCallrClient.from_env(transport=transport) as client:
        assert [app.hash for app in client.list_apps()] == ["4346423A"]
    assert api.requests[0].headers["Authorization"] == f"Api-Key {API_KEY}"


async def test_sync_client_refuses_to_block_an_event_loop(api: FakeAPI) -> None:
    client = SyncCallrClient(api.client())
    with pytest.raises(RuntimeError, match="use CallrClient"):
        client.get_timestamp()
    assert api.requests == []
    await client.client.aclose()
