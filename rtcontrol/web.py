"""The FastAPI adapter: HTTP in, ``RTRequest`` to the core, reply bytes out.

Nothing here knows about flows or stores. The callback route checks HTTP Basic
credentials in constant time, bounds the body, parses it into an
:class:`~rtcontrol.protocol.RTRequest` and hands it to ``App.handle``. Every
refusal is a short JSON error that never echoes the input; nothing answers 500.

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
import base64
import binascii
import copy
import functools
import hmac
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from .errors import ConfigurationError, StoreError
from .logs import app_log, handler_log
from .protocol import CALLID_MAX, RTRequest, RTResponse

if TYPE_CHECKING:
    from .app import App

__all__ = ["callback_router", "create_asgi", "require_callback_auth"]

_JSON_TYPES = frozenset({"application/json", "text/json"})
_UTF8 = frozenset({"utf-8", "utf8"})
_FIELDS = frozenset(RTRequest.model_fields)
#: Seconds /healthz waits for the store before answering 503.
HEALTH_TIMEOUT = 2.0
#: Name of the security scheme in the standalone app's OpenAPI document.
SECURITY_SCHEME = "callbackBasic"


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class _BasicAuth:
    """Constant-time HTTP Basic check; the scheme name is case-insensitive (RFC 7617).

    Both fields are compared with :func:`hmac.compare_digest` on bytes, and the
    results are combined without short-circuiting, so the time taken does not
    depend on which field (or which prefix of it) is wrong.
    """

    def __init__(self, login: str, password: str) -> None:
        self._login = login.encode()
        self._password = password.encode()

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
        login, colon, password = given.partition(b":")
        login_ok = hmac.compare_digest(login, self._login)
        password_ok = hmac.compare_digest(password, self._password)
        return bool(colon) & login_ok & password_ok


def _auth_for(app: App) -> _BasicAuth | None:
    s = app.settings
    login, password = s.callback_login or "", s.callback_password or ""
    if login and password:
        if ":" in login:
            raise ConfigurationError(
                "RTCONTROL_CALLBACK_LOGIN must not contain ':' (HTTP Basic cannot carry it)"
            )
        return _BasicAuth(login, password)
    if login or password:  # half-configured: the developer meant to protect the route
        missing = "RTCONTROL_CALLBACK_PASSWORD" if login else "RTCONTROL_CALLBACK_LOGIN"
        raise ConfigurationError(
            f"{missing} is empty while its pair is set: set both RTCONTROL_CALLBACK_LOGIN "
            "and RTCONTROL_CALLBACK_PASSWORD (the login/password of the REALTIME10 app)"
        )
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


def require_callback_auth(app: App) -> Callable[[Request], Awaitable[None]]:
    """A FastAPI dependency that protects your own routes with the callback's credentials.

    ``@api.post("/agents/free", dependencies=[Depends(require_callback_auth(app))])``
    """
    auth = _auth_for(app)
    challenge = {"WWW-Authenticate": 'Basic realm="rtcontrol", charset="UTF-8"'}

    async def check(request: Request) -> None:
        if auth is not None and not auth(request.headers.get("authorization")):
            raise HTTPException(401, "authentication required", headers=challenge)

    return check


def _is_json(content_type: str | None) -> bool:
    """The content-type policy: JSON media types, UTF-8 only; missing means JSON."""
    if content_type is None or not content_type.strip():
        return True
    media, *params = content_type.lower().split(";")
    media = media.strip()
    if media not in _JSON_TYPES and not media.endswith("+json"):
        return False
    for param in params:
        name, _, value = param.partition("=")
        if name.strip() == "charset" and value.strip().strip('"') not in _UTF8:
            return False
    return True


async def _read_body(request: Request, limit: int) -> bytes | Response:
    """The body, or an error response: 413 as soon as it exceeds ``limit`` (chunked
    bodies included, without reading further), 400 for a malformed Content-Length."""
    declared = request.headers.get("content-length")
    if declared is not None:
        digits = declared.strip()
        if not digits or not (digits.isascii() and digits.isdigit()):
            return _error(400, "invalid Content-Length")
        digits = digits.lstrip("0") or "0"
        # compare the length first: int() of a huge digit string is slow or refused
        if len(digits) > len(str(limit)) or int(digits) > limit:
            return _error(413, f"body larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return _error(413, f"body larger than {limit} bytes")
            chunks.append(chunk)
    except ClientDisconnect:  # nobody will read the answer; do not log a traceback
        return _error(400, "client disconnected")
    return b"".join(chunks)


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
    auth = _auth_for(app)
    limit = app.settings.max_body
    challenge = {"WWW-Authenticate": 'Basic realm="rtcontrol", charset="UTF-8"'}
    router = APIRouter()

    async def callback(request: Request) -> Response:
        if auth is not None and not auth(request.headers.get("authorization")):
            return _error(401, "authentication required", challenge)
        if not _is_json(request.headers.get("content-type")):
            return _error(415, "content type must be application/json")
        body = await _read_body(request, limit)
        if not isinstance(body, bytes):
            return body
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
        openapi_extra=_openapi_extra(),
    )
    return router


def _explain(exc: ValidationError) -> tuple[int, str]:
    """Short, input-free description of why a body was refused.

    Only a top-level field name of ``RTRequest`` is ever named: never a key or a
    value taken from the body.
    """
    errors = exc.errors(include_input=False, include_url=False, include_context=False)
    first = errors[0] if errors else {"type": "", "loc": ()}
    if first["type"] == "json_invalid":
        return 400, "body is not valid JSON"
    loc = first["loc"]
    if not loc:
        return 422, "body must be a JSON object"
    where = loc[0] if loc[0] in _FIELDS else "body"
    return 422, f"invalid field: {where}"


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
