"""The benchmarked apps: four baselines and rtcontrol, on the same route, body and reply.

Every app answers ``POST /cb`` with the same kind of RT.Response: a ``read`` command
whose result goes to step ``choice``, echoing ``variables``. Each is servable by
uvicorn through a factory (``uvicorn --factory --app-dir bench apps:make_b3``):

* ``B0`` bare ASGI, drains the body and returns a fixed reply: the physical limit;
* ``B1`` bare ASGI plus ``json.loads`` of the body (in-process reference only);
* ``B2`` Starlette: ``await request.json()`` and ``JSONResponse``;
* ``B3`` plain FastAPI endpoint with rtcontrol's own pydantic models
  (:class:`~rtcontrol.protocol.RTRequest` in, :class:`~rtcontrol.protocol.RTResponse` out);
* ``F``  rtcontrol's callback route: Basic auth, routing by app hash, memory store,
  a trivial flow that answers every step with the same ``read``;
* ``FR`` the same with the Redis store (``RTCONTROL_BENCH_REDIS_URL``).

The reply command is built once at import in every app: building commands is the
user's code, not the framework's, and the baselines do not build theirs either.
"""

from __future__ import annotations

import json
import os
from typing import Any

from rtcontrol import App, Flow, read, tts
from rtcontrol.protocol import RTRequest, RTResponse
from rtcontrol.store import MemoryStore

ROUTE = "/cb"
APP_HASH = "4346423A"
FLOW = "Bench"
LOGIN = "callr-bench"
PASSWORD = "s3cret-bench-password"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
REDIS_URL_ENV = "RTCONTROL_BENCH_REDIS_URL"

#: The command every app answers with (rtcontrol's builder; the baselines use its params).
ASK = read(tts("Please enter your age, then press hash."), max_digits=2).then("choice")
PARAMS: dict[str, Any] = ASK.wire_params()
VARIABLES = {"step": "ask_age"}
#: B0's fixed reply: what the other apps send for a typical step.
FIXED_REPLY = json.dumps(
    {"command": "read", "command_id": "2:Bench:choice", "params": PARAMS, "variables": VARIABLES},
    separators=(",", ":"),
).encode()

_JSON_HEADERS = [(b"content-type", b"application/json")]


# ----------------------------------------------------------------------- B0 / B1


async def _drain(receive: Any) -> bytes:
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


async def _lifespan(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _send_json(send: Any, body: bytes) -> None:
    headers = [*_JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def bare_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """B0: drain the body, send a fixed reply."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _drain(receive)
    await _send_json(send, FIXED_REPLY)


async def bare_json(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """B1: B0 plus ``json.loads`` of the body and ``json.dumps`` of an echoing reply."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    data = json.loads(await _drain(receive))
    reply = {
        "command": "read",
        "command_id": data["command_id"],
        "params": PARAMS,
        "variables": data["variables"],
    }
    await _send_json(send, json.dumps(reply, separators=(",", ":")).encode())


def make_b0() -> Any:
    return bare_asgi


def make_b1() -> Any:
    return bare_json


# ----------------------------------------------------------------------- B2


def make_b2() -> Any:
    """B2: Starlette, ``request.json()`` and ``JSONResponse``."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def cb(request: Request) -> JSONResponse:
        data = await request.json()
        return JSONResponse(
            {
                "command": "read",
                "command_id": data["command_id"],
                "params": PARAMS,
                "variables": data["variables"],
            }
        )

    return Starlette(routes=[Route(ROUTE, cb, methods=["POST"])])


# ----------------------------------------------------------------------- B3


def make_b3() -> Any:
    """B3: the endpoint written by hand with FastAPI and the same models."""
    from fastapi import FastAPI

    api = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @api.post(ROUTE, response_model=RTResponse)
    async def cb(req: RTRequest) -> RTResponse:
        return RTResponse(
            command="read", command_id=req.command_id, params=PARAMS, variables=req.variables
        )

    return api


# ----------------------------------------------------------------------- F / FR


class Bench(Flow):
    """The trivial flow: ask, record the answer in the call's state, ask again."""

    name = FLOW

    async def start(self, call: Any) -> Any:
        return ASK

    async def choice(self, call: Any) -> Any:
        call.state["age"] = call.digits
        return ASK

    async def on_hangup(self, call: Any) -> None:
        return None


def make_rtcontrol(store_url: str | None = None) -> App:
    """The rtcontrol App of F (memory store) or FR (``store_url`` = a Redis URL)."""
    overrides: dict[str, Any] = {"callback_login": LOGIN, "callback_password": PASSWORD}
    if store_url is None:
        app = App(store=MemoryStore(), store_url="memory://", **overrides)
    else:
        app = App(store_url=store_url, **overrides)
    app.add_flow(Bench, inbound=APP_HASH)
    return app


def redis_url() -> str:
    return os.environ.get(REDIS_URL_ENV) or DEFAULT_REDIS_URL


def redis_available() -> bool:
    """True once ``rtcontrol/store/redis.py`` exists (it is being written separately)."""
    try:
        import rtcontrol.store.redis  # noqa: F401
    except ImportError:
        return False
    return True


def make_f() -> Any:
    return make_rtcontrol().asgi(path=ROUTE)


def make_fr() -> Any:
    return make_rtcontrol(redis_url()).asgi(path=ROUTE)


FACTORIES = {
    "B0": make_b0,
    "B1": make_b1,
    "B2": make_b2,
    "B3": make_b3,
    "F": make_f,
    "FR": make_fr,
}
