"""The FastAPI adapter: HTTP in, ``RTRequest`` to the core, reply bytes out.

Nothing here knows about flows or stores. The callback route checks HTTP Basic
credentials in constant time, bounds the body, parses it into an
:class:`~rtcontrol.protocol.RTRequest` and hands it to ``App.handle``. Every
refusal is a short JSON error that never echoes the input; nothing answers 500.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from .errors import ConfigurationError, StoreError
from .logs import app_log, handler_log
from .protocol import RTRequest, RTResponse

if TYPE_CHECKING:
    from .app import App

__all__ = ["callback_router", "create_asgi"]

_JSON_TYPES = ("application/json", "text/json")


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _BasicAuth:
    """Constant-time HTTP Basic check; the scheme name is case-insensitive (RFC 7617)."""

    def __init__(self, login: str, password: str) -> None:
        self._expected = f"{login}:{password}".encode()

    def __call__(self, header: str | None) -> bool:
        if not header:
            return False
        scheme, _, param = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(param.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)


def _auth_for(app: App) -> _BasicAuth | None:
    s = app.settings
    if s.callback_login and s.callback_password:
        return _BasicAuth(s.callback_login, s.callback_password)
    if s.allow_no_auth:
        app_log.warning(
            "the callback route accepts requests WITHOUT authentication "
            "(RTCONTROL_ALLOW_NO_AUTH): anyone who finds the URL can drive your calls"
        )
        return None
    raise ConfigurationError(
        "the callback route needs credentials: set RTCONTROL_CALLBACK_LOGIN and "
        "RTCONTROL_CALLBACK_PASSWORD (the login/password of the REALTIME10 app), "
        "or opt out explicitly with RTCONTROL_ALLOW_NO_AUTH=1"
    )


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The body, or None as soon as it exceeds ``limit`` (chunked bodies included)."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def callback_router(app: App, path: str = "/callback") -> APIRouter:
    """The callback route alone, to mount into an existing FastAPI app.

    When you mount it yourself, call ``await app.shutdown()`` from your lifespan.
    """
    auth = _auth_for(app)
    limit = app.settings.max_body
    challenge = {"WWW-Authenticate": 'Basic realm="rtcontrol", charset="UTF-8"'}
    router = APIRouter()

    async def callback(request: Request) -> Response:
        if auth is not None and not auth(request.headers.get("authorization")):
            return _error(401, "authentication required", challenge)
        ctype = request.headers.get("content-type", "application/json").lower()
        if not ctype.startswith(_JSON_TYPES) and "+json" not in ctype:
            return _error(415, "content type must be application/json")
        body = await _read_body(request, limit)
        if body is None:
            return _error(413, f"body larger than {limit} bytes")
        try:
            rt_request = RTRequest.model_validate_json(body)
        except ValidationError as exc:
            return _error(*_explain(exc))
        try:
            reply = await app.handle(rt_request)
        except Exception:  # a bug of ours must not cost the caller: answer safely
            handler_log.exception("callid=%s: internal error; fallback sent", rt_request.callid)
            reply = app.dispatcher.fallback_reply(rt_request)
        return Response(reply, media_type="application/json")

    router.add_api_route(
        path,
        callback,
        methods=["POST"],
        response_class=Response,
        summary="REALTIME10 callback: the platform reports a call's progress",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": RTRequest.model_json_schema()}},
            },
            "responses": {
                "200": {
                    "description": "The next command",
                    "content": {"application/json": {"schema": RTResponse.model_json_schema()}},
                },
                "401": {"description": "Missing or wrong credentials"},
                "413": {"description": "Body too large"},
                "415": {"description": "Not JSON"},
                "400": {"description": "Malformed JSON"},
                "422": {"description": "Not an RT.Request"},
            },
        },
    )
    return router


def _explain(exc: ValidationError) -> tuple[int, str]:
    """Short, input-free description of why a body was refused."""
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    if first["type"] == "json_invalid":
        return 400, "body is not valid JSON"
    if first["type"] in ("model_type", "dict_type") and not first["loc"]:
        return 422, "body must be a JSON object"
    where = ".".join(str(p) for p in first["loc"]) or "body"
    return 422, f"invalid field: {where}"


def create_asgi(app: App, path: str = "/callback") -> FastAPI:
    """A FastAPI app: the callback route, ``/healthz``, ``/metrics``, graceful shutdown."""
    router = callback_router(app, path)
    if app.settings.workers > 1 and not app.store.shared:
        raise ConfigurationError(
            f"{app.settings.workers} workers cannot share the memory store: each would see "
            "only its own calls. Set RTCONTROL_STORE_URL=redis://... or run one worker."
        )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await app.store.ping()  # Redis down at start-up: fail now, not on the first call
        yield
        await app.shutdown()

    api = FastAPI(
        title="rtcontrol",
        summary="CALLR REALTIME10 call control",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    api.include_router(router)

    @api.get("/healthz", summary="Liveness and store reachability")
    async def healthz() -> JSONResponse:
        try:
            await app.store.ping()
        except StoreError:
            return JSONResponse({"status": "degraded", "store": "unreachable"}, status_code=503)
        return JSONResponse({"status": "ok", "store": "ok"})

    @api.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(app.metrics.render(), media_type="text/plain; version=0.0.4")

    api.state.rtcontrol = app
    return api
