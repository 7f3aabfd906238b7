"""The adapters serve any ``ServedApp`` (a ``CallbackHandler`` plus settings, store,
metrics, start-up and shutdown), not only ``App``: HTTP <-> RTRequest/Reply, nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pytest
from fastapi import FastAPI

from rtcontrol.adapters import ServedApp, create_asgi
from rtcontrol.adapters.fastapi import callback_router
from rtcontrol.core.ports import Reply
from rtcontrol.protocol import RTRequest
from rtcontrol.settings import Settings

from .conftest import AUTH, LOGIN, PASSWORD, client_for, encode, rt_request
from .test_callback_path import lifespan_startup


@dataclass
class FakeStore:
    shared: bool = False
    pings: int = 0

    async def ping(self) -> None:
        self.pings += 1


class FakeMetrics:
    def render(self) -> bytes:
        return b"# fake\n"


HANGUP = Reply(b'{"command":"hangup","command_id":"1","params":{}}')


@dataclass
class FakeHandler:
    """Answers with a scripted Reply; records what it was given."""

    reply: Reply = HANGUP
    fail: bool = False
    safe_fails: bool = False
    settings: Settings = field(
        default_factory=lambda: Settings(callback_login=LOGIN, callback_password=PASSWORD)
    )
    store: FakeStore = field(default_factory=FakeStore)
    metrics: FakeMetrics = field(default_factory=FakeMetrics)
    seen: list[RTRequest] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    received_at: list[float | None] = field(default_factory=list)

    async def handle_callback(
        self, request: RTRequest, *, received_at: float | None = None
    ) -> Reply:
        self.seen.append(request)
        self.received_at.append(received_at)
        if self.fail:
            raise RuntimeError("bug in the handler")
        return self.reply

    def safe_reply(self, request: RTRequest) -> Reply:
        self.events.append(f"safe_reply {request.callid}")
        if self.safe_fails:
            raise RuntimeError("bug in the fallback too")
        return Reply(b'{"command":"play","command_id":"0","params":{}}')

    async def startup(self) -> None:
        self.events.append("startup")

    async def shutdown(self) -> None:
        self.events.append("shutdown")


def test_the_fake_is_a_served_app() -> None:
    served: ServedApp = FakeHandler()  # the annotation is the check, for a type checker
    assert served.settings.max_body > 0


@pytest.mark.parametrize("status", [200, 503])
async def test_reply_status_and_body_are_sent_as_they_are(status: int) -> None:
    handler = FakeHandler(reply=Reply(b'{"x":1}', status))
    async with client_for(create_asgi(handler)) as c:
        response = await c.post("/callback", content=encode(rt_request(callid=31)), headers=AUTH)
    assert response.status_code == status
    assert response.content == b'{"x":1}'
    assert response.headers["content-type"] == "application/json"
    assert [r.callid for r in handler.seen] == [31]


async def test_mounted_router_sends_the_reply_status_too() -> None:
    existing = FastAPI()
    existing.include_router(callback_router(FakeHandler(reply=Reply(b"{}", 503))))
    async with client_for(existing) as c:
        response = await c.post("/callback/", content=encode(rt_request()), headers=AUTH)
    assert (response.status_code, response.content) == (503, b"{}")


async def test_a_handler_bug_gets_safe_reply_and_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler = FakeHandler(fail=True)
    caplog.set_level(logging.ERROR)
    async with client_for(create_asgi(handler)) as c:
        response = await c.post("/callback", content=encode(rt_request(callid=77)), headers=AUTH)
    assert response.status_code == 200
    assert response.json()["command"] == "play"
    assert handler.events == ["safe_reply 77"]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    assert "callid=77" in errors[0].getMessage()


async def test_a_bug_in_safe_reply_too_still_answers_200(caplog: pytest.LogCaptureFixture) -> None:
    handler = FakeHandler(fail=True, safe_fails=True)
    caplog.set_level(logging.ERROR)
    async with client_for(create_asgi(handler)) as c:
        response = await c.post("/callback", content=encode(rt_request(callid=78)), headers=AUTH)
    assert (response.status_code, response.content) == (200, b"{}")
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 2


async def test_lifespan_calls_startup_then_shutdown() -> None:
    handler = FakeHandler()
    answer, shutdown = await lifespan_startup(create_asgi(handler))
    assert answer["type"] == "lifespan.startup.complete"
    assert handler.events == ["startup"]
    await shutdown()
    assert handler.events == ["startup", "shutdown"]


async def test_operational_routes_use_the_protocol() -> None:
    handler = FakeHandler()
    async with client_for(create_asgi(handler)) as c:
        health = await c.get("/healthz")
        metrics = await c.get("/metrics")
    assert health.json() == {"status": "ok", "store": "ok"}
    assert handler.store.pings == 1
    assert metrics.text == "# fake\n"


def test_compatibility_import_paths() -> None:
    from rtcontrol import endpoint, web
    from rtcontrol.adapters import endpoint as new_endpoint
    from rtcontrol.adapters import fastapi as new_fastapi

    for name in web.__all__:
        assert getattr(web, name) is getattr(new_fastapi, name), name
    for name in endpoint.__all__:
        assert getattr(endpoint, name) is getattr(new_endpoint, name), name
    for name in ("require_callback_auth", "callback_router", "create_asgi"):
        assert name in web.__all__


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("t=1764500000.123", 1764500000.123),  # nginx's $msec
        ("1764500000123", 1764500000.123),  # milliseconds
        ("t=1764500000123456", 1764500000.123456),  # microseconds
        ("t=nope", None),
        ("t=-5", None),
        ("t=nan", None),
        ("", None),
    ],
)
async def test_the_proxys_request_start_reaches_the_handler(
    header: str, expected: float | None
) -> None:
    handler = FakeHandler()
    async with client_for(create_asgi(handler)) as c:
        await c.post(
            "/callback",
            content=encode(rt_request(callid=32)),
            headers={**AUTH, "X-Request-Start": header},
        )
        await c.post("/callback", content=encode(rt_request(callid=33)), headers=AUTH)
    assert handler.received_at[1] is None  # no header: not known
    if expected is None:
        assert handler.received_at[0] is None
    else:
        assert handler.received_at[0] == pytest.approx(expected, abs=1e-6)
