"""Mounting the callback router, the standalone app's /healthz and /metrics, its
lifespan, and serving it with a real uvicorn (``uvicorn module:app``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from rtcontrol import StoreUnavailable
from rtcontrol.adapters import fastapi as rt_web
from rtcontrol.store import MemoryStore
from rtcontrol.web import callback_router

from .conftest import (
    AUTH,
    LOGIN,
    PASSWORD,
    Counter,
    assert_refusal,
    client_for,
    counting_app,
    encode,
    post,
    rt_request,
)


class DownStore(MemoryStore):
    """A store whose server is unreachable."""

    async def ping(self) -> None:
        raise StoreUnavailable("connection refused")


class BrokenSocketStore(MemoryStore):
    async def ping(self) -> None:
        raise ConnectionRefusedError("connection refused")


class HangingStore(MemoryStore):
    async def ping(self) -> None:
        await asyncio.Event().wait()


class ClosingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.pings = 0
        self.closed = 0

    async def ping(self) -> None:
        self.pings += 1

    async def close(self) -> None:
        self.closed += 1


# ----------------------------------------------------------------------- mounting


async def test_router_in_an_existing_app_at_a_custom_path(counter: Counter) -> None:
    existing = FastAPI()

    @existing.get("/status")
    async def status() -> dict[str, str]:
        return {"mine": "yes"}

    existing.include_router(callback_router(counting_app(counter), path="/hooks/callr"))
    async with client_for(existing) as c:
        reply = await c.post("/hooks/callr", content=encode(rt_request()), headers=AUTH)
        assert reply.status_code == 200
        assert reply.json()["command"] == "play"
        assert counter.calls == ["inbound"]
        assert (await c.get("/status")).json() == {"mine": "yes"}
        assert (await c.post("/callback", content=b"{}", headers=AUTH)).status_code == 404
        refused = await c.post("/hooks/callr", content=encode(rt_request()))
        assert_refusal(refused, 401)
        doc = (await c.get("/openapi.json")).json()
    assert "/hooks/callr" in doc["paths"]
    assert "#/$defs/" not in json.dumps(doc)  # the mounted schema resolves in their document
    assert counter.total == 1


async def test_router_with_a_prefix(counter: Counter) -> None:
    existing = FastAPI()
    existing.include_router(callback_router(counting_app(counter)), prefix="/v1/callr")
    async with client_for(existing) as c:
        response = await post(c, rt_request())  # /callback is not served at the root
        assert response.status_code == 404
        response = await c.post("/v1/callr/callback", content=encode(rt_request()), headers=AUTH)
    assert response.status_code == 200
    assert counter.total == 1


async def test_two_apps_mounted_side_by_side() -> None:
    first, second = Counter(), Counter()
    existing = FastAPI()
    existing.include_router(callback_router(counting_app(first), path="/a"))
    other_auth = {"Authorization": "Basic " + base64.b64encode(b"b-login:b-pass").decode()}
    app_b = counting_app(second, callback_login="b-login", callback_password="b-pass")
    existing.include_router(callback_router(app_b, path="/b"))
    async with client_for(existing) as c:
        assert (await c.post("/a", content=encode(rt_request()), headers=AUTH)).status_code == 200
        assert (await c.post("/b", content=encode(rt_request()), headers=AUTH)).status_code == 401
        ok = await c.post("/b", content=encode(rt_request()), headers=other_auth)
        assert ok.status_code == 200
    assert (first.total, second.total) == (1, 1)


async def test_standalone_app_mounted_under_a_path(counter: Counter) -> None:
    outer = FastAPI()
    outer.mount("/rt", counting_app(counter).asgi())
    async with client_for(outer) as c:
        response = await c.post("/rt/callback", content=encode(rt_request()), headers=AUTH)
        health = await c.get("/rt/healthz")
    assert response.status_code == 200
    assert health.status_code == 200
    assert counter.total == 1


# ------------------------------------------------------------------------ /healthz


async def test_healthz_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "store": "ok"}
    assert response.headers["content-type"] == "application/json"


@pytest.mark.parametrize("store_class", [DownStore, BrokenSocketStore])
async def test_healthz_503_when_the_store_is_down(
    counter: Counter, store_class: type[MemoryStore]
) -> None:
    api = counting_app(counter, store=store_class()).asgi()
    async with client_for(api) as c:
        response = await c.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "degraded", "store": "unreachable"}
    assert "refused" not in response.text  # the store's error stays in the logs


async def test_healthz_503_when_the_store_hangs(
    counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rt_web, "HEALTH_TIMEOUT", 0.05)
    api = counting_app(counter, store=HangingStore()).asgi()
    async with client_for(api) as c:
        response = await asyncio.wait_for(c.get("/healthz"), timeout=5)
    assert response.status_code == 503


async def test_healthz_needs_no_credentials(client: httpx.AsyncClient) -> None:
    """Load balancers probe without the CALLR login; /healthz reveals nothing."""
    response = await client.get("/healthz", headers={"Authorization": "Bearer nope"})
    assert response.status_code == 200


# ------------------------------------------------------------------------ /metrics


async def test_metrics_prometheus_text(client: httpx.AsyncClient) -> None:
    assert (await post(client, rt_request())).status_code == 200
    assert (await post(client, rt_request(callid="x"))).status_code == 422
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE rtcontrol_callbacks_total counter" in text
    assert re.search(r'^rtcontrol_callbacks_total\{outcome="reply"\} 1\.0$', text, re.M)
    assert re.search(r'^rtcontrol_callbacks_total\{outcome="fallback"\} 0\.0$', text, re.M)
    assert "rtcontrol_handler_seconds_bucket" in text
    # a refused request is not a callback
    assert (
        sum(float(v) for v in re.findall(r"^rtcontrol_callbacks_total\{[^}]*\} (\S+)$", text, re.M))
        == 1.0
    )


# ----------------------------------------------------------------------- lifespan


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Drive the ASGI lifespan protocol, as a server does around serving."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    started = await from_app.get()
    if started["type"] != "lifespan.startup.complete":
        await task  # raises the start-up error
        raise AssertionError(started)
    yield
    await to_app.put({"type": "lifespan.shutdown"})
    assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
    await task


async def test_lifespan_pings_the_store_and_closes_it(counter: Counter) -> None:
    store = ClosingStore()
    api = counting_app(counter, store=store).asgi()
    async with lifespan(api), client_for(api) as c:
        assert store.pings == 1
        assert (await post(c, rt_request())).status_code == 200
        assert store.closed == 0
    assert store.closed == 1


async def test_lifespan_fails_when_the_store_is_down(counter: Counter) -> None:
    """The server is told in one line (``lifespan.startup.failed``), no traceback."""
    api = counting_app(counter, store=DownStore()).asgi()
    with pytest.raises(AssertionError) as info:
        async with lifespan(api):
            pass
    message = info.value.args[0]
    assert message["type"] == "lifespan.startup.failed"
    assert message["message"].startswith("cannot start: the store is unreachable")
    assert "RTCONTROL_STORE_URL" in message["message"]
    assert "\n" not in message["message"]


# ------------------------------------------------------------- a real uvicorn server


@contextlib.asynccontextmanager
async def serving(app: Any, http: str = "h11", **config_options: Any) -> AsyncIterator[str]:
    """Run uvicorn in this event loop on a free port; yields its base URL."""
    options: dict[str, Any] = {"ws": "none", "log_config": None, "lifespan": "on"}
    options.update(config_options)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, http=http, **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        if task.done():
            task.result()
        assert server.started
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=10)


async def raw_exchange(base: str, data: bytes, *, read_first: bool = False) -> tuple[int, bytes]:
    """Send raw bytes; returns the status and the body of the answer."""
    host, port = base.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        writer.write(data)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
        status = int(head.split(b" ", 2)[1])
        length = re.search(rb"(?i)content-length: *(\d+)", head)
        body = await reader.readexactly(int(length.group(1))) if length else b""
        return status, body
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_real_server_end_to_end(counter: Counter, http: str) -> None:
    api = counting_app(counter).asgi()
    async with serving(api, http) as base, httpx.AsyncClient(base_url=base) as c:
        ok = await c.post("/callback", content=encode(rt_request()), headers=AUTH)
        lower = await c.post(
            "/callback",
            content=encode(rt_request(callid=2)),
            headers={"Authorization": AUTH["Authorization"].replace("Basic", "basic")},
        )
        big_header = await c.post(
            "/callback",
            content=encode(rt_request(callid=3)),
            headers={"Authorization": "Basic " + "A" * 8192},
        )
        too_big = await c.post("/callback", content=b"x" * 70_000, headers=AUTH)
        nan = await c.post(
            "/callback", content=b'{"callid": NaN, "call_status": "UP"}', headers=AUTH
        )
        health = await c.get("/healthz")
    assert ok.status_code == 200
    assert ok.headers["content-type"] == "application/json"
    assert lower.status_code == 200
    assert_refusal(big_header, 401)
    assert_refusal(too_big, 413)
    assert_refusal(nan, 422)
    assert health.status_code == 200
    assert counter.total == 2


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_real_server_stops_a_chunked_body_at_the_limit(counter: Counter, http: str) -> None:
    api = counting_app(counter).asgi()
    auth = AUTH["Authorization"].encode()
    head = (
        b"POST /callback HTTP/1.1\r\nHost: rt\r\nAuthorization: " + auth + b"\r\n"
        b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    chunk = b"400\r\n" + b"x" * 1024 + b"\r\n"
    async with serving(api, http) as base:
        # 80 KiB of chunks, never terminated: the 413 must come without the end
        status, body = await raw_exchange(base, head + chunk * 80)
    assert status == 413
    assert json.loads(body) == {"error": "body larger than 65536 bytes"}
    assert counter.total == 0


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_real_server_huge_declared_length(counter: Counter, http: str) -> None:
    api = counting_app(counter).asgi()
    auth = AUTH["Authorization"].encode()
    head = (
        b"POST /callback HTTP/1.1\r\nHost: rt\r\nAuthorization: " + auth + b"\r\n"
        b"Content-Type: application/json\r\nContent-Length: 1073741824\r\n\r\n{"
    )
    async with serving(api, http) as base:
        status, _ = await raw_exchange(base, head)
    assert status == 413
    assert counter.total == 0


async def test_uvicorn_module_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, counter: Counter
) -> None:
    """The README's deployment: credentials from the environment, ``uvicorn ivr:app``."""
    (tmp_path / "rtc_web_ivr.py").write_text(
        textwrap.dedent(
            """
            from rtcontrol import App, hangup
            from rtcontrol.store import MemoryStore

            rt = App(store=MemoryStore())

            @rt.on_inbound
            async def welcome(call):
                return hangup()

            app = rt.asgi()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("RTCONTROL_CALLBACK_LOGIN", LOGIN)
    monkeypatch.setenv("RTCONTROL_CALLBACK_PASSWORD", PASSWORD)
    monkeypatch.delitem(sys.modules, "rtc_web_ivr", raising=False)
    async with serving("rtc_web_ivr:app") as base, httpx.AsyncClient(base_url=base) as c:
        response = await c.post("/callback", content=encode(rt_request()), headers=AUTH)
        refused = await c.post("/callback", content=encode(rt_request()))
    assert response.status_code == 200
    assert response.json()["command"] == "hangup"
    assert_refusal(refused, 401)
    sys.modules.pop("rtc_web_ivr", None)
