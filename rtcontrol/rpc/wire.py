"""What crosses the wire: checks on the arguments we send, and on the answers we get.

Argument checks raise :class:`~rtcontrol.errors.CommandError` before anything is sent;
answer checks raise :class:`~rtcontrol.errors.InvalidResponse` whose messages never
quote the body (an App object holds the webhook password).
"""

from __future__ import annotations

import json
import math
import platform
import reprlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn, TypeVar

import httpx
from pydantic import ValidationError

from ..errors import (
    AuthenticationError,
    CommandError,
    ConfigurationError,
    HTTPStatusError,
    InvalidResponse,
    JSONRPCError,
    OutcomeUnknown,
)
from ..media import Target
from ..protocol import CALLID_MAX
from .models import AppInfo, RealtimeAppParams, command_error

__all__ = [
    "USER_AGENT",
    "app_params",
    "bad_response",
    "check_callid",
    "check_ident",
    "check_name",
    "check_options",
    "check_positive",
    "check_target",
    "outcome_unknown",
    "parse_app",
    "parse_response",
    "redact",
    "status_error",
    "typed_result",
]

T = TypeVar("T")

try:
    _VERSION = version("rtcontrol")
except PackageNotFoundError:  # pragma: no cover - running from a bare checkout
    _VERSION = "0+unknown"
USER_AGENT = f"rtcontrol/{_VERSION} python/{platform.python_version()}"


def redact(value: Any) -> Any:
    """Hide webhook passwords (``apps.*`` params) in requests kept on exceptions."""
    if isinstance(value, dict):
        return {k: "***" if k == "password" else redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def bad_response(method: str, what: str) -> NoReturn:
    raise InvalidResponse(f"{method}: invalid JSON-RPC response: {what}", method=method)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def parse_response(method: str, rpc_id: int, response: httpx.Response) -> Any:
    """The ``result`` of a 2xx answer, or the matching error; bodies never enter messages."""
    try:
        data = json.loads(response.content, parse_constant=_no_constant)
    except (ValueError, RecursionError):
        bad_response(method, f"not JSON ({len(response.content)} bytes)")
    if not isinstance(data, dict):
        bad_response(method, f"expected an object, got {type(data).__name__}")
    if data.get("jsonrpc") != "2.0":
        bad_response(method, 'missing "jsonrpc": "2.0"')
    if ("result" in data) == ("error" in data):
        bad_response(method, 'needs exactly one of "result" and "error"')
    if "id" not in data:
        bad_response(method, 'missing "id"')
    got = data.get("id")
    same = isinstance(got, int) and not isinstance(got, bool) and got == rpc_id
    if "error" in data:
        error = data["error"]
        # A server that could not read our id answers with ``id: null`` (JSON-RPC 2.0 §5).
        if not same and got is not None:
            bad_response(method, f"id {reprlib.repr(got)} does not match request id {rpc_id}")
        if not (isinstance(error, dict) and type(error.get("code")) is int):
            bad_response(method, "error object without an integer code")
        message = error.get("message")
        if not isinstance(message, str):
            bad_response(method, "error object without a string message")
        raise JSONRPCError(
            method=method, code=error["code"], message=message, data=error.get("data")
        )
    if not same:
        bad_response(method, f"id {reprlib.repr(got)} does not match request id {rpc_id}")
    return data["result"]


def typed_result(method: str, result: Any, kind: type[T]) -> T:
    if not isinstance(result, kind) or (kind is int and isinstance(result, bool)):
        bad_response(
            method, f"expected a result of type {kind.__name__}, got {type(result).__name__}"
        )
    return result


def check_callid(method: str, callid: Any) -> int:
    if isinstance(callid, bool) or not isinstance(callid, int) or not 0 <= callid <= CALLID_MAX:
        raise CommandError(method, "callid", f"an integer 0..{CALLID_MAX}", callid)
    return callid


def check_ident(method: str, param: str, value: Any) -> str:
    if not isinstance(value, str) or not value or any(c.isspace() for c in value):
        raise CommandError(method, param, "a non-empty string without spaces", value)
    return value


def check_target(method: str, target: Any) -> dict[str, Any]:
    if isinstance(target, str):
        try:
            target = Target(number=target)
        except ValidationError as exc:
            raise command_error(method, exc, "target") from None
    if not isinstance(target, Target):
        raise CommandError(method, "target", "a Target or an E.164 number string", target)
    return target.model_dump()


def check_options(method: str, options: Any, kind: type[Any]) -> dict[str, Any] | None:
    if options is None:
        return None  # "NULL: YES": the platform's defaults apply
    if not isinstance(options, kind):
        raise CommandError(method, "options", f"a {kind.__name__} or None", options)
    dumped: dict[str, Any] = options.model_dump()
    return dumped


def check_name(method: str, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise CommandError(method, "name", "a non-empty string", name)
    return name


def app_params(
    method: str, *, url: str | None, login: str | None, password: str | None
) -> dict[str, str]:
    """The REALTIME10 ``params`` object, only with the fields given."""
    try:
        return RealtimeAppParams(url=url, login=login, password=password).to_wire()
    except ValidationError as exc:
        raise command_error(method, exc, "params") from None


def parse_app(method: str, result: Any) -> AppInfo:
    if not isinstance(result, dict):
        bad_response(method, f"expected an App object, got {type(result).__name__}")
    try:
        return AppInfo.model_validate(result)
    except ValidationError:
        bad_response(method, "App object without a hash")


def check_positive(name: str, value: Any, *, zero: bool = False) -> float:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not zero):
        raise ConfigurationError(f"{name} must be a finite number {'>=' if zero else '>'} 0")
    return float(value)


def status_error(method: str, status: int) -> HTTPStatusError:
    if status in (401, 403):
        return AuthenticationError(
            f"{method}: the API refused the credentials (HTTP {status})",
            method=method,
            status_code=status,
        )
    return HTTPStatusError(f"{method}: HTTP {status}", method=method, status_code=status)


def outcome_unknown(method: str, request: dict[str, Any], why: str) -> OutcomeUnknown:
    """The error for a non-idempotent request that may have run; it carries the request."""
    return OutcomeUnknown(
        f"{method}: outcome unknown ({why}); the request may have been executed "
        f"and was not retried (request id {request['id']})",
        method=method,
        request=redact(request),
    )
