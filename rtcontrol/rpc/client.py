"""Async JSON-RPC 2.0 client for the CALLR API, with retries that follow safety.

Retry rules, because a retried ``calls.realtime`` can ring someone twice:

* every method is retried when the request provably never left (connection
  refused, connect timeout, no pooled connection);
* idempotent methods (:data:`IDEMPOTENT_METHODS`) are also retried after a
  read/write timeout, a reset, or a 502/503/504;
* other methods are never retried once the request may have reached the server:
  :class:`~rtcontrol.errors.OutcomeUnknown` carries the request that was sent.

JSON-RPC errors are answers, never retried. Credentials appear in no message.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import platform
import random
from collections.abc import Coroutine, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeVar

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
    TransportError,
)
from ..media import Media, Target, check_media
from ..protocol import CALLID_MAX
from .models import AppInfo, BroadcastOptions, RealtimeOptions

__all__ = ["IDEMPOTENT_METHODS", "CallrClient", "SyncCallrClient"]

T = TypeVar("T")

#: Methods whose repetition changes nothing: safe to retry after any transport error.
IDEMPOTENT_METHODS = frozenset(
    {"calls.hangup", "calls.get_status_1", "apps.get_list", "apps.edit", "system.get_timestamp"}
)
#: Errors raised before a single byte of the request was sent.
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_RETRY_STATUS = frozenset({502, 503, 504})
_VERSION = "0.1.0"


def _target(method: str, target: Target | str) -> dict[str, Any]:
    try:
        value = Target(number=target) if isinstance(target, str) else target
        return Target.model_validate(value).model_dump()
    except ValidationError:
        raise CommandError(
            method, "target", "an E.164 number (+CCNSN) with a ring timeout of 5..300 s", target
        ) from None


def _callid(method: str, callid: Any) -> int:
    if isinstance(callid, int) and not isinstance(callid, bool) and 0 <= callid <= CALLID_MAX:
        return callid
    raise CommandError(method, "callid", f"an integer 0..{CALLID_MAX}", callid)


class CallrClient:
    """``async with CallrClient(api_key=...) as callr: await callr.hangup(callid)``.

    Configure from arguments, or with :meth:`from_env` from ``CALLR_API_URL``,
    ``CALLR_API_KEY``, or ``CALLR_LOGIN`` plus ``CALLR_PASSWORD``. ``transport``
    replaces the network (``httpx.MockTransport`` in tests, the emulator in demos).
    """

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
        if api_key and (login or password):
            raise ConfigurationError("give an API key or a login and password, not both")
        if api_key:
            authorization = f"Api-Key {api_key}"
        elif login and password:
            pair = base64.b64encode(f"{login}:{password}".encode()).decode("ascii")
            authorization = f"Basic {pair}"
        else:
            raise ConfigurationError(
                "no CALLR credentials: set CALLR_API_KEY, or CALLR_LOGIN and CALLR_PASSWORD"
            )
        if timeout <= 0 or retries < 0 or backoff < 0:
            raise ConfigurationError("timeout must be > 0, retries and backoff >= 0")
        self.api_url = api_url or self.DEFAULT_URL
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._http = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(timeout),
            trust_env=False,
            headers={
                "Content-Type": "application/json-rpc; charset=utf-8",
                "Accept": "*/*",
                "Authorization": authorization,
                "User-Agent": f"rtcontrol/{_VERSION} python/{platform.python_version()}",
            },
        )
        self._ids = itertools.count(random.randint(1, 1 << 20))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CallrClient:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {
            "api_url": env.get("CALLR_API_URL") or None,
            "api_key": env.get("CALLR_API_KEY") or None,
            "login": env.get("CALLR_LOGIN") or None,
            "password": env.get("CALLR_PASSWORD") or None,
        }
        if overrides.get("api_key"):
            values["login"] = values["password"] = None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    async def __aenter__(self) -> CallrClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ------------------------------------------------------------------ transport

    async def call(
        self,
        method: str,
        params: list[Any],
        *,
        idempotent: bool | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Call any method; ``idempotent`` defaults to membership of IDEMPOTENT_METHODS."""
        result, _ = await self._call(method, params, idempotent, timeout)
        return result

    async def _call(
        self, method: str, params: list[Any], idempotent: bool | None, timeout: float | None
    ) -> tuple[Any, int]:
        safe = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        request = {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": params}
        body = json.dumps(request, ensure_ascii=False, allow_nan=False).encode()
        attempt = 0
        while True:
            try:
                response = await self._http.post(
                    self.api_url, content=body, timeout=timeout or self.timeout
                )
            except _NEVER_SENT as exc:
                if attempt < self.retries:
                    attempt = await self._pause(attempt)
                    continue
                raise TransportError(
                    f"{method}: cannot connect: {_brief(exc)}", method=method
                ) from exc
            except httpx.TransportError as exc:
                if safe and attempt < self.retries:
                    attempt = await self._pause(attempt)
                    continue
                if not safe:
                    raise OutcomeUnknown(
                        f"{method}: {_brief(exc)} after the request was sent; it may have been "
                        "carried out, so it was not retried",
                        method=method,
                        request=request,
                    ) from exc
                raise TransportError(f"{method}: {_brief(exc)}", method=method) from exc
            if response.status_code in _RETRY_STATUS and safe and attempt < self.retries:
                attempt = await self._pause(attempt)
                continue
            return self._result(method, request["id"], response), attempt

    async def _pause(self, attempt: int) -> int:
        await asyncio.sleep(self.backoff * (2**attempt))
        return attempt + 1

    def _result(self, method: str, request_id: Any, response: httpx.Response) -> Any:
        status = response.status_code
        if status in (401, 403):
            raise AuthenticationError(
                f"{method}: credentials refused (HTTP {status})", method=method, status_code=status
            )
        if not 200 <= status < 300:
            raise HTTPStatusError(f"{method}: HTTP {status}", method=method, status_code=status)
        try:
            data = json.loads(response.content)
        except ValueError:
            raise InvalidResponse(f"{method}: the answer is not JSON", method=method) from None
        if not isinstance(data, dict) or data.get("jsonrpc") != "2.0":
            raise InvalidResponse(f"{method}: not a JSON-RPC 2.0 response", method=method)
        if data.get("id") != request_id:
            raise InvalidResponse(
                f"{method}: response id does not match the request", method=method
            )
        if ("result" in data) == ("error" in data):
            raise InvalidResponse(f"{method}: needs exactly one of result and error", method=method)
        if "error" in data:
            error = data["error"]
            if not isinstance(error, dict) or not isinstance(error.get("code"), int):
                raise InvalidResponse(f"{method}: malformed error object", method=method)
            raise JSONRPCError(
                method=method,
                code=error["code"],
                message=str(error.get("message", "")),
                data=error.get("data"),
            )
        return data["result"]

    # ------------------------------------------------------------------ calls.*

    async def realtime(
        self,
        app: str,
        target: Target | str,
        options: RealtimeOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """Start an outbound call driven by REALTIME10 app ``app``; returns the request hash."""
        m = "calls.realtime"
        opts = (options or RealtimeOptions()).model_dump()
        result = await self.call(m, [app, _target(m, target), opts], timeout=timeout)
        return _typed(m, result, str)

    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:
        """Stop the command running on a call; False when nothing was breakable."""
        m = "calls.realtime_break"
        return _typed(m, await self.call(m, [_callid(m, callid), {}], timeout=timeout), bool)

    async def hangup(self, callid: int, *, timeout: float | None = None) -> bool:
        """Hang up a call; a retried hang-up that finds the call gone counts as done."""
        m = "calls.hangup"
        result, attempts = await self._call(m, [_callid(m, callid), {}], None, timeout)
        return True if attempts and result is False else _typed(m, result, bool)

    async def broadcast(
        self,
        target: Target | str,
        messages: Sequence[Media],
        options: BroadcastOptions | None = None,
    ) -> str:
        """Call ``target`` and play ``messages`` (calls.broadcast_1); returns the request id."""
        m = "calls.broadcast_1"
        if isinstance(messages, str) or not messages:
            raise CommandError(m, "messages", "a non-empty list of media", messages)
        media = [check_media(m, "messages", item) for item in messages]
        opts = (options or BroadcastOptions()).model_dump()
        return _typed(m, await self.call(m, [_target(m, target), media, opts]), str)

    async def get_status(self, request_id: str) -> str:
        m = "calls.get_status_1"
        return _typed(m, await self.call(m, [request_id]), str)

    # ------------------------------------------------------------------ apps.*, system.*

    async def create_app(
        self, name: str, url: str | None, *, login: str = "", password: str = ""
    ) -> AppInfo:
        """Create a REALTIME10 app calling ``url`` (with Basic auth when login is set)."""
        params = None if url is None else _app_params(url, login, password)
        return _app(await self.call("apps.create", ["REALTIME10", name, params]))

    async def edit_app(
        self,
        app_hash: str,
        *,
        name: str | None = None,
        url: str | None = None,
        login: str | None = None,
        password: str | None = None,
    ) -> AppInfo:
        params = None if url is None else _app_params(url, login or "", password or "")
        return _app(await self.call("apps.edit", [app_hash, name, params]))

    async def list_apps(self) -> list[AppInfo]:
        """The account's REALTIME10 apps."""
        result = await self.call("apps.get_list", [True])
        if not isinstance(result, list):
            raise InvalidResponse("apps.get_list: expected a list", method="apps.get_list")
        apps = [_app(item) for item in result]
        return [a for a in apps if a.app_type in ("REALTIME10", "")]

    async def get_timestamp(self) -> int:
        """The API's clock: a cheap way to check the credentials."""
        m = "system.get_timestamp"
        result = await self.call(m, [])
        if isinstance(result, bool) or not isinstance(result, int):
            raise InvalidResponse(f"{m}: expected an integer", method=m)
        return result


def _app_params(url: str, login: str, password: str) -> dict[str, str]:
    return {"url": url, "login": login, "password": password, "data_format": "JSON"}


def _app(result: Any) -> AppInfo:
    try:
        return AppInfo.model_validate(result)
    except ValidationError:
        raise InvalidResponse("apps: the answer is not an App object", method="apps") from None


def _typed(method: str, result: Any, kind: type[T]) -> T:
    if not isinstance(result, kind) or (kind is not bool and isinstance(result, bool)):
        raise InvalidResponse(f"{method}: expected a {kind.__name__} result", method=method)
    return result


def _brief(exc: BaseException) -> str:
    return type(exc).__name__ + (f": {str(exc)[:120]}" if str(exc) else "")


class SyncCallrClient:
    """Blocking facade for scripts: each method runs the async client's on a private loop."""

    def __init__(self, **kwargs: Any) -> None:
        self._runner = asyncio.Runner()
        self._client = self._runner.run(_build(kwargs))

    @classmethod
    def from_env(cls, **overrides: Any) -> SyncCallrClient:
        self = cls.__new__(cls)
        self._runner = asyncio.Runner()
        self._client = self._runner.run(_build(overrides, env=True))
        return self

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def call(self, method: str, params: list[Any], **kw: Any) -> Any:
        return self._run(self._client.call(method, params, **kw))

    def realtime(
        self, app: str, target: Target | str, options: RealtimeOptions | None = None
    ) -> str:
        return self._run(self._client.realtime(app, target, options))

    def realtime_break(self, callid: int) -> bool:
        return self._run(self._client.realtime_break(callid))

    def hangup(self, callid: int) -> bool:
        return self._run(self._client.hangup(callid))

    def broadcast(
        self,
        target: Target | str,
        messages: Sequence[Media],
        options: BroadcastOptions | None = None,
    ) -> str:
        return self._run(self._client.broadcast(target, messages, options))

    def get_status(self, request_id: str) -> str:
        return self._run(self._client.get_status(request_id))

    def create_app(self, name: str, url: str | None, **kw: str) -> AppInfo:
        return self._run(self._client.create_app(name, url, **kw))

    def edit_app(self, app_hash: str, **kw: str | None) -> AppInfo:
        return self._run(self._client.edit_app(app_hash, **kw))

    def list_apps(self) -> list[AppInfo]:
        return self._run(self._client.list_apps())

    def get_timestamp(self) -> int:
        return self._run(self._client.get_timestamp())

    def close(self) -> None:
        self._run(self._client.aclose())
        self._runner.close()

    def __enter__(self) -> SyncCallrClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


async def _build(kwargs: dict[str, Any], *, env: bool = False) -> CallrClient:
    """Create the client inside the runner's loop, which its connections belong to."""
    return CallrClient.from_env(**kwargs) if env else CallrClient(**kwargs)
