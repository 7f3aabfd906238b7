"""Over real HTTP on loopback: uvicorn serves the app and the emulator's JSON-RPC."""

from __future__ import annotations

import asyncio
import base64
import json

import httpx
import pytest
from emu_helpers import ScriptedApp, cmd, tts

from rtcontrol.emulator import (
    DEFAULT_API_KEY,
    RPC_PATH,
    Callee,
    Emulator,
    LocalServer,
    Press,
    ScaledClock,
    serve,
)


async def test_outbound_call_over_real_http() -> None:
    app = ScriptedApp(
        cmd("read", 1, media_id=tts("Your code?"), max_digits=4, attempts=1, timeout_ms=2000),
        cmd("hangup", 2, variables={"code": "done"}),
    )
    book = {"+33612345678": Callee(answer_delay=0.5, actions=[Press("1234")])}
    async with (
        LocalServer(app.asgi) as app_server,
        Emulator(clock=ScaledClock(100), phonebook=book) as emu,
        LocalServer(emu.rpc_app) as api_server,
        httpx.AsyncClient(base_url=api_server.url, trust_env=False) as client,
    ):
        assert app_server.port != 0
        assert api_server.url.startswith("http://127.0.0.1:")
        app_hash = emu.create_app(app_server.url + "/callr", login="u", password="p").hash
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "calls.realtime",
            "params": [app_hash, {"number": "+33612345678", "timeout": 30}, {}],
        }
        response = await client.post(
            RPC_PATH,
            content=json.dumps(body),
            headers={"Authorization": f"Api-Key {DEFAULT_API_KEY}"},
        )
        request = response.json()["result"]
        t = await emu.wait_request(request)

    assert t.errors == []
    assert t.requests[1]["command_result"] == "1234"
    assert t.requests[-1]["call_status"] == "HANGUP"
    assert len(app.requests) == 3
    auth = "Basic " + base64.b64encode(b"u:p").decode()
    assert all(h["authorization"] == auth for h in app.headers)
    assert all(latency < 1.0 for latency in t.latencies)


async def test_server_stops_cleanly_and_frees_the_port() -> None:
    app = ScriptedApp()
    server = LocalServer(app.asgi)
    await server.start()
    url = server.url
    await server.stop()
    async with httpx.AsyncClient(trust_env=False) as client:
        try:
            await client.post(url + "/callr", content=b"{}")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("server still answering")


async def test_serve_runs_until_cancelled() -> None:
    emu = Emulator()
    ready: asyncio.Queue[LocalServer] = asyncio.Queue()
    task = asyncio.create_task(serve(emu, port=0, log_level="warning", on_ready=ready.put_nowait))
    server = await asyncio.wait_for(ready.get(), 10)
    body = '{"jsonrpc": "2.0", "id": 3, "method": "system.get_timestamp", "params": []}'
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.post(
            server.url + RPC_PATH,
            content=body,
            headers={"Authorization": f"Api-Key {DEFAULT_API_KEY}"},
        )
    assert response.json()["result"] == emu.get_timestamp()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
