"""Fixtures of the HTTP-surface tests: an App whose handlers count their calls,
its real ASGI app, and an in-process client.

Every refusal the callback route gives must be one of a few fixed messages
(``assert_refusal``): that is how "no error body echoes the input" is checked
everywhere, on top of looking for the marker strings a test planted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from rtcontrol import App, Call, Command, hangup, play, tts
from rtcontrol.protocol import RTRequest
from rtcontrol.settings import Settings
from rtcontrol.store import MemoryStore
from rtcontrol.testing import callback_body

LOGIN = "callr-app"
PASSWORD = "S3cret-Passw0rd"
CALLBACK = "/callback"
#: Said by the inbound handler: checks that Unicode survives the reply.
TTS_TEXT = "Bienvenue à l'été ☎ 🎉 — 日本語"
#: Status codes the callback route may answer with, whatever it is sent.
ALLOWED = frozenset({200, 400, 401, 413, 415, 422})
#: The only refusal messages of the callback route (plus "invalid field: <field>").
MESSAGES = frozenset(
    {
        "authentication required",
        "content type must be application/json",
        "invalid Content-Length",
        "body is not valid JSON",
        "body must be a JSON object",
        "client disconnected",
    }
)
_FIELD_MESSAGE = re.compile(r"invalid field: (\w+)")
_TOO_LARGE = re.compile(r"body larger than (\d+) bytes")


def basic(login: str | bytes, password: str | bytes, scheme: str = "Basic") -> str:
    raw = (login if isinstance(login, bytes) else login.encode()) + b":"
    raw += password if isinstance(password, bytes) else password.encode()
    return f"{scheme} {base64.b64encode(raw).decode()}"


AUTH = {"Authorization": basic(LOGIN, PASSWORD)}


def rt_request(**fields: Any) -> dict[str, Any]:
    """A valid first RT.Request of an inbound call; ``fields`` override or add keys."""
    return callback_body(**fields)


def encode(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def is_valid(body: bytes) -> bool:
    """The independent oracle: does the protocol model accept these bytes?"""
    try:
        RTRequest.model_validate_json(body)
    except ValueError:
        return False
    return True


def assert_refusal(
    response: httpx.Response, status: int | Iterable[int], markers: Iterable[str] = ()
) -> str:
    """A short, fixed JSON error that echoes nothing of the request. Returns the message."""
    statuses = {status} if isinstance(status, int) else set(status)
    assert response.status_code in statuses, (response.status_code, response.text)
    assert response.headers["content-type"] == "application/json"
    payload = response.json()
    assert isinstance(payload, dict)
    assert list(payload) == ["error"], payload
    message = payload["error"]
    assert isinstance(message, str)
    field_name = _FIELD_MESSAGE.fullmatch(message)
    too_large = _TOO_LARGE.fullmatch(message)
    assert (
        message in MESSAGES
        or (field_name is not None and field_name.group(1) in RTRequest.model_fields)
        or too_large is not None
    ), message
    assert len(response.content) < 100
    for marker in markers:
        assert marker not in response.text, marker
    return message


@dataclass
class Counter:
    """Handler invocations, by hook."""

    calls: list[str] = field(default_factory=list)
    requests: list[Call] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.calls)

    def hit(self, name: str, call: Call) -> None:
        self.calls.append(name)
        self.requests.append(call)


def counting_app(counter: Counter, store: MemoryStore | None = None, **settings: Any) -> App:
    """An App with every kind of handler registered, each counting into ``counter``.

    Its settings are exactly ``settings`` (plus the test credentials): the
    environment is not read, so the app can also be built at import time.
    """
    settings.setdefault("callback_login", LOGIN)
    settings.setdefault("callback_password", PASSWORD)
    app = App(settings=Settings(**settings), store=store if store is not None else MemoryStore())

    def reply(name: str, command: Command) -> Any:
        async def handler(call: Call) -> Command:
            counter.hit(name, call)
            return command

        handler.__name__ = name
        return handler

    app.on_inbound(reply("inbound", play(tts(TTS_TEXT))))
    app.on_outbound(reply("outbound", hangup()))
    app.on_result(reply("result", hangup()))
    app.on_break(reply("break", hangup()))

    async def on_hangup(call: Call) -> None:
        counter.hit("hangup", call)

    app.on_hangup(on_hangup)
    return app


def client_for(api: FastAPI) -> httpx.AsyncClient:
    """An in-process client; an exception escaping the app fails the test."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://rt.test")


class LoopClient:
    """A synchronous client over one private event loop, for hypothesis tests."""

    def __init__(self, api: FastAPI) -> None:
        self._runner = asyncio.Runner()
        self._client = client_for(api)
        # engine v2 runs on_hangup after the reply: settle, so each post's handlers
        # have run when it returns
        self._settle = getattr(getattr(api.state, "rtcontrol", None), "settle", None)

    def post(self, content: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
        request_headers = {**AUTH, "Content-Type": "application/json", **(headers or {})}
        response = self._runner.run(
            self._client.post(CALLBACK, content=content, headers=request_headers)
        )
        if self._settle is not None:
            self._runner.run(self._settle())
        return response

    def __enter__(self) -> LoopClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._runner.run(self._client.aclose())
        self._runner.close()


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No RTCONTROL_* variable of the machine leaks into a test's settings."""
    for name in list(os.environ):
        if name.startswith(("RTCONTROL_", "CALLR_")) or name == "WEB_CONCURRENCY":
            monkeypatch.delenv(name)


@pytest.fixture
def counter() -> Counter:
    return Counter()


@pytest.fixture
def app(counter: Counter) -> App:
    return counting_app(counter)


@pytest.fixture
def api(app: App) -> FastAPI:
    return app.asgi()


@pytest.fixture
async def client(api: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(api) as c:
        yield c


async def post(
    client: httpx.AsyncClient,
    body: bytes | dict[str, Any],
    headers: dict[str, str] | None = None,
    *,
    auth: bool = True,
) -> httpx.Response:
    """POST to the callback route: JSON content type and valid credentials by default."""
    content = encode(body) if isinstance(body, dict) else body
    request_headers = {"Content-Type": "application/json"}
    if auth:
        request_headers.update(AUTH)
    request_headers.update(headers or {})
    return await client.post(CALLBACK, content=content, headers=request_headers)
