"""The platform's side of the HTTP exchange with an app: POST, time, judge.

The reply deadline is measured in real seconds from the POST being sent to the full
response being received. Failures are returned, not raised, with the mode the settings
give them (``hangup`` or ``retry``); ``retry`` re-sends the identical body.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from .apps import App
from .settings import EmulatorSettings
from .transcript import EventKind, describe_raw_reply, describe_reply, describe_request
from .wire import Accepted, Malformed, Refused, check_reply, decode_json

__all__ = ["Failure", "Webhook"]


class Log(Protocol):
    def __call__(
        self,
        kind: EventKind,
        text: str,
        *,
        data: Any = None,
        status: int | None = None,
        latency: float | None = None,
        ignored: bool = False,
    ) -> None: ...


@dataclass(frozen=True)
class Failure:
    """The webhook failed: ``token`` goes into ``command_error``, ``mode`` says what next."""

    token: str
    mode: str


class Webhook:
    """POSTs one call's requests to its app (whose URL and credentials may be edited)."""

    def __init__(
        self, client: httpx.AsyncClient, settings: EmulatorSettings, app: App, log: Log
    ) -> None:
        self._client = client
        self._settings = settings
        self._app = app
        self._log = log

    async def _send(self, body: dict[str, Any]) -> httpx.Response:
        headers = {"Accept": "*/*", "Content-Type": "application/json"}
        if self._settings.webhook_basic_auth and (self._app.login or self._app.password):
            pair = f"{self._app.login}:{self._app.password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._log("request", describe_request(body), data=body)
        return await self._client.post(
            self._app.url,
            content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
            headers=headers,
        )

    async def ask(
        self, body: dict[str, Any], variables: dict[str, Any]
    ) -> Accepted | Refused | Failure:
        """POST ``body``; return the judged reply (``variables``: those currently held)."""
        attempt = 0
        while True:
            attempt += 1
            verdict = await self._post_once(body, variables)
            if not isinstance(verdict, Failure):
                return verdict
            if verdict.mode != "retry" or attempt > self._settings.max_retries:
                return verdict
            self._log("platform", f"retrying the POST (attempt {attempt + 1})")

    async def _post_once(
        self, body: dict[str, Any], variables: dict[str, Any]
    ) -> Accepted | Refused | Failure:
        s = self._settings
        loop = asyncio.get_running_loop()
        sent = loop.time()
        deadline = asyncio.timeout(s.reply_timeout)
        try:
            async with deadline:
                response = await self._send(body)
        except TimeoutError as exc:
            if not deadline.expired():  # raised by the app itself (in-process transport)
                self._log("error", f"HTTP failure {exc!r}: {s.error_http}")
                return Failure(s.error_http, s.on_http_error)
            self._log("reply", "no reply", latency=loop.time() - sent)
            self._log("error", f"no reply within {s.reply_timeout:g}s: {s.error_timeout}")
            return Failure(s.error_timeout, s.on_late_reply)
        except Exception as exc:  # transport failures, and app crashes under ASGITransport
            self._log("error", f"HTTP failure {exc!r}: {s.error_http}")
            return Failure(s.error_http, s.on_http_error)
        latency = loop.time() - sent
        if response.status_code != 200:
            text = response.text[:200]
            self._log("reply", text, status=response.status_code, latency=latency)
            self._log("error", f"HTTP status {response.status_code}: {s.error_http}")
            return Failure(s.error_http, s.on_http_error)
        try:
            data = decode_json(response.content)
        except ValueError as exc:
            self._log("reply", repr(response.content[:200]), status=200, latency=latency)
            self._log("error", f"reply is not JSON ({exc}): {s.error_invalid_response}")
            return Failure(s.error_invalid_response, s.on_invalid_json)
        self._log("reply", describe_reply(data), data=data, status=200, latency=latency)
        kind = response.headers.get("content-type", "")
        if not kind.startswith("application/json"):
            self._log("platform", f"reply Content-Type is {kind!r}, not application/json")
        verdict = check_reply(data, s, variables)
        if isinstance(verdict, Malformed):
            self._log("error", f"not an RT.Response: {verdict.detail}: {s.error_invalid_response}")
            return Failure(s.error_invalid_response, s.on_invalid_json)
        for note in verdict.notes:
            self._log("platform", note)
        if isinstance(verdict, Refused):
            self._log("error", f"refused {verdict.name!r}: {verdict.error}: {verdict.detail}")
        return verdict

    async def tell(self, body: dict[str, Any]) -> None:
        """POST a final request (HANGUP, unanswered status); its reply is ignored."""
        loop = asyncio.get_running_loop()
        sent = loop.time()
        try:
            async with asyncio.timeout(self._settings.reply_timeout):
                response = await self._send(body)
        except Exception as exc:  # the platform ignores this reply whatever happens
            self._log("platform", f"final POST got no reply ({type(exc).__name__}); ignored")
            return
        data: Any = None
        try:
            data = decode_json(response.content)
        except ValueError:  # not JSON, or empty
            text = describe_raw_reply(response.status_code, response.content)
        else:
            text = describe_reply(data, response.status_code)
        self._log(
            "reply",
            text,
            data=data,
            status=response.status_code,
            latency=loop.time() - sent,
            ignored=True,
        )
