"""The FastAPI adapter: the callback route, ``/healthz``, ``/metrics``, OpenAPI, lifespan.

Nothing here knows about flows or stores. The callback itself is served by
:class:`~rtcontrol.endpoint.CallbackEndpoint` (bare ASGI, for speed); this module
mounts it, documents it, and adds the operational routes. Every refusal is a
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
"""

from __future__ import annotations

import asyncio
import copy
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from .endpoint import CHALLENGE, CallbackEndpoint, auth_for
from .errors import ConfigurationError, StoreError
from .logs import app_log
from .protocol import CALLID_MAX, RTRequest, RTResponse

if TYPE_CHECKING:
    from .app import App

__all__ = ["callback_router", "create_asgi", "require_callback_auth"]

#: Seconds /healthz waits for the store before answering 503.
HEALTH_TIMEOUT = 2.0
#: Name of the security scheme in the standalone app's OpenAPI document.
SECURITY_SCHEME = "callbackBasic"


def require_callback_auth(app: App) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that protects your own routes with the callback's credentials.

    ``@api.post("/agents/free", dependencies=[Depends(require_callback_auth(app))])``
    """
    auth = auth_for(app)

    async def check(request: Request) -> None:
        if auth is not None and not auth(request.headers.get("authorization")):
            raise HTTPException(401, "authentication required", {"WWW-Authenticate": CHALLENGE})

    return check


class RtcontrolAPI(FastAPI):
    """The FastAPI app of :func:`create_asgi`: ``POST <callback path>`` goes straight to the
    bare-ASGI endpoint, before FastAPI's per-request work (telemetry checks, middleware,
    routing, dependencies); every other route is plain FastAPI."""

    callback_path: str = ""
    callback_endpoint: CallbackEndpoint | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        endpoint = self.callback_endpoint
        if (
            endpoint is not None
            and scope["type"] == "http"
            and scope["path"] == self.callback_path
            and scope["method"] == "POST"
        ):
            await endpoint(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


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


def callback_router(app: App, path: str = "/callback") -> APIRouter:
    """The callback route alone, to mount into an existing FastAPI app.

    When you mount it yourself, call ``await app.shutdown()`` from your lifespan.
    """
    return _router(CallbackEndpoint(app), path)


def _router(endpoint: CallbackEndpoint, path: str) -> APIRouter:
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

    router.add_api_route(
        path,
        callback,
        methods=["POST"],
        response_class=Response,
        summary="REALTIME10 callback: the platform reports a call's progress",
        openapi_extra=_openapi_extra(),
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


def create_asgi(app: App, path: str = "/callback") -> FastAPI:
    """A FastAPI app: the callback route, ``/healthz``, ``/metrics``, graceful shutdown."""
    endpoint = CallbackEndpoint(app)  # checks the credentials once
    router = _router(endpoint, path)
    if app.settings.workers > 1 and not app.store.shared:
        raise ConfigurationError(
            f"{app.settings.workers} workers cannot share the memory store: each would see "
            "only its own calls. Set RTCONTROL_STORE_URL=redis://... or run one worker."
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:  # Redis down at start-up: fail now, not on the first call
            await app.store.ping()
        except StoreError as exc:
            app_log.error(
                "cannot start: the store is unreachable (%s); check RTCONTROL_STORE_URL", exc
            )
            raise
        yield
        await app.shutdown()

    api = RtcontrolAPI(
        title="rtcontrol",
        summary="CALLR REALTIME10 call control",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    api.include_router(router)  # documents the route in OpenAPI and serves it when mounted
    api.callback_path, api.callback_endpoint = path, endpoint

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
