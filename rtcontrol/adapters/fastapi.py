"""The FastAPI adapter: the callback route, ``/healthz``, ``/metrics``, OpenAPI, lifespan.

Nothing here knows about flows or stores. The callback itself is served by
:class:`~rtcontrol.adapters.endpoint.CallbackEndpoint` (bare ASGI, for speed); this
module mounts it, documents it, and adds the operational routes. Every refusal is a
short JSON error that never echoes the input; nothing answers 500.

Input policy of the callback route, in the order it is checked:

1. ``Authorization``: HTTP Basic, scheme name case-insensitive; else **401** with a
   ``WWW-Authenticate: Basic`` challenge.
2. ``Content-Type``: ``application/json``, ``text/json`` or ``*/*+json``, with no
   charset or a UTF-8 one; a missing (or empty) header is read as JSON. Else **415**.
3. Body size: above ``max_body`` (64 KiB by default), declared or streamed, **413**;
   reading stops at the limit. A malformed ``Content-Length`` is a **400**.
4. JSON: invalid UTF-8, a BOM, lone surrogates, nesting of about 200 levels and
   more, or any syntax error is a **400**. Duplicate keys: the last one wins.
5. Schema: not an object, a field of the wrong type, ``NaN``/``Infinity``, or
   ``variables`` nested deeper than ``MAX_VARIABLES_DEPTH`` is a **422** naming the
   field. Unknown fields are ignored.

The callback path (K5). ``POST /callback`` and ``POST /callback/`` are both served,
never redirected, credentials checked first; any other method on them answers
**405** (``Allow: POST``) unless one of your routes serves it. ``//callback`` is
not served (404, like any unknown path). The standalone app serves the callback
before FastAPI's per-request work only while nothing is configured around it; what
you configure on the app returned by :func:`create_asgi` is never skipped:

* middleware (``api.add_middleware``, ``@api.middleware("http")``), FastAPI's
  ``max_body_size`` and its native OpenTelemetry support: **apply** to the callback
  route, which then runs just inside your middleware (decided at start-up; adding
  middleware later fails, as on any started Starlette app);
* ``root_path`` (``api.root_path``, ``uvicorn --root-path``, mounting): honoured;
* exception handlers: never reached, because the callback route never raises (a
  handler that raises gets the fallback reply and a log line);
* dependencies on the app's router (``api.router.dependencies``), and a route of
  yours answering POST on the callback path or its trailing-slash twin: **refused**
  at start-up (``ConfigurationError``), since they could not apply.

Several processes serving one app with a memory store are refused at start-up, or
with a 503 on their first request when the lifespan is off (K9, see
:mod:`rtcontrol.adapters.process`).
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigurationError, StoreError
from ..logs import app_log
from ..protocol import CALLID_MAX, RTRequest, RTResponse
from . import process
from .endpoint import (
    CHALLENGE,
    UNAVAILABLE,
    CallbackEndpoint,
    CallbackSwitch,
    auth_for,
    callback_paths,
    route_path,
    send_error,
)
from .ports import AdapterSettings, ServedApp

__all__ = ["RtcontrolAPI", "callback_router", "create_asgi", "require_callback_auth"]

#: Seconds /healthz waits for the store before answering 503.
HEALTH_TIMEOUT = 2.0
#: Name of the security scheme in the standalone app's OpenAPI document.
SECURITY_SCHEME = "callbackBasic"


class _HasSettings(Protocol):
    @property
    def settings(self) -> AdapterSettings: ...


def require_callback_auth(app: _HasSettings) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that protects your own routes with the callback's credentials.

    ``@api.post("/agents/free", dependencies=[Depends(require_callback_auth(app))])``
    """
    auth = auth_for(app)

    async def check(request: Request) -> None:
        if auth is not None and not auth(request.headers.get("authorization")):
            raise HTTPException(401, "authentication required", {"WWW-Authenticate": CHALLENGE})

    return check


class RtcontrolAPI(FastAPI):
    """The FastAPI app of :func:`create_asgi`.

    While nothing is configured around the callback route (no middleware, no body
    limit, no telemetry: decided at start-up), ``POST <callback path>`` goes straight
    to the bare-ASGI endpoint, before FastAPI's per-request work. Otherwise it runs
    just inside your middleware (:class:`CallbackSwitch`). Every other route is plain
    FastAPI. See the module docstring for what applies and what is refused.
    """

    callback_path: str = ""
    callback_endpoint: CallbackEndpoint | None = None
    #: The app whose ``startup()`` the lifespan runs (before your lifespan, if any).
    served: ServedApp | None = None
    _endpoint: CallbackEndpoint  # the same, set whenever _direct can be True
    _callback_paths: frozenset[str] = frozenset()
    _own_routes: frozenset[int] = frozenset()
    _direct = False  # serve the callback before FastAPI's per-request work
    _ready = -1  # process.EPOCH once checked in this process and allowed to serve
    _logged = -1

    def serve_callback(
        self, endpoint: CallbackEndpoint, paths: Sequence[str], routes: Sequence[BaseRoute]
    ) -> None:
        """Serve ``endpoint`` at ``paths`` (``routes`` are its FastAPI routes, for OpenAPI)."""
        self.callback_endpoint = self._endpoint = endpoint
        self.callback_path = paths[0]
        self._callback_paths = frozenset(paths)
        self._own_routes = frozenset(id(route) for route in routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._ready == process.EPOCH:
            if self._direct and scope["type"] == "http" and scope["method"] == "POST":
                root = self.root_path or scope.get("root_path", "")
                path = route_path(scope["path"], root) if root else scope["path"]
                if path in self._callback_paths:
                    if self.root_path:  # as FastAPI.__call__ does
                        scope["root_path"] = self.root_path
                    await self._endpoint(scope, receive, send)
                    return
            if scope["type"] != "lifespan":
                await super().__call__(scope, receive, send)
                return
        await self._first_call(scope, receive, send)

    async def _first_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The lifespan, or the first request of this process (the lifespan may be off)."""
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        refusal = self._prepare(fresh=False)
        if refusal is None:
            await self(scope, receive, send)
            return
        if self._logged != process.EPOCH:
            self._logged = process.EPOCH
            app_log.error("refusing requests: %s", refusal)
        if scope["type"] == "http":
            await send_error(send, 503, UNAVAILABLE)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1013})  # try again later

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse to start, with one clear message, when the checks fail or the served
        app cannot start (its store is unreachable, its own lifespan failed)."""
        message = await receive()
        if message["type"] == "lifespan.startup":
            refusal = self._prepare(fresh=True)
            if refusal is None and self.served is not None:
                refusal = await _start(self.served)
            if refusal is not None:
                await send({"type": "lifespan.startup.failed", "message": refusal})
                return
        pending = [message]

        async def replay() -> Message:
            return pending.pop() if pending else await receive()

        await super().__call__(scope, replay, send)

    def _prepare(self, *, fresh: bool) -> str | None:
        """Check the configuration and this process; choose the callback's path. None
        when this process may serve, else why not."""
        endpoint = self.callback_endpoint
        if endpoint is None:  # a plain FastAPI app
            self._ready = process.EPOCH
            return None
        try:
            self._check_configuration()
        except ConfigurationError as exc:
            return str(exc)
        if self.middleware_stack is None:  # from now on add_middleware fails (Starlette)
            self.middleware_stack = self.build_middleware_stack()
        self._direct = not self.user_middleware and not _wraps_requests(self)
        refusal = endpoint.gate.check(fresh=fresh)
        self._ready = process.EPOCH if refusal is None else -1
        return refusal

    def _check_configuration(self) -> None:
        """What could not apply to the callback route is refused, naming what to change."""
        if self.router.dependencies:
            raise ConfigurationError(
                "dependencies on the app's router (api.router.dependencies) cannot apply to "
                f"the callback route {self.callback_path}, which is served without FastAPI's "
                "dependency injection: put them on your own routes or routers "
                "(include_router(router, dependencies=[...])), or use a middleware, which "
                "applies to the callback route too"
            )
        for route in self.router.routes:
            if id(route) in self._own_routes or not isinstance(route, Route):
                continue
            for path in sorted(self._callback_paths):
                probe = {"type": "http", "path": path, "root_path": "", "method": "POST"}
                if route.matches(probe)[0] is Match.FULL:
                    methods = ",".join(sorted(route.methods or ())) or "every method"
                    raise ConfigurationError(
                        f"your route {route.path} ({methods}) answers POST {path}, which "
                        f"belongs to the callback route (POST {self.callback_path}, served with "
                        "and without a trailing slash): move your route, or serve the "
                        "callback at another path with app.asgi(path=...)"
                    )

    def _claimed(self, scope: Scope) -> bool:
        """Does one of your routes serve this (non-POST) request on the callback path?"""
        for route in self.router.routes:
            if id(route) not in self._own_routes and route.matches(scope)[0] is Match.FULL:
                return True
        return False

    def build_middleware_stack(self) -> ASGIApp:
        """FastAPI's stack, with the callback switch just inside your middleware."""
        endpoint = self.callback_endpoint
        if endpoint is None:
            return super().build_middleware_stack()
        switch = Middleware(
            CallbackSwitch,
            endpoint=endpoint,
            paths=tuple(self._callback_paths),
            claimed=self._claimed,
        )
        yours = self.user_middleware
        self.user_middleware = [*yours, switch]
        try:
            return super().build_middleware_stack()
        finally:
            self.user_middleware = yours


async def _start(app: ServedApp) -> str | None:
    """Run ``app.startup()``; None when it started, else the one line that says why
    not (uvicorn prints it, without a traceback: the store unreachable is an
    operational state, not a bug); any other error (your ``App(lifespan=...)``) is
    logged with its traceback first."""
    try:  # Redis down at start-up: fail now, not on the first call
        await app.startup()
    except StoreError as exc:
        return (
            f"cannot start: the store is unreachable ({type(exc).__name__}: {exc}); "
            "check RTCONTROL_STORE_URL"
        )
    except ConfigurationError as exc:
        return f"cannot start: {exc}"
    except Exception as exc:  # your lifespan's bug: its traceback goes to the log
        app_log.exception("cannot start")
        return f"cannot start: {type(exc).__name__}: {exc} (traceback logged above)"
    return None


def _wraps_requests(api: FastAPI) -> bool:
    """Does FastAPI itself wrap every request: a body limit, or native telemetry?"""
    if getattr(api, "max_body_size", None) is not None:
        return True
    telemetry = getattr(api, "_native_telemetry", None)  # FastAPI with OpenTelemetry built in
    enabled = getattr(telemetry, "enabled", None)
    if not callable(enabled):
        return False
    try:
        return bool(enabled())
    except Exception:  # unknown: let FastAPI handle every request
        return True


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    }


def _error_response(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": _error_schema()}},
    }


def _inline_defs(schema: dict[str, Any]) -> dict[str, Any]:
    """A pydantic schema with its ``$defs`` inlined, so it can sit anywhere in an
    OpenAPI document (``#/$defs/...`` would resolve against the document's root)."""
    schema = copy.deepcopy(schema)
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(copy.deepcopy(defs[ref.removeprefix("#/$defs/")]))
            return {k: resolve(v) for k, v in node.items()}
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


def _request_schema() -> dict[str, Any]:
    """RTRequest's JSON schema, saying which fields also accept ``null``.

    Loose string fields and ``variables`` read ``null`` as empty; pydantic's schema
    cannot see that (it is a before-validator), so each field is probed once.
    """
    schema = _inline_defs(RTRequest.model_json_schema())
    probe: dict[str, Any] = {"callid": 0, "call_status": "UP"}
    for name, prop in schema["properties"].items():
        if name in probe or "type" not in prop:
            continue
        try:
            RTRequest.model_validate({**probe, name: None})
        except ValidationError:
            continue
        schema["properties"][name] = {
            "anyOf": [{k: v for k, v in prop.items() if k not in _ANNOTATIONS}, {"type": "null"}],
            **{k: v for k, v in prop.items() if k in _ANNOTATIONS},
        }
    return schema


_ANNOTATIONS = frozenset({"title", "description", "default"})


def _openapi_extra() -> dict[str, Any]:
    """The callback operation's OpenAPI fields (a fresh copy: callers may mutate it)."""
    return copy.deepcopy(_callback_openapi())


@functools.cache
def _callback_openapi() -> dict[str, Any]:
    request_schema = _request_schema()
    reply_schema = _inline_defs(RTResponse.model_json_schema())
    empty_reply = {"type": "object", "maxProperties": 0, "description": "Call ended: {}"}
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": request_schema}},
        },
        "responses": {
            "200": {
                "description": "The next command ({} once the call has ended)",
                "content": {"application/json": {"schema": {"anyOf": [reply_schema, empty_reply]}}},
            },
            "400": _error_response("Malformed JSON or Content-Length"),
            "401": {
                "description": "Missing or wrong credentials",
                "headers": {"WWW-Authenticate": {"schema": {"type": "string"}}},
                "content": {"application/json": {"schema": _error_schema()}},
            },
            "413": _error_response("Body too large"),
            "415": _error_response("Not JSON"),
            "422": _error_response("Not an RT.Request"),
        },
    }


def callback_router(app: ServedApp, path: str = "/callback") -> APIRouter:
    """The callback route alone, to mount into an existing FastAPI app.

    It answers at ``path`` and at its trailing-slash twin (never a redirect); your
    app's middleware and dependencies apply as to any of its routes. When you mount
    it yourself, call ``await app.shutdown()`` from your lifespan.
    """
    return _router(CallbackEndpoint(app), callback_paths(path))


def _router(endpoint: CallbackEndpoint, paths: Sequence[str]) -> APIRouter:
    router = APIRouter()

    async def callback(request: Request) -> Response:
        # The endpoint speaks ASGI; collect what it sends into one Response.
        sent: list[MutableMapping[str, Any]] = []

        async def collect(message: MutableMapping[str, Any]) -> None:
            sent.append(message)

        await endpoint(request.scope, request.receive, collect)
        start, body = sent[0], sent[1].get("body", b"")
        headers = {k.decode(): v.decode() for k, v in start["headers"] if k != b"content-length"}
        return Response(body, status_code=start["status"], headers=headers)

    for n, path in enumerate(paths):
        router.add_api_route(  # the twin path is served, not documented
            path,
            callback,
            methods=["POST"],
            response_class=Response,
            summary="REALTIME10 callback: the platform reports a call's progress",
            openapi_extra=_openapi_extra(),
            include_in_schema=n == 0,
        )
    return router


def _patch_openapi(api: FastAPI, path: str) -> None:
    """Standalone document: exact ``callid`` bounds and the Basic security scheme.

    FastAPI's OpenAPI model stores numeric bounds as floats, which would round
    ``2**64 - 1`` up to ``2**64``; the scheme needs ``components``, which only the
    standalone app owns.
    """
    generate: Callable[[], dict[str, Any]] = api.openapi

    def openapi() -> dict[str, Any]:
        if api.openapi_schema is not None:
            return api.openapi_schema
        doc = generate()
        operation = doc["paths"][path]["post"]
        schema = operation["requestBody"]["content"]["application/json"]["schema"]
        schema["properties"]["callid"].update(minimum=0, maximum=CALLID_MAX)
        schemes = doc.setdefault("components", {}).setdefault("securitySchemes", {})
        schemes[SECURITY_SCHEME] = {"type": "http", "scheme": "basic"}
        operation["security"] = [{SECURITY_SCHEME: []}]
        api.openapi_schema = doc
        return doc

    api.openapi = openapi  # type: ignore[method-assign]


def create_asgi(app: ServedApp, path: str = "/callback") -> RtcontrolAPI:
    """A FastAPI app: the callback route, ``/healthz``, ``/metrics``, graceful shutdown."""
    paths = callback_paths(path)
    endpoint = CallbackEndpoint(app)  # checks the credentials once
    if app.settings.workers > 1 and not app.store.shared:
        raise ConfigurationError(process.split_state_message(f"{app.settings.workers} workers"))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # app.startup() ran already (RtcontrolAPI._lifespan), refusing in one line
        yield
        await app.shutdown()

    api = RtcontrolAPI(
        title="rtcontrol",
        summary="CALLR REALTIME10 call control",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    before = len(api.router.routes)
    api.include_router(_router(endpoint, paths))  # documents the route in OpenAPI
    api.serve_callback(endpoint, paths, api.router.routes[before:])
    api.served = app

    health = {"type": "object", "properties": {"status": {"type": "string"}}}

    @api.get(
        "/healthz",
        summary="Liveness and store reachability",
        responses={
            200: {
                "description": "Up, store reachable",
                "content": {"application/json": {"schema": health}},
            },
            503: {
                "description": "Store unreachable",
                "content": {"application/json": {"schema": health}},
            },
        },
    )
    async def healthz() -> JSONResponse:
        try:
            await asyncio.wait_for(app.store.ping(), timeout=HEALTH_TIMEOUT)
        except (StoreError, OSError, TimeoutError):
            return JSONResponse({"status": "degraded", "store": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "store": "ok"})

    @api.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"description": "Prometheus text format", "content": {"text/plain": {}}}},
    )
    async def metrics() -> Response:
        return Response(app.metrics.render(), media_type="text/plain; version=0.0.4")

    _patch_openapi(api, path)
    api.state.rtcontrol = app
    return api
