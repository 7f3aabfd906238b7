"""The test kit drives the emulator through its control API (``/control/v1``), as the CLI
and the dev page do: the app, the phonebook, inbound calls and final transcripts go
through ``platform.control``, a ``ControlClient`` (in-process for ``over="asgi"``, on the
platform's loopback server for ``over="http"``). Waits are on the call's own events.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from rtcontrol import App, Call, Command, ControlError, hangup, play, read, tts, wait
from rtcontrol.emulator import Callee, ControlClient, ControlEvent, Press
from rtcontrol.testing import CallResult, EmulatedPlatform

SPEED = 400.0
AGENT = "+33100000001"
PROMPT = read(tts("Press 1 for news"), max_digits=1)


def news_app() -> App:
    app = App()

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return PROMPT.then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        if call.digits == "1":
            return play(tts("No news today.")).then(hold)
        return hangup()

    @app.step
    async def hold(call: Call) -> Command:
        return wait(30).then(hold)

    @app.on_outbound
    async def greet(call: Call) -> Command:
        return play(tts("Hello")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return hangup()

    return app


@pytest.fixture
def requests_sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every control API request any ControlClient sends, as (method, path)."""
    sent: list[tuple[str, str]] = []
    real = ControlClient._request

    async def spy(self: ControlClient, method: str, path: str, body: Any = None) -> Any:
        sent.append((method, path))
        return await real(self, method, path, body)

    monkeypatch.setattr(ControlClient, "_request", spy)
    return sent


@pytest.mark.parametrize("over", ["asgi", "http"])
async def test_the_kit_places_calls_and_sets_numbers_through_the_control_api(
    over: Any, requests_sent: list[tuple[str, str]]
) -> None:
    agent = Callee(answer_delay=1, hangup_after=2, name="agent")
    async with EmulatedPlatform(
        news_app(), over=over, speed=SPEED, phonebook={AGENT: agent}, strict=True
    ) as p:
        assert requests_sent == [("POST", "apps"), ("PUT", f"phonebook/{AGENT}")]
        assert [a.hash for a in await p.control.apps()] == [p.app_hash]

        handle = await p.start(Callee(actions=[Press("2")]), cli_number="+33600000042")
        assert requests_sent[-1] == ("POST", "calls")
        t = await handle.ended()
        assert requests_sent[-1] == ("GET", f"calls/{handle.callid}/transcript")
        assert t.ran == [PROMPT, hangup()]

        listed = {c.callid: c for c in await p.control.calls()}  # GET /calls: the same emulator
        assert listed[handle.callid].from_ == "+33600000042"
        assert (listed[handle.callid].state, listed[handle.callid].ended_by) == ("ended", "app")

        called = Callee(answer_delay=0, name="customer")
        out = await p.start_call("+33600000009", called)
        assert ("PUT", "phonebook/+33600000009") in requests_sent
        assert out.said == ["Hello"]
        book = await p.control.phonebook()
        assert book.numbers == {AGENT: agent, "+33600000009": called}
        assert p.emulator.phonebook == book.numbers  # what the emulator dials


@pytest.mark.parametrize("over", ["asgi", "http"])
async def test_the_final_transcript_comes_over_the_api_equal_to_the_emulators(over: Any) -> None:
    async with EmulatedPlatform(news_app(), over=over, speed=SPEED, strict=True) as p:
        handle = await p.start(Callee(actions=[Press("1")], hangup_after=20))
        t = await handle.ended()
    assert isinstance(t, CallResult)
    assert t.events is not handle.transcript.events  # read back from JSON, not shared
    assert t == CallResult.of(handle.transcript)
    assert t.render() == handle.transcript.render()
    assert t.said == ["Press 1 for news", "No news today."]
    assert t.ended_by == "callee"


async def test_an_http_platform_serves_the_control_api_and_drives_a_live_callee() -> None:
    async with EmulatedPlatform(news_app(), over="http", speed=1.0, strict=True) as p:
        info = await p.control.info()
        assert p.control.base_url.startswith("http://127.0.0.1:")
        assert info.control_url == p.control.base_url + "/"
        assert info.rpc_url == p.app.client.api_url  # JSON-RPC and control: one server
        async with httpx.AsyncClient(trust_env=False) as raw:
            assert (await raw.get(info.control_url + "apps")).json()[0]["hash"] == p.app_hash

        handle = await p.start("live")
        events: list[ControlEvent] = []

        async def follow() -> None:  # the call's SSE stream, live over loopback
            async for event in p.control.events(handle.callid):
                events.append(event)

        follower = asyncio.create_task(follow())
        await handle.wait_for("read")
        heard = await p.control.press(handle.callid, "1")
        assert (heard.heard, heard.running) == (True, "read")
        await handle.wait_for("wait")  # on hold after the news
        assert await p.control.hang_up(handle.callid) is True
        t = await handle.ended()
        async with asyncio.timeout(30):
            await follower
    assert t.ran == [PROMPT, play(tts("No news today.")), wait(30)]
    assert t.ended_by == "callee"
    assert events[0].type == "call.started"
    assert events[-1].type == "call.ended"
    assert events[-1].data["ended_by"] == "callee"
    assert any(e.type == "callee" and "keypad '1'" in e.data["text"] for e in events)


async def test_a_refused_call_raises_the_control_apis_error() -> None:
    async with EmulatedPlatform(news_app(), speed=SPEED) as p:
        with pytest.raises(ControlError) as refused:
            await p.start(Callee(), number="0612345678")
        assert (refused.value.status, refused.value.code) == (400, "PROPERTY_VALUE_ERROR")
        with pytest.raises(ControlError) as unknown:
            await p.call(Callee(), app_hash="ZZZZZZZZ")
        assert unknown.value.status == 400
        assert await p.control.calls() == []
    with pytest.raises(RuntimeError, match="async with"):
        EmulatedPlatform(news_app()).control  # noqa: B018 - the property raises


@pytest.mark.parametrize("over", ["asgi", "http"])
async def test_a_call_awaited_after_the_platform_closed_still_ends(over: Any) -> None:
    async with EmulatedPlatform(news_app(), over=over, speed=SPEED) as p:
        handle = await p.start(Callee(actions=[Press("1")]))
        await handle.wait_for("wait")  # on hold, forever
    assert p.control.closed
    t = await handle.ended()  # the control API is gone: the emulator's own record
    assert t.ended_by == "shutdown"
    assert t.executed == ["read", "play", "wait"]
