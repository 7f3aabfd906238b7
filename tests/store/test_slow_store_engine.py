"""K10 and K12 through the engine: a slow store is not a dead store, and the reply
(store write included) leaves inside the budget.

A real Redis behind a TCP proxy that delays every chunk by 0.3 s each way (0.6 s a
round trip, as measured in the soak that found the fault): two round trips fit the
5 s deadline, so handlers must run and replies must be real commands, not replay
holds. No mock: the store, the proxy and Redis are real, on loopback.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from delay_proxy import DelayProxy

from rtcontrol import App, Call, Command, RTRequest, hangup, read, tts
from rtcontrol.store.redis import RedisStore
from rtcontrol.testing import callback_body

pytestmark = pytest.mark.redis

CALLID = 880_001


@pytest.fixture
async def slow_url(redis_url: str) -> AsyncIterator[tuple[DelayProxy, str]]:
    where = urlsplit(redis_url)
    async with DelayProxy(where.hostname or "127.0.0.1", where.port or 6379, delay=0.3) as proxy:
        yield proxy, proxy.url + (where.path or "/0")


class NoBreaks:
    """The call control of a platform whose command cannot be broken."""

    async def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:  # noqa: ASYNC109
        return False

    async def hangup(self, callid: int) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def body(reply: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(reply.body)
    return data


async def test_a_slow_store_still_runs_every_step_inside_the_deadline(
    slow_url: tuple[DelayProxy, str], redis_prefix: str
) -> None:
    _, url = slow_url
    store = RedisStore.from_url(url, prefix=redis_prefix)  # default caps: 1 s, 2 s to connect
    app = App(store=store, allow_no_auth=True)
    ran: list[str] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        ran.append("start")
        call.state["n"] = 1
        return read(tts("Code?"), max_digits=4).then(code)

    @app.step
    async def code(call: Call) -> Command:
        ran.append(f"code:{call.digits}:{call.state['n']}")
        return hangup()

    await store.ping()  # start-up opens a connection: it stays warm
    loop = asyncio.get_running_loop()
    try:
        took = []
        began = loop.time()
        first = await app.handle_callback(
            RTRequest.model_validate(callback_body(callid=CALLID, call_status="INCOMING_CALL"))
        )
        took.append(loop.time() - began)
        assert body(first)["command"] == "read"  # a real reply, not a replay hold
        began = loop.time()
        second = await app.handle_callback(
            RTRequest.model_validate(
                callback_body(
                    callid=CALLID,
                    command="read",
                    command_id=body(first)["command_id"],
                    command_result="42",
                )
            )
        )
        took.append(loop.time() - began)
        assert body(second)["command"] == "hangup"
        assert ran == ["start", "code:42:1"]
        # Two round trips of about 0.6 s each: well inside the budget, store write included.
        assert all(1.0 <= t < app.settings.handler_budget for t in took), took
    finally:
        await app.shutdown(timeout=5)


async def test_a_slow_step_on_a_slow_store_replies_inside_the_budget(
    slow_url: tuple[DelayProxy, str], redis_prefix: str
) -> None:
    """K12: the handler's deadline keeps time for the write that follows it."""
    _, url = slow_url
    store = RedisStore.from_url(url, prefix=redis_prefix)
    app = App(store=store, client=NoBreaks(), allow_no_auth=True, handler_budget=3.0)  # type: ignore[arg-type]
    release = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await release.wait()  # slower than any budget
        return hangup()

    await store.ping()
    loop = asyncio.get_running_loop()
    try:
        began = loop.time()
        held = await app.handle_callback(
            RTRequest.model_validate(callback_body(callid=CALLID + 1, call_status="INCOMING_CALL"))
        )
        elapsed = loop.time() - began
        assert body(held)["command"] == "wait"  # the hold, not a late reply
        # inside the budget, or its half-second margin for a write the store slowed
        assert elapsed < app.settings.handler_budget + 0.5, elapsed
    finally:
        release.set()
        await app.shutdown(timeout=10)
