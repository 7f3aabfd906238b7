"""The JSON-RPC 2.0 endpoint of the emulated platform (spec §2, §3).

Envelope rules: POST only; ``jsonrpc`` must be ``"2.0"``; ``id`` is a required integer
(no notifications); ``params`` is a positional array (no named params); no batches.
Authentication (``Basic`` or ``Api-Key``) is checked first and fails with HTTP 401.
Every other failure is HTTP 200 with an ``error`` object whose message is CALLR's token
(``PROPERTY_VALUE_ERROR [callid]``) and whose code comes from ``rpc_error_codes``.

Positional params marked "NULL: YES" in the spec may also be omitted at the end.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .apps import RPCFault
from .settings import EmulatorSettings
from .wire import decode_json

__all__ = ["METHODS", "RPC_PATH", "RPCBackend", "build_rpc_app", "handle_rpc"]

#: The path of CALLR's endpoint (``https://api.callr.com/json-rpc/v1.1/``); ``/`` works too.
RPC_PATH = "/json-rpc/v1.1/"
_MEDIA_TYPE = "application/json-rpc; charset=utf-8"
_log = logging.getLogger("rtcontrol.emulator.rpc")


class RPCBackend(Protocol):
    """What the JSON-RPC server needs of the platform (:class:`Emulator` is one).

    Each method takes the JSON-RPC positional params as they arrive and returns the JSON
    ``result``; it raises :class:`RPCFault` for a CALLR error.
    """

    @property
    def settings(self) -> EmulatorSettings: ...

    def get_timestamp(self) -> int: ...

    def apps_create(self, app_type: Any, name: Any, params: Any = None) -> dict[str, Any]: ...

    def apps_edit(self, app_hash: Any, name: Any = None, params: Any = None) -> dict[str, Any]: ...

    def apps_get_list(self, details: Any = False) -> list[dict[str, Any]]: ...

    def realtime(self, app: Any, target: Any, options: Any = None) -> str: ...

    def break_call(self, callid: Any, options: Any = None) -> bool: ...

    def hangup_call(self, callid: Any, options: Any = None) -> bool: ...

    def broadcast(self, target: Any, messages: Any, options: Any = None) -> str: ...

    def get_status(self, request_id: Any) -> str: ...


@dataclass(frozen=True)
class Method:
    """Positional param names; the first ``required`` are "NULL: NO" (present, non-null)."""

    params: tuple[str, ...]
    required: int
    run: Callable[..., Any]


def _methods(emu: RPCBackend) -> dict[str, Method]:
    realtime = Method(("app", "target", "options"), 2, emu.realtime)
    broadcast = Method(("target", "messages", "options"), 2, emu.broadcast)
    return {
        "system.get_timestamp": Method((), 0, emu.get_timestamp),
        "apps.create": Method(("type", "name", "params"), 2, emu.apps_create),
        "apps.edit": Method(("app", "name", "params"), 1, emu.apps_edit),
        "apps.get_list": Method(("details",), 0, emu.apps_get_list),
        "calls.realtime": realtime,
        "dialr/call.realtime": realtime,
        "calls.realtime_break": Method(("callid", "options"), 2, emu.break_call),
        "calls.hangup": Method(("callid", "options"), 2, emu.hangup_call),
        "calls.broadcast_1": broadcast,
        "sendr/simple.broadcast_1": broadcast,
        "calls.get_status_1": Method(("request_id",), 1, emu.get_status),
    }


#: Method names the server answers (aliases included).
METHODS = (
    "apps.create",
    "apps.edit",
    "apps.get_list",
    "calls.broadcast_1",
    "calls.get_status_1",
    "calls.hangup",
    "calls.realtime",
    "calls.realtime_break",
    "dialr/call.realtime",
    "sendr/simple.broadcast_1",
    "system.get_timestamp",
)


def authorized(emu: RPCBackend, header: str | None) -> bool:
    """Check ``Authorization`` against the configured logins and API keys."""
    if not emu.settings.rpc_auth:
        return True
    scheme, _, value = (header or "").strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "api-key":
        return any(hmac.compare_digest(value, key) for key in emu.settings.api_keys)
    if scheme.lower() == "basic":
        try:
            login, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        expected = emu.settings.logins.get(login)
        return bool(sep) and expected is not None and hmac.compare_digest(password, expected)
    return False


def _error(emu: RPCBackend, rpc_id: Any, token: str, message: str) -> dict[str, Any]:
    error = {"code": emu.settings.rpc_code(token), "message": message}
    return {"jsonrpc": "2.0", "id": rpc_id, "error": error}


def _call(method: Method, params: list[Any]) -> Any:
    if len(params) > len(method.params):
        raise RPCFault("INVALID_PARAM_FORMAT", "params")
    if len(params) < method.required:
        raise RPCFault("INVALID_PARAM_FORMAT", method.params[len(params)])
    for name, value in zip(method.params[: method.required], params, strict=False):
        if value is None:
            raise RPCFault("INVALID_PARAM_FORMAT", name)
    return method.run(*params)


def handle_rpc(emu: RPCBackend, raw: bytes) -> dict[str, Any]:
    """Answer one JSON-RPC request body (authentication already checked)."""
    try:
        body = decode_json(raw)
    except ValueError:
        return _error(emu, None, "PARSE_ERROR", "Parse error")
    if isinstance(body, list):
        return _error(emu, None, "INVALID_REQUEST", "Invalid Request: batches are not supported")
    if not isinstance(body, dict):
        return _error(emu, None, "INVALID_REQUEST", "Invalid Request")
    rpc_id = body.get("id")
    if isinstance(rpc_id, bool) or not isinstance(rpc_id, int):
        detail = (
            "id is required (no notifications)" if "id" not in body else "id must be an integer"
        )
        return _error(emu, None, "INVALID_REQUEST", f"Invalid Request: {detail}")
    if body.get("jsonrpc") != "2.0":
        return _error(emu, rpc_id, "INVALID_REQUEST", 'Invalid Request: jsonrpc must be "2.0"')
    name = body.get("method")
    if not isinstance(name, str):
        return _error(emu, rpc_id, "INVALID_REQUEST", "Invalid Request: method must be a string")
    method = _methods(emu).get(name)
    if method is None:
        return _error(emu, rpc_id, "METHOD_NOT_FOUND", "Method not found")
    params = body.get("params")
    try:
        if not isinstance(params, list):
            raise RPCFault("INVALID_PARAM_FORMAT", "params")
        result = _call(method, params)
    except RPCFault as fault:
        return _error(emu, rpc_id, fault.token, fault.message)
    except Exception:
        _log.exception("emulator failure in %s", name)
        return _error(emu, rpc_id, "INTERNAL_ERROR", "Oops, Internal Error. ¯\\_(ツ)_/¯")
    return {"jsonrpc": "2.0", "id": rpc_id, "result": result}


def build_rpc_app(emu: RPCBackend) -> Starlette:
    """The ASGI app: ``POST /json-rpc/v1.1/`` (and ``POST /``)."""

    async def endpoint(request: Request) -> Response:
        if not authorized(emu, request.headers.get("authorization")):
            return Response(status_code=401, headers={"WWW-Authenticate": 'Basic realm="CALLR"'})
        answer = handle_rpc(emu, await request.body())
        return JSONResponse(answer, media_type=_MEDIA_TYPE)

    routes = [Route(RPC_PATH, endpoint, methods=["POST"]), Route("/", endpoint, methods=["POST"])]
    return Starlette(routes=routes)
