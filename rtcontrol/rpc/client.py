"""Async JSON-RPC 2.0 client for the CALLR API (spec §2, §3).

Retries follow safety, not convenience. A request that provably never left
(connection refused, connect or pool timeout) is retried for every method. Once it
may have reached the server (read/write timeout, reset, 5xx), only idempotent methods
are retried; the others raise :class:`~rtcontrol.errors.OutcomeUnknown`, because a
second ``calls.realtime`` could dial the callee twice. A 5xx counts as "may have run"
(a proxy's 504 says nothing about the backend). JSON-RPC errors, 4xx and garbled 2xx
answers are never retried.

``timeout`` bounds a whole call, retries and backoff included, so a caller working
to a deadline (a 5-second callback) can hand over what is left of its budget.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import ApiError, CommandError, ConfigurationError, TransportError
from ..media import Media, Target, check_media
from .models import REALTIME10, AppInfo, BroadcastOptions, RealtimeOptions
from .wire import (
    USER_AGENT,
    app_params,
    check_callid,
    check_ident,
    check_name,
    check_options,
    check_positive,
    check_target,
    outcome_unknown,
    parse_app,
    parse_response,
    redact,
    status_error,
    typed_result,
)

__all__ = ["IDEMPOTENT_METHODS", "CallrClient"]

_log = logging.getLogger("rtcontrol.rpc")

#: Methods safe to send twice: a repeat changes nothing (a hung-up call stays hung up).
IDEMPOTENT_METHODS = frozenset(
    {"calls.hangup", "calls.get_status_1", "apps.get_list", "apps.edit", "system.get_timestamp"}
)
#: The request provably never reached the server: safe to retry any method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
#: Gateway answers worth a retry for idempotent methods.
_RETRY_STATUS = frozenset({502, 503, 504})
#: Slack for httpx's own timeouts to fire first, so they name what timed out.
_GRACE = 0.05
_MEDIA_TYPE = "application/json-rpc; charset=utf-8"


def _check_api_url(url: str) -> None:
    """Refuse an unusable ``api_url`` (``CALLR_API_URL``) with one line naming the setting.

    ``urlsplit`` raises ``ValueError`` on some malformed URLs (``http://[::1``, a port out
    of range): that becomes the same ConfigurationError, with urlsplit's reason (which
    quotes at most the port, never the user or password part).
    """
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - validates the port (ValueError when out of range)
    except ValueError as exc:
        raise ConfigurationError(
            f"api_url must be an http:// or https:// URL ({_one_line(exc)})"
        ) from None
    if not ok:
        raise ConfigurationError("api_url must be an http:// or https:// URL")
    if parts.username or parts.password:
        raise ConfigurationError("api_url must not hold credentials: use api_key or login")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


class CallrClient:
    """The CALLR JSON-RPC API over one pooled ``httpx.AsyncClient``; close it when done."""

    DEFAULT_URL = "https://api.callr.com/json-rpc/v1.1/"

    def __init__(
        self,
        *,
        api_url: str | None = None,
        api_key: str | None = None,
        login: str | None = None,
        password: str | None = None,
        timeout: float = 10.0,
        retries: int = 2,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.api_url = api_url or self.DEFAULT_URL
        _check_api_url(self.api_url)
        if api_key and (login or password):
            raise ConfigurationError("give api_key or login/password, not both")
        if api_key:
            self._authorization = f"Api-Key {api_key}"
            self.auth_kind = "Api-Key"
        elif login and password:
            if ":" in login:
                raise ConfigurationError("login must not contain ':' (HTTP Basic)")
            token = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
            self._authorization = f"Basic {token}"
            self.auth_kind = "Basic"
        else:
            raise ConfigurationError("no credentials: give api_key, or login and password")
        self.timeout = check_positive("timeout", timeout)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ConfigurationError("retries must be an integer >= 0")
        self.retries = retries
        self.backoff = check_positive("backoff", backoff, zero=True)
        self._ids = itertools.count(1)
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=self.timeout,
            headers={"User-Agent": USER_AGENT, "Accept": "*/*"},
        )

    @classmethod
    def from_env(cls, **overrides: Any) -> CallrClient:
        """Build from ``CALLR_API_URL``, ``CALLR_API_KEY`` or ``CALLR_LOGIN``+``CALLR_PASSWORD``.

        Credentials given in ``overrides`` replace the environment's as a whole, so
        ``--api-key`` on a command line wins over a ``CALLR_LOGIN`` left in the shell.
        """
        given = {k: v for k, v in overrides.items() if v is not None}
        given.setdefault("api_url", os.environ.get("CALLR_API_URL") or None)
        if not given.keys() & {"api_key", "login", "password"}:
            key, login, password = (
                os.environ.get(f"CALLR_{name}") or None for name in ("API_KEY", "LOGIN", "PASSWORD")
            )
            if key and (login or password):
                raise ConfigurationError("set CALLR_API_KEY or CALLR_LOGIN, not both")
            if not key and not (login and password):
                missing = "CALLR_PASSWORD" if login else "CALLR_LOGIN" if password else ""
                raise ConfigurationError(
                    "no CALLR credentials: set CALLR_API_KEY, or CALLR_LOGIN and CALLR_PASSWORD"
                    + (f" ({missing} is missing)" if missing else "")
                )
            given.update(api_key=key, login=login, password=password)
        return cls(**given)

    def __repr__(self) -> str:
        return f"CallrClient(api_url={self.api_url!r}, auth={self.auth_kind!r})"

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> CallrClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ core

    async def call(
        self,
        method: str,
        params: list[Any],
        *,
        idempotent: bool,
        timeout: float | None = None,  # noqa: ASYNC109 - a whole-call budget
    ) -> Any:
        """Call any method with positional ``params``; ``idempotent`` decides the retries."""
        result, _ = await self._exchange(method, params, idempotent=idempotent, timeout=timeout)
        return result

    async def _exchange(
        self,
        method: str,
        params: list[Any],
        *,
        idempotent: bool,
        timeout: float | None,  # noqa: ASYNC109
    ) -> tuple[Any, bool]:
        """The result, and whether an earlier failed attempt may have reached the server."""
        if not isinstance(params, list):
            raise CommandError(method, "params", "a list (positional params only)", params)
        budget = self.timeout if timeout is None else check_positive("timeout", timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + budget
        reached = False
        for attempt in itertools.count(1):
            rpc_id = next(self._ids)
            request = {"jsonrpc": "2.0", "id": rpc_id, "method": method, "params": params}
            try:
                body = json.dumps(request, ensure_ascii=False, allow_nan=False).encode()
            except (TypeError, ValueError):
                raise CommandError(method, "params", "JSON values", redact(params)) from None
            remaining = max(deadline - loop.time(), 0.001)
            error: ApiError
            try:
                async with asyncio.timeout(remaining + _GRACE):
                    response = await self._http.post(
                        self.api_url,
                        content=body,
                        headers={"Content-Type": _MEDIA_TYPE, "Authorization": self._authorization},
                        timeout=remaining,
                    )
            except _NOT_SENT as exc:
                error = TransportError(
                    f"{method}: cannot reach the API ({type(exc).__name__}); request not sent",
                    method=method,
                )
                cause: BaseException | None = exc
            except (httpx.TransportError, TimeoutError) as exc:
                what = type(exc).__name__
                if not idempotent:
                    raise outcome_unknown(method, request, f"{what} after sending") from exc
                error = TransportError(
                    f"{method}: {what} after the request was sent", method=method
                )
                cause, reached = exc, True
            else:
                status = response.status_code
                if 200 <= status < 300:
                    return parse_response(method, rpc_id, response), reached
                error = status_error(method, status)
                if status >= 500 and not idempotent:
                    # A 5xx (often a proxy's 502/504) says nothing about whether it ran.
                    raise outcome_unknown(method, request, f"HTTP {status}") from error
                if not (idempotent and status in _RETRY_STATUS):
                    raise error
                cause, reached = None, True
            delay = self.backoff * 2 ** (attempt - 1)
            if attempt > self.retries or loop.time() + delay >= deadline:
                raise error from cause
            _log.warning("%s: retry %d/%d after %s", method, attempt, self.retries, error)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    # --------------------------------------------------------------- methods

    async def _invoke(self, method: str, params: list[Any], budget: float | None) -> Any:
        return await self.call(
            method, params, idempotent=method in IDEMPOTENT_METHODS, timeout=budget
        )

    async def realtime(
        self,
        app: str,
        target: Target | str,
        options: RealtimeOptions | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a whole-call budget
    ) -> str:
        """``calls.realtime``: dial ``target`` under app ``app``; returns the request hash.

        The callid is only learned from the first callback, which carries this hash.
        """
        method = "calls.realtime"
        params = [
            check_ident(method, "app", app),
            check_target(method, target),
            check_options(method, options, RealtimeOptions),
        ]
        result = await self._invoke(method, params, timeout)
        return typed_result(method, result, str)

    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """``calls.realtime_break``: interrupt the call's running command.

        Not idempotent: a repeat could break the *next* command as well.
        """
        method = "calls.realtime_break"
        params = [check_callid(method, callid), {}]
        result = await self._invoke(method, params, timeout)
        return typed_result(method, result, bool)

    async def hangup(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        """``calls.hangup``; ``True`` once the call is down.

        A ``false`` after an attempt that may have reached the server means that
        attempt hung up the call, so it counts as success.
        """
        method = "calls.hangup"
        params = [check_callid(method, callid), {}]
        result, reached = await self._exchange(
            method, params, idempotent=method in IDEMPOTENT_METHODS, timeout=timeout
        )
        return typed_result(method, result, bool) or reached

    async def broadcast(
        self,
        target: Target | str,
        messages: Sequence[Media],
        options: BroadcastOptions | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - a whole-call budget
    ) -> str:
        """``calls.broadcast_1``: call ``target`` and play ``messages``; returns the request id."""
        method = "calls.broadcast_1"
        if isinstance(messages, str | bytes) or not isinstance(messages, Sequence) or not messages:
            raise CommandError(method, "messages", "a non-empty list of media", messages)
        media = [check_media(method, f"messages[{i}]", m) for i, m in enumerate(messages)]
        params = [
            check_target(method, target),
            media,
            check_options(method, options, BroadcastOptions),
        ]
        result = await self._invoke(method, params, timeout)
        return typed_result(method, result, str)

    async def get_status(self, request_id: str, *, timeout: float | None = None) -> str:  # noqa: ASYNC109
        """``calls.get_status_1``: the status of a broadcast (vocabulary not published)."""
        method = "calls.get_status_1"
        params = [check_ident(method, "request_id", request_id)]
        result = await self._invoke(method, params, timeout)
        return typed_result(method, result, str)

    async def create_app(
        self,
        name: str,
        url: str | None,
        *,
        login: str = "",
        password: str = "",
        timeout: float | None = None,  # noqa: ASYNC109 - a whole-call budget
    ) -> AppInfo:
        """``apps.create`` of a REALTIME10 app; ``url=None`` creates it without params."""
        method = "apps.create"
        params: dict[str, str] | None = None
        if url is not None or login or password:
            params = app_params(method, url=url, login=login, password=password)
        args = [REALTIME10, check_name(method, name), params]
        result = await self._invoke(method, args, timeout)
        return parse_app(method, result)

    async def edit_app(
        self,
        app_hash: str,
        *,
        name: str | None = None,
        url: str | None = None,
        login: str | None = None,
        password: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - a whole-call budget
    ) -> AppInfo:
        """``apps.edit``: change only what is given (``None`` = unchanged, sent as null)."""
        method = "apps.edit"
        params: dict[str, str] | None = None
        if url is not None or login is not None or password is not None:
            params = app_params(method, url=url, login=login, password=password)
        args = [
            check_ident(method, "app", app_hash),
            None if name is None else check_name(method, name),
            params,
        ]
        result = await self._invoke(method, args, timeout)
        return parse_app(method, result)

    async def list_apps(self, *, timeout: float | None = None) -> list[AppInfo]:  # noqa: ASYNC109
        """``apps.get_list``: the account's REALTIME10 apps (other app types are skipped)."""
        method = "apps.get_list"
        result = await self.call(method, [True], idempotent=True, timeout=timeout)
        apps = [parse_app(method, item) for item in typed_result(method, result, list)]
        return [app for app in apps if app.is_realtime]

    async def get_timestamp(self, *, timeout: float | None = None) -> int:  # noqa: ASYNC109
        """``system.get_timestamp``: a harmless call that proves the credentials work."""
        method = "system.get_timestamp"
        result = await self.call(method, [], idempotent=True, timeout=timeout)
        return typed_result(method, result, int)
