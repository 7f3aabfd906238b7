"""K5: the callback route never redirects, and the fast path never changes what the app does.

The path is served with and without its trailing slash, credentials are checked
before anything else, other methods get a 405 (never a 307), and what a user
configures on the FastAPI app either applies to the callback route or is refused
at start-up with a ConfigurationError naming what to change.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from rtcontrol import ConfigurationError
from rtcontrol.adapters.endpoint import UNAVAILABLE, callback_paths
from rtcontrol.web import callback_router

from .conftest import (
    AUTH,
    CALLBACK,
    Counter,
    assert_refusal,
    basic,
    client_for,
    counting_app,
    encode,
    rt_request,
)
from .test_mount import serving

JSON = {"Content-Type": "application/json"}
OTHER_METHODS = ["GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]
SLASHES = [CALLBACK, CALLBACK + "/"]


async def call(
    api: Any,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    root_path: str = "",
    query: bytes = b"",
) -> tuple[int, dict[str, str], bytes]:
    """One request as uvicorn would pass it (``path`` includes ``root_path``)."""
    raw_headers = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    raw_headers.append((b"content-length", str(len(body)).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("rt.test", 80),
        "client": ("127.0.0.1", 40000),
        "scheme": "http",
        "method": method,
        "root_path": root_path,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "headers": raw_headers,
        "state": {},
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.Event().wait()  # a client that stays connected
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(api(scope, receive, send), timeout=10)
    start = sent[0]
    assert start["type"] == "http.response.start"
    response_headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    content = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], response_headers, content


async def lifespan_startup(api: Any) -> tuple[dict[str, Any], Callable[[], Awaitable[None]]]:
    """Send lifespan.startup; returns the app's answer and a function that shuts down."""
    to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(api(scope, to_app.get, from_app.put))
    await to_app.put({"type": "lifespan.startup"})
    answer = await asyncio.wait_for(from_app.get(), timeout=10)

    async def shutdown() -> None:
        if answer["type"] == "lifespan.startup.complete":
            await to_app.put({"type": "lifespan.shutdown"})
            assert (await from_app.get())["type"] == "lifespan.shutdown.complete"
        await asyncio.wait_for(task, timeout=10)

    return answer, shutdown


async def refused_at_startup(api: Any) -> str:
    answer, shutdown = await lifespan_startup(api)
    await shutdown()
    assert answer["type"] == "lifespan.startup.failed", answer
    message: str = answer["message"]
    return message


def no_redirect(response: httpx.Response) -> None:
    assert response.status_code not in (301, 302, 303, 307, 308), response.status_code
    assert "location" not in response.headers


# ------------------------------------------------------------------ trailing slash


@pytest.mark.parametrize("path", SLASHES)
async def test_served_with_and_without_the_trailing_slash(
    client: httpx.AsyncClient, counter: Counter, path: str
) -> None:
    response = await client.post(path, content=encode(rt_request()), headers={**AUTH, **JSON})
    no_redirect(response)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json()["command"] == "play"
    assert counter.calls == ["inbound"]


@pytest.mark.parametrize("path", SLASHES)
@pytest.mark.parametrize(
    "authorization",
    [None, basic("callr-app", "wrong"), "Bearer x"],
    ids=["none", "wrong", "bearer"],
)
async def test_credentials_are_checked_first_never_a_redirect(
    client: httpx.AsyncClient, counter: Counter, path: str, authorization: str | None
) -> None:
    headers = dict(JSON)
    if authorization is not None:
        headers["Authorization"] = authorization
    # a body that is invalid in every other way too: the 401 must come first
    response = await client.post(path, content=b"x" * 70_000, headers={**headers, "X-A": "1"})
    no_redirect(response)
    assert_refusal(response, 401)
    assert response.headers["www-authenticate"].startswith("Basic ")
    assert counter.total == 0


@pytest.mark.parametrize("path", SLASHES)
@pytest.mark.parametrize("method", OTHER_METHODS)
@pytest.mark.parametrize("auth", [True, False], ids=["auth", "no-auth"])
async def test_other_methods_get_405_never_a_redirect(
    client: httpx.AsyncClient, counter: Counter, path: str, method: str, auth: bool
) -> None:
    response = await client.request(method, path, headers=AUTH if auth else {})
    no_redirect(response)
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"
    assert response.headers["content-type"] == "application/json"
    if method == "HEAD":
        assert response.content == b""
    else:
        assert response.json() == {"error": "method not allowed: the callback route takes POST"}
    assert counter.total == 0


@pytest.mark.parametrize("path", SLASHES)
@pytest.mark.parametrize("query", ["x=1", "a=b&c", "callid=9&call_status=HANGUP", ""])
async def test_query_strings_are_ignored(
    client: httpx.AsyncClient, counter: Counter, path: str, query: str
) -> None:
    url = f"{path}?{query}"
    response = await client.post(url, content=encode(rt_request()), headers={**AUTH, **JSON})
    no_redirect(response)
    assert response.status_code == 200
    assert counter.calls == ["inbound"]
    refused = await client.post(url, content=encode(rt_request()), headers=JSON)
    assert_refusal(refused, 401)


@pytest.mark.parametrize("method", ["POST", "GET"])
@pytest.mark.parametrize(
    "path", ["//callback", "//callback/", "/callback//", "/callback///", "/Callback", "/callbac"]
)
async def test_other_spellings_are_not_found_never_redirected(
    api: FastAPI, counter: Counter, path: str, method: str
) -> None:
    """Repeated slashes and other case are typos in the configured URL: 404, like any
    unknown path (a redirect would lose the POST)."""
    status, headers, _ = await call(api, method, path, encode(rt_request()), {**AUTH, **JSON})
    assert status == 404
    assert "location" not in headers
    assert counter.total == 0


@pytest.mark.parametrize(
    ("configured", "served"),
    [
        ("/hooks/", ["/hooks/", "/hooks"]),
        ("/hooks", ["/hooks", "/hooks/"]),
        ("/a/b/callr", ["/a/b/callr", "/a/b/callr/"]),
        ("/", ["/"]),
    ],
)
async def test_configured_path_and_its_twin(
    counter: Counter, configured: str, served: list[str]
) -> None:
    api = counting_app(counter).asgi(path=configured)
    async with client_for(api) as c:
        for n, path in enumerate(served):
            body = encode(rt_request(callid=100 + n))
            response = await c.post(path, content=body, headers={**AUTH, **JSON})
            no_redirect(response)
            assert response.status_code == 200, path
        doc = (await c.get("/openapi.json")).json()
    assert counter.total == len(served)
    documented = [p for p in doc["paths"] if p not in ("/healthz", "/metrics")]
    assert documented == [configured]  # the twin is served, not documented


@pytest.mark.parametrize("path", ["callback", "", "//callback", "/cb/{name}", "/cb?x=1", "/a b"])
def test_a_path_that_cannot_be_served_exactly_is_refused(counter: Counter, path: str) -> None:
    with pytest.raises(ConfigurationError, match="callback path"):
        counting_app(counter).asgi(path=path)


def test_callback_paths() -> None:
    assert callback_paths("/callback") == ("/callback", "/callback/")
    assert callback_paths("/callback/") == ("/callback/", "/callback")
    assert callback_paths("/") == ("/",)


# ------------------------------------------------------------------------ root_path


@pytest.mark.parametrize("path", ["/api/callback", "/api/callback/"])
async def test_root_path_from_the_server(api: FastAPI, counter: Counter, path: str) -> None:
    """``uvicorn --root-path /api``: the path arrives with the prefix."""
    body = encode(rt_request())
    status, _, content = await call(api, "POST", path, body, {**AUTH, **JSON}, root_path="/api")
    assert status == 200
    assert json.loads(content)["command"] == "play"
    status, headers, _ = await call(api, "POST", path, body, JSON, root_path="/api")
    assert (status, headers["www-authenticate"][:5]) == (401, "Basic")
    status, headers, _ = await call(api, "GET", path, root_path="/api")
    assert (status, headers["allow"]) == (405, "POST")
    assert counter.total == 1


async def test_root_path_set_on_the_app(api: FastAPI, counter: Counter) -> None:
    """``api.root_path``: the callback follows FastAPI's own routing, like /healthz."""
    api.root_path = "/api"
    for n, path in enumerate(["/api/callback", "/api/callback/", "/callback", "/callback/"]):
        body = encode(rt_request(callid=100 + n))
        status, _, _ = await call(api, "POST", path, body, {**AUTH, **JSON})
        health, _, _ = await call(api, "GET", path.replace("callback", "healthz").rstrip("/"))
        assert (status, health) == (200, 200), path
    assert counter.total == 4


async def test_root_path_with_a_real_server(counter: Counter) -> None:
    """``uvicorn --root-path /api`` behind a proxy that strips ``/api``."""
    api = counting_app(counter).asgi()
    async with serving(api, root_path="/api") as base, httpx.AsyncClient(base_url=base) as c:
        ok = await c.post("/callback/", content=encode(rt_request()), headers=AUTH)
        refused = await c.post("/callback", content=encode(rt_request()))
        get = await c.get("/callback/")
    assert ok.status_code == 200
    assert_refusal(refused, 401)
    assert get.status_code == 405
    assert counter.total == 1


@pytest.mark.parametrize("http", ["h11", "httptools"])
async def test_real_server_trailing_slash_and_methods(counter: Counter, http: str) -> None:
    api = counting_app(counter).asgi()
    async with serving(api, http) as base, httpx.AsyncClient(base_url=base) as c:
        ok = await c.post("/callback/", content=encode(rt_request()), headers=AUTH)
        refused = await c.post("/callback/", content=encode(rt_request()))
        head = await c.head("/callback/")
        get = await c.get("/callback")
    for response in (ok, refused, head, get):
        no_redirect(response)
    assert ok.status_code == 200
    assert_refusal(refused, 401)
    assert (head.status_code, head.content) == (405, b"")
    assert get.status_code == 405
    assert counter.total == 1


async def test_mounted_standalone_app(counter: Counter) -> None:
    outer = FastAPI()
    outer.mount("/rt", counting_app(counter).asgi())
    async with client_for(outer) as c:
        ok = await c.post("/rt/callback/", content=encode(rt_request()), headers=AUTH)
        refused = await c.post("/rt/callback/", content=encode(rt_request()))
        get = await c.get("/rt/callback/")
    assert ok.status_code == 200
    assert_refusal(refused, 401)
    assert get.status_code == 405
    assert counter.total == 1


async def test_router_in_your_app_serves_both_spellings(counter: Counter) -> None:
    """``callback_router``: your app routes it; the twin path is a route too, so your
    app's ``redirect_slashes`` never redirects the callback."""
    existing = FastAPI()
    existing.include_router(callback_router(counting_app(counter), path="/hooks/callr"))
    async with client_for(existing) as c:
        for n, path in enumerate(["/hooks/callr", "/hooks/callr/"]):
            ok = await c.post(path, content=encode(rt_request(callid=100 + n)), headers=AUTH)
            refused = await c.post(path, content=encode(rt_request()))
            get = await c.get(path)
            for response in (ok, refused, get):
                no_redirect(response)
            assert ok.status_code == 200
            assert_refusal(refused, 401)
            assert get.status_code == 405  # your app's own 405
        doc = (await c.get("/openapi.json")).json()
    assert list(doc["paths"]) == ["/hooks/callr"]
    assert counter.total == 2


# ------------------------------------------------------------------- middleware applies


async def test_http_middleware_sees_the_callback(api: FastAPI, counter: Counter) -> None:
    seen: list[tuple[str, str]] = []

    @api.middleware("http")
    async def tag(request: Request, call_next: Any) -> Response:
        seen.append((request.method, request.url.path))
        response: Response = await call_next(request)
        response.headers["X-Tagged"] = "yes"
        return response

    async with client_for(api) as c:
        ok = await c.post(CALLBACK, content=encode(rt_request()), headers={**AUTH, **JSON})
        slash = await c.post(
            "/callback/", content=encode(rt_request(callid=2)), headers={**AUTH, **JSON}
        )
        refused = await c.post(CALLBACK, content=encode(rt_request()), headers=JSON)
        get = await c.get(CALLBACK)
        health = await c.get("/healthz")
    assert [r.status_code for r in (ok, slash, refused, get, health)] == [200, 200, 401, 405, 200]
    assert all(r.headers["x-tagged"] == "yes" for r in (ok, slash, refused, get, health))
    assert ok.json()["command"] == "play"
    assert seen == [
        ("POST", "/callback"),
        ("POST", "/callback/"),
        ("POST", "/callback"),
        ("GET", "/callback"),
        ("GET", "/healthz"),
    ]
    assert counter.total == 2


async def test_asgi_middleware_can_refuse_the_callback(api: FastAPI, counter: Counter) -> None:
    """A gateway check written as pure ASGI middleware runs before the callback."""

    class RequireGateway:
        def __init__(self, app: Any) -> None:
            self.app = app

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if scope["type"] == "http" and (b"x-gateway", b"ok") not in scope["headers"]:
                await PlainTextResponse("no", status_code=403)(scope, receive, send)
                return
            await self.app(scope, receive, send)

    api.add_middleware(RequireGateway)
    async with client_for(api) as c:
        blocked = await c.post(CALLBACK, content=encode(rt_request()), headers={**AUTH, **JSON})
        passed = await c.post(
            CALLBACK, content=encode(rt_request()), headers={**AUTH, **JSON, "X-Gateway": "ok"}
        )
    assert blocked.status_code == 403
    assert passed.status_code == 200
    assert counter.total == 1


async def test_middleware_cannot_be_added_once_serving(api: FastAPI) -> None:
    """Middleware added after start-up would silently miss the callback: refused, as
    Starlette refuses it for any started app (the direct path builds the stack too)."""
    async with client_for(api) as c:
        assert (await c.post(CALLBACK, content=encode(rt_request()), headers=AUTH)).is_success

    async def noop(request: Request, call_next: Any) -> Response:
        response: Response = await call_next(request)
        return response

    with pytest.raises(RuntimeError, match="Cannot add middleware after an application"):
        api.middleware("http")(noop)


async def test_fastapi_body_limit_applies(api: FastAPI, counter: Counter) -> None:
    api.max_body_size = 2048  # type: ignore[attr-defined]
    big = encode(rt_request(variables={"pad": "x" * 3000}))
    async with client_for(api) as c:
        small = await c.post(CALLBACK, content=encode(rt_request()), headers={**AUTH, **JSON})
        large = await c.post(CALLBACK, content=big, headers={**AUTH, **JSON})
    assert small.status_code == 200
    assert large.status_code == 413
    assert counter.total == 1


async def test_native_telemetry_keeps_fastapi_around_the_callback(
    api: Any, counter: Counter, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With FastAPI's OpenTelemetry on, the callback is not served before it."""
    telemetry = getattr(api, "_native_telemetry", None)
    if telemetry is None:
        pytest.skip("this FastAPI has no native telemetry")
    monkeypatch.setattr(telemetry, "enabled", lambda: True)
    async with client_for(api) as c:
        ok = await c.post("/callback/", content=encode(rt_request()), headers={**AUTH, **JSON})
    assert ok.status_code == 200
    assert api._direct is False
    assert counter.total == 1


async def test_nothing_configured_keeps_the_direct_path(api: Any) -> None:
    async with client_for(api) as c:
        assert (await c.post(CALLBACK, content=encode(rt_request()), headers=AUTH)).is_success
    assert api._direct is True


# ------------------------------------------------------------ exception handlers


@pytest.mark.parametrize("with_middleware", [False, True])
async def test_exception_handlers_are_never_reached(
    counter: Counter, caplog: pytest.LogCaptureFixture, with_middleware: bool
) -> None:
    """The callback route does not raise: a failing handler gets the fallback reply."""
    app = counting_app(counter)

    @app.on_inbound("app-with-a-bug")
    async def broken(call: Any) -> Any:
        raise RuntimeError("boom")

    api = app.asgi()
    caught: list[str] = []

    @api.exception_handler(Exception)
    async def on_error(request: Request, exc: Exception) -> JSONResponse:
        caught.append("Exception")
        return JSONResponse({"mine": True}, status_code=500)

    @api.exception_handler(RuntimeError)
    async def on_runtime(request: Request, exc: Exception) -> JSONResponse:
        caught.append("RuntimeError")
        return JSONResponse({"mine": True}, status_code=500)

    if with_middleware:

        @api.middleware("http")
        async def passthrough(request: Request, call_next: Any) -> Response:
            response: Response = await call_next(request)
            return response

    caplog.set_level(logging.ERROR)
    async with client_for(api) as c:
        response = await c.post(
            CALLBACK, content=encode(rt_request(app="app-with-a-bug")), headers={**AUTH, **JSON}
        )
    assert response.status_code == 200
    assert response.json()["command"] == "play"  # the default apology
    assert caught == []


# --------------------------------------------------------------- refused at start-up


def _dependency() -> None:
    return None


async def test_router_dependencies_are_refused_at_startup(api: FastAPI, counter: Counter) -> None:
    api.router.dependencies.append(Depends(_dependency))
    message = await refused_at_startup(api)
    assert "api.router.dependencies" in message
    assert "/callback" in message
    assert counter.total == 0


async def test_router_dependencies_refused_on_first_request_without_lifespan(
    api: FastAPI, counter: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    api.router.dependencies.append(Depends(_dependency))
    caplog.set_level(logging.ERROR)
    async with client_for(api) as c:
        first = await c.post(CALLBACK, content=encode(rt_request()), headers=AUTH)
        second = await c.get("/healthz")
    for response in (first, second):
        assert response.status_code == 503
        assert response.json() == {"error": UNAVAILABLE}
    logged = [r.getMessage() for r in caplog.records if "api.router.dependencies" in r.getMessage()]
    assert len(logged) == 1
    assert counter.total == 0


@pytest.mark.parametrize(
    ("route_path", "methods"),
    [
        ("/callback/", ["POST"]),
        ("/callback", ["POST"]),
        ("/{name}/", ["POST"]),
        ("/{name}", ["GET", "POST"]),
    ],
)
async def test_your_route_answering_post_on_the_callback_path_is_refused(
    api: FastAPI, route_path: str, methods: list[str]
) -> None:
    @api.api_route(route_path, methods=methods)
    async def mine() -> dict[str, str]:
        return {"mine": "yes"}

    message = await refused_at_startup(api)
    assert f"your route {route_path}" in message
    assert "app.asgi(path=...)" in message


async def test_your_get_route_on_the_callback_path_is_served(
    api: FastAPI, counter: Counter
) -> None:
    """Only POST belongs to the callback: your GET there is served, not a 405."""

    @api.get("/callback/")
    async def status() -> dict[str, str]:
        return {"mine": "yes"}

    answer, shutdown = await lifespan_startup(api)
    try:
        assert answer["type"] == "lifespan.startup.complete"
        async with client_for(api) as c:
            mine = await c.get("/callback/")
            other = await c.get("/callback")
            ok = await c.post("/callback/", content=encode(rt_request()), headers=AUTH)
    finally:
        await shutdown()
    assert (mine.status_code, mine.json()) == (200, {"mine": "yes"})
    assert other.status_code == 405  # not yours: the callback's 405, not a redirect
    assert ok.status_code == 200
    assert counter.total == 1
