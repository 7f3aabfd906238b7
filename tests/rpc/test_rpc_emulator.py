"""The client against the local emulator's JSON-RPC server: both sides agree on the wire."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from rtcontrol.emulator import DEFAULT_API_KEY, DEFAULT_LOGIN, DEFAULT_PASSWORD, RPC_PATH, Emulator
from rtcontrol.errors import AuthenticationError, JSONRPCError
from rtcontrol.rpc import CallrClient


@pytest.fixture
async def emu() -> AsyncIterator[Emulator]:
    async with Emulator() as emulator:
        yield emulator


def _client(emu: Emulator, **auth: str) -> CallrClient:
    return CallrClient(
        api_url="http://emulator.test" + RPC_PATH,
        transport=httpx.ASGITransport(emu.rpc_app),
        **(auth or {"api_key": DEFAULT_API_KEY}),
    )


async def test_app_lifecycle_against_the_emulator(emu: Emulator) -> None:
    async with _client(emu) as client:
        assert isinstance(await client.get_timestamp(), int)
        created = await client.create_app("IVR", "https://ivr.example.com/cb", login="u")
        assert created.type == "REALTIME10"
        assert created.url == "https://ivr.example.com/cb"
        edited = await client.edit_app(created.hash, url="https://new.example.com/cb")
        assert (edited.hash, edited.url, edited.login) == (
            created.hash,
            "https://new.example.com/cb",
            "u",
        )
        listed = await client.list_apps()
        assert [app.hash for app in listed] == [created.hash]


async def test_basic_auth_against_the_emulator(emu: Emulator) -> None:
    async with _client(emu, login=DEFAULT_LOGIN, password=DEFAULT_PASSWORD) as client:
        assert await client.get_timestamp() > 0


async def test_wrong_key_is_refused_by_the_emulator(emu: Emulator) -> None:
    async with _client(emu, api_key="wrong") as client:
        with pytest.raises(AuthenticationError) as info:
            await client.get_timestamp()
    assert info.value.status_code == 401


async def test_unknown_app_is_a_json_rpc_error(emu: Emulator) -> None:
    async with _client(emu) as client:
        with pytest.raises(JSONRPCError) as info:
            await client.realtime("NOSUCHAP", "+33612345678")
    assert info.value.rpc_message == "PROPERTY_VALUE_ERROR [app]"
