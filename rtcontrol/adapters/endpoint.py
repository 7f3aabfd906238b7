"""The callback endpoint as a bare ASGI app: HTTP in, ``RTRequest`` to the handler,
:class:`~rtcontrol.core.ports.Reply` out.

It checks HTTP Basic credentials in constant time (a refusal is logged, rate-limited
per client address: :class:`RefusalLog`), bounds the body, parses it and hands it to
``handler.handle_callback``. Every refusal is a short JSON error that
never echoes the input; nothing answers 500: a handler that raises gets
``handler.safe_reply(request)`` and a log line. It is written against ASGI itself,
not Starlette request objects, because it runs for every step of every call: the
framework's cost per callback must stay below a hand-written FastAPI endpoint's.
:mod:`rtcontrol.adapters.fastapi` serves it and documents it in OpenAPI.

The callback path (K5) is served with and without a trailing slash, never
redirected; other methods on it answer 405 (:class:`CallbackSwitch`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Protocol

from pydantic import ValidationError

from ..core.ports import CallbackHandler, Reply
from ..errors import ConfigurationError
from ..logs import app_log, handler_log
from ..protocol import RTRequest
from . import process
from .ports import AdapterSettings, ServedApp

__all__ = [
    "CHALLENGE",
    "BasicAuth",
    "CallbackEndpoint",
    "CallbackSwitch",
    "RefusalLog",
    "auth_for",
    "callback_paths",
    "error_body",
    "explain",
    "is_json",
    "route_path",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_JSON_TYPES = frozenset({"application/json", "text/json"})
_UTF8 = frozenset({"utf-8", "utf8"})
_FIELDS = frozenset(RTRequest.model_fields)
CHALLENGE = 'Basic realm="rtcontrol", charset="UTF-8"'
_JSON_HEADERS = [(b"content-type", b"application/json")]
#: The answer when this process must not serve (see :mod:`.process`); the reason is logged.
UNAVAILABLE = "service misconfigured: see the server log"
#: Sent when even ``safe_reply`` fails: the empty reply.
_LAST_RESORT = Reply(b"{}")


class _HasSettings(Protocol):
    @property
    def settings(self) -> AdapterSettings: ...


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


class RefusalLog:
    """One WARNING on ``rtcontrol.app`` per refused callback (HTTP 401), rate-limited.

    At most one line per ``window`` seconds (60 by default) per client address (the
    ASGI ``client`` host, i.e. the proxy's address unless the server trusts forwarded
    headers); refusals in between are counted and the count is given on the next line
    for that address. The line says why (no credentials, not HTTP Basic, wrong login or
    password) and what to check; it never contains the Authorization header, the login
    or the password. At most ``max_clients`` addresses are remembered (the least
    recently refused are forgotten first), so a flood from many addresses costs bounded
    memory.
    """

    def __init__(
        self,
        window: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 1024,
    ) -> None:
        self.window = window
        self._clock = clock
        self._max = max_clients
        #: client address -> (time of its last warning, refusals since then)
        self._seen: dict[str, tuple[float, int]] = {}

    def refused(self, scope: Scope, header: str | None) -> None:
        client = _client_address(scope)
        now = self._clock()
        last = self._seen.pop(client, None)
        if last is not None and now - last[0] < self.window:
            self._seen[client] = (last[0], last[1] + 1)
            return
        self._seen[client] = (now, 0)
        while len(self._seen) > self._max:
            del self._seen[next(iter(self._seen))]
        more = last[1] if last is not None else 0
        app_log.warning(
            "callback refused (401, %s) from %s: check that the REALTIME10 app's "
            "login/password match RTCONTROL_CALLBACK_LOGIN/RTCONTROL_CALLBACK_PASSWORD%s",
            _refusal_reason(header),
            client,
            f" ({more} more from this address since the last warning)" if more else "",
            extra={"client": client},
        )


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    host = client[0] if client else None
    if not isinstance(host, str) or not host:
        return "an unknown address"
    return "".join(c if c.isprintable() and not c.isspace() else "?" for c in host[:64])


def _refusal_reason(header: str | None) -> str:
    """Why a header was refused, without a word of what it holds."""
    if not header or not header.strip():
        return "no credentials"
    if header.partition(" ")[0].lower() != "basic":
        return "not HTTP Basic"
    return "wrong login or password"


def auth_for(app: _HasSettings) -> BasicAuth | None:
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


def callback_paths(path: str) -> tuple[str, str] | tuple[str]:
    """The paths the callback is served at: ``path`` first, then its trailing-slash twin.

    ``/callback`` -> ``("/callback", "/callback/")``; ``/hooks/`` -> ``("/hooks/",
    "/hooks")``; ``/`` -> ``("/",)``. Repeated slashes (``//callback``) are not
    served: they are a typo in the configured URL, answered 404 like any unknown path.
    """
    if not path.startswith("/") or "//" in path or any(c in path for c in "?#{} "):
        raise ConfigurationError(
            f"the callback path must be a plain absolute path like '/callback' (got {path!r})"
        )
    bare = path.rstrip("/")
    if not bare:
        return (path,)
    return (path, bare) if path.endswith("/") else (path, path + "/")


def route_path(path: str, root_path: str) -> str:
    """The path routing sees: ``path`` without ``root_path`` (as Starlette computes it)."""
    if root_path and path.startswith(root_path):
        if len(path) == len(root_path):
            return ""
        if path[len(root_path)] == "/":
            return path[len(root_path) :]
    return path


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


class CallbackEndpoint:
    """``POST`` a callback, get the next command. An ASGI app of its own."""

    def __init__(self, app: ServedApp) -> None:
        self.app = app
        self.handler: CallbackHandler = app
        self.auth = auth_for(app)
        self.limit = app.settings.max_body
        self.gate = process.ProcessGate(app.store)
        self.refusals = RefusalLog()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.gate.epoch != process.EPOCH and self.gate.refuse_request():
            await _send_error(send, 503, UNAVAILABLE)
            return
        auth = content_type = length = start = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                auth = value.decode("latin-1")
            elif name == b"content-type":
                content_type = value.decode("latin-1")
            elif name == b"content-length":
                length = value.decode("latin-1")
            elif name == b"x-request-start":
                start = value
        if self.auth is not None and not self.auth(auth):
            self.refusals.refused(scope, auth)
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
            received = request_start(start) if start is not None else None
            reply = await self.handler.handle_callback(request, received_at=received)
        except Exception:  # a bug of ours must not cost the caller: answer safely
            handler_log.exception("callid=%s: internal error; fallback sent", request.callid)
            reply = self._safe_reply(request)
        await _send(send, reply.status, reply.body)

    def _safe_reply(self, request: RTRequest) -> Reply:
        try:
            return self.handler.safe_reply(request)
        except Exception:
            handler_log.exception("callid=%s: the fallback failed too; empty reply", request.callid)
            return _LAST_RESORT

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


class CallbackSwitch:
    """ASGI middleware that owns the callback paths (K5), whatever the app around it.

    On a callback path (with or without its trailing slash, never redirected):
    ``POST`` goes to the endpoint; another method goes on to ``app`` when
    ``claimed(scope)`` says one of the user's routes answers it, else gets a JSON
    405 with ``Allow: POST``. A path that differs only by more trailing slashes
    (``/callback//``) gets a 404 unless a user's route serves it: a redirect to
    the callback would lose the platform's POST. Every other request goes on to
    ``app`` unchanged.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        endpoint: ASGIApp,
        paths: tuple[str, ...],
        claimed: Callable[[Scope], bool],
    ) -> None:
        self.app = app
        self.endpoint = endpoint
        self.paths = frozenset(paths)
        self.bare = paths[0].rstrip("/")
        self.claimed = claimed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = route_path(scope["path"], scope.get("root_path", ""))
            if path in self.paths:
                if scope["method"] == "POST":
                    await self.endpoint(scope, receive, send)
                    return
                if not self.claimed(scope):
                    await method_not_allowed(scope, send)
                    return
            elif self.bare and path.rstrip("/") == self.bare and not self.claimed(scope):
                await _send_error(send, 404, "not found")
                return
        await self.app(scope, receive, send)


async def method_not_allowed(scope: Scope, send: Send) -> None:
    """405 for a method other than POST on the callback path; nothing is read or run."""
    body = error_body("method not allowed: the callback route takes POST")
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode()), (b"allow", b"POST")]
    await send({"type": "http.response.start", "status": 405, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


async def _send(send: Send, status: int, body: bytes, challenge: str | None = None) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if challenge is not None:
        headers.append((b"www-authenticate", challenge.encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, challenge: str | None = None) -> None:
    await _send(send, status, error_body(message), challenge)


async def send_error(send: Send, status: int, message: str) -> None:
    """A short JSON error ``{"error": message}``."""
    await _send_error(send, status, message)


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}, separators=(",", ":")).encode()


def request_start(value: bytes) -> float | None:
    """When the proxy received the callback, from ``X-Request-Start``: ``t=<epoch
    seconds>`` (nginx's ``$msec``, e.g. ``t=1764500000.123``), or milliseconds or
    microseconds since the epoch. None when it cannot be read."""
    text = value.decode("latin-1").strip()
    if text[:2] in ("t=", "T="):
        text = text[2:]
    try:
        stamp = float(text)
    except ValueError:
        return None
    if not math.isfinite(stamp) or stamp <= 0:
        return None
    while stamp > 1e11:  # milliseconds or microseconds since the epoch
        stamp /= 1000.0
    return stamp
