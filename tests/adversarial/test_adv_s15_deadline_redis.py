"""S15, kind 1 on a real Redis: one reply deadline whatever the store's round trips.

A real Redis behind a delaying TCP proxy (``tests/store/delay_proxy.py``): each round
trip is within the store's own timeout, but after ``SCRIPT FLUSH`` (every script sent
again: NOSCRIPT) or a cut connection (opened again), a callback needs more of them
than the deadline holds. The reply must still leave by the budget plus 0.5 s (plus a
margin for a busy machine), and the report, replayed, runs its step with the same
idempotency key.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis

from rtcontrol import App, Call, Command, RTRequest, read, tts
from rtcontrol.store.redis import RedisStore
from rtcontrol.testing import callback_body
from tests.store.delay_proxy import DelayProxy

pytestmark = pytest.mark.redis

CALL = 156_001
BUDGET = 1.5
HARD = BUDGET + 0.5
SLACK = 1.0
#: Each way: a round trip takes 0.9 s, within the store's 1.2 s timeout.
DELAY = 0.45


class NoBreaks:
    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return False

    async def hangup(self, callid: int) -> bool:
        return True

    async def aclose(self) -> None:
        pass


@pytest.fixture
async def proxied(redis_url: str) -> AsyncIterator[tuple[DelayProxy, str]]:
    where = urlsplit(redis_url)
    async with DelayProxy(where.hostname or "127.0.0.1", where.port or 6379) as proxy:
        yield proxy, proxy.url + (where.path or "/0")


def body(reply: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reply.body)
    return data


def req(callid: int, **fields: Any) -> RTRequest:
    return RTRequest.model_validate(callback_body(callid=callid, **fields))


def report_of(callid: int, reply: Any, result: str) -> RTRequest:
    sent = body(reply)
    return req(
        callid,
        command=sent["command"],
        command_id=sent["command_id"],
        command_result=result,
        variables=sent.get("variables", {}),
    )


@pytest.mark.parametrize("trouble", ["noscript", "reconnect"])
async def test_noscript_and_reconnects_on_a_slow_redis_share_one_deadline(
    proxied: tuple[DelayProxy, str], redis_url: str, redis_prefix: str, trouble: str
) -> None:
    proxy, url = proxied
    store = RedisStore.from_url(url, prefix=redis_prefix, timeout=1.2, connect_timeout=1.2)
    app = App(
        store=store,
        client=NoBreaks(),  # type: ignore[arg-type]
        allow_no_auth=True,
        handler_budget=BUDGET,
    )
    keys: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Code?"), max_digits=4).then(code)

    @app.step
    async def code(call: Call) -> Command:
        keys.append(call.idempotency_key)
        return read(tts("Again?"), max_digits=1).then(code)

    callid = CALL + (trouble == "reconnect")
    loop = asyncio.get_running_loop()
    try:
        await store.ping()
        r1 = await app.handle_callback(req(callid, call_status="INCOMING_CALL"))
        assert body(r1)["command"] == "read"
        proxy.delay = DELAY
        if trouble == "noscript":
            raw = redis.Redis.from_url(redis_url)
            raw.script_flush()
            raw.close()
        else:
            proxy.cut()
        began = loop.time()
        held = await asyncio.wait_for(app.handle_callback(report_of(callid, r1, "42")), 20)
        took = loop.time() - began
        assert took < HARD + SLACK, f"reply after {took:.2f}s"
        proxy.delay = 0.0
        await asyncio.sleep(DELAY * 2 + 0.2)  # chunks already delayed reach Redis
        reply = held
        for _ in range(5):
            if body(reply)["command"] != "wait":
                break
            reply = await asyncio.wait_for(app.handle_callback(report_of(callid, reply, "")), 20)
        assert body(reply)["command"] == "read", body(reply)
        assert len(set(keys)) == 1, keys
    finally:
        proxy.delay = 0.0
        await app.shutdown(timeout=10)
