"""The callback endpoint as a bare ASGI app: HTTP in, ``RTRequest`` to the core, bytes out.

It checks HTTP Basic credentials in constant time, bounds the body, parses it and
hands it to ``App.handle``. Every refusal is a short JSON error that never echoes
the input; nothing answers 500. It is written against ASGI itself, not Starlette
request objects, because it runs for every step of every call: the framework's
cost per callback must stay below a hand-written FastAPI endpoint's.
``rtcontrol.web`` serves it and documents it in OpenAPI.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from .errors import ConfigurationError
from .logs import app_log, handler_log
from .protocol import RTRequest

if TYPE_CHECKING:
    from .app import App

__all__ = ["BasicAuth", "CallbackEndpoint", "auth_for", "explain", "is_json"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_JSON_TYPES = frozenset({"application/json", "text/json"})
_UTF8 = frozenset({"utf-8", "utf8"})
_FIELDS = frozenset(RTRequest.model_fields)
CHALLENGE = 'Basic realm="rtcontrol", charset="UTF-8"'
_JSON_HEADERS = [(b"content-type", b"application/json")]


class BasicAuth:
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


def auth_for(app: App) -> BasicAuth | None:
    """The check for ``app``'s callback credentials; refuses to run unprotected."""
    s = app.settings
    login, password = s.callback_login or "", s.callback_password or ""
    if login and password:
        if ":" in login:
            raise ConfigurationError(
                "RTCONTROL_CALLBACK_LOGIN must not contain ':' (HTTP Basic cannot carry it)"
            )
        return BasicAuth(login, password)
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


def is_json(content_type: str | None) -> bool:
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


def explain(exc: ValidationError) -> tuple[int, str]:
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


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class CallbackEndpoint:
    """``POST`` a callback, get the next command. An ASGI app of its own."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.auth = auth_for(app)
        self.limit = app.settings.max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        auth = content_type = length = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
        if self.auth is not None and not self.auth(auth):
            await _send_error(send, 401, "authentication required", CHALLENGE)
            return
        if not is_json(content_type):
            await _send_error(send, 415, "content type must be application/json")
            return
        try:
            body = await self._read_body(receive, length)
            request = RTRequest.model_validate_json(body)
        except _Refused as refused:
            await _send_error(send, refused.status, refused.message)
            return
        except ValidationError as exc:
            await _send_error(send, *explain(exc))
            return
        try:
            reply = await self.app.handle(request)
        except Exception:  # a bug of ours must not cost the caller: answer safely
            handler_log.exception("callid=%s: internal error; fallback sent", request.callid)
            reply = self.app.dispatcher.fallback_reply(request)
        await _send(send, 200, reply)

    async def _read_body(self, receive: Receive, declared: str | None) -> bytes:
        """The body; 413 as soon as it exceeds the limit (chunked bodies too, without
        reading further), 400 for a malformed Content-Length or a vanished client."""
        limit = self.limit
        if declared is not None:
            digits = declared.strip()
            if not digits or not (digits.isascii() and digits.isdigit()):
                raise _Refused(400, "invalid Content-Length")
            digits = digits.lstrip("0") or "0"
            # compare the length first: int() of a huge digit string is slow or refused
            if len(digits) > len(str(limit)) or int(digits) > limit:
                raise _Refused(413, f"body larger than {limit} bytes")
        message = await receive()
        body = message.get("body", b"")
        if message["type"] == "http.request" and not message.get("more_body", False):
            if len(body) > limit:
                raise _Refused(413, f"body larger than {limit} bytes")
            return bytes(body)
        chunks = [body]
        size = len(body)
        while message["type"] == "http.request" and message.get("more_body", False):
            if size > limit:
                raise _Refused(413, f"body larger than {limit} bytes")
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            chunks.append(chunk)
        if message["type"] == "http.disconnect":  # nobody will read the answer
            raise _Refused(400, "client disconnected")
        if size > limit:
            raise _Refused(413, f"body larger than {limit} bytes")
        return b"".join(chunks)


async def _send(send: Send, status: int, body: bytes, challenge: str | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, challenge: str | None = None) -> None:
    await _send(send, status, error_body(message), challenge)


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()
