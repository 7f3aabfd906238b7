"""A scripted CALLR JSON-RPC endpoint behind ``httpx.MockTransport`` (no network).

``api.then(step, ...)`` queues what the next requests get: a step is a function of the
decoded request body returning an ``httpx.Response``, or an exception to raise (as a
transport failure would). With the queue empty, it answers a plausible result (``DEFAULTS``).
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable
from typing import Any

import httpx

from rtcontrol.rpc import CallrClient

API_URL = "https://api.test/json-rpc/v1.1/"
#: Shaped like a real key (100 hex characters) and easy to spot in a leak.
API_KEY = "5ec7e7" + "ab" * 47
LOGIN = "acme-login"
PASSWORD = "pa55-Secret!"

#: A REALTIME10 App object as ``apps.*`` return it.
APP: dict[str, Any] = {
    "hash": "4346423A",
    "name": "IVR",
    "package": {"name": "REALTIME10", "type": "REALTIME10", "has_did": False},
    "p": {
        "url": "https://ivr.example.com/cb",
        "login": "u",
        "password": "p",
        "data_format": "JSON",
    },
    "did": [],
    "date_creation": "2024-01-09 17:27:55",
    "date_update": "2024-01-09 17:27:55",
}
#: A plausible result per method, used when the script is empty.
DEFAULTS: dict[str, Any] = {
    "calls.realtime": "4260XMAQ",
    "calls.realtime_break": True,
    "calls.hangup": True,
    "calls.broadcast_1": "8242D945",
    "calls.get_status_1": "ANSWER",
    "apps.create": APP,
    "apps.edit": APP,
    "apps.get_list": [APP],
    "system.get_timestamp": 1_700_000_000,
}

Step = Callable[[dict[str, Any]], httpx.Response] | BaseException


def result(value: Any) -> Step:
    """A well-formed answer echoing the request id."""
    return lambda body: httpx.Response(
        200, json={"jsonrpc": "2.0", "id": body["id"], "result": value}
    )


def rpc_error(code: int, message: str, data: Any = None) -> Step:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return lambda body: httpx.Response(
        200, json={"jsonrpc": "2.0", "id": body["id"], "error": error}
    )


def status(code: int, content: bytes = b"") -> Step:
    return lambda body: httpx.Response(code, content=content)


def raw(content: bytes, code: int = 200) -> Step:
    return lambda body: httpx.Response(
        code, content=content, headers={"Content-Type": "application/json-rpc; charset=utf-8"}
    )


def envelope(**fields: Any) -> Step:
    """A 200 answer made of exactly ``fields`` (``id=...`` omitted means: echo)."""

    def answer(body: dict[str, Any]) -> httpx.Response:
        doc = {"jsonrpc": "2.0", "id": body["id"], **fields}
        return httpx.Response(200, content=json.dumps(doc).encode())

    return answer


class FakeAPI:
    """Records every request; answers from the script, else from ``DEFAULTS``."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.script: deque[Step] = deque()

    def then(self, *steps: Step) -> FakeAPI:
        self.script.extend(steps)
        return self

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        body = json.loads(request.content)
        step = self.script.popleft() if self.script else result(DEFAULTS.get(body["method"]))
        if isinstance(step, BaseException):
            raise step
        return step(body)

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(r.content) for r in self.requests]

    def client(self, **kwargs: Any) -> CallrClient:
        options: dict[str, Any] = {
            "api_url": API_URL,
            "api_key": API_KEY,
            "backoff": 0,
            "transport": httpx.MockTransport(self.handler),
        }
        options.update(kwargs)
        return CallrClient(**options)
