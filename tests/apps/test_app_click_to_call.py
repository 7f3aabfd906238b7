"""apps/click_to_call.py: outbound calls to A, a dial-out to B, and how each attempt ended."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from app_kit import (
    SPEED,
    app_client,
    assert_ended,
    basic_auth,
    params,
    results,
    said,
    startup_messages,
    without_credentials,
)
from pydantic import ValidationError

from apps.click_to_call import A_RING, B_RING, ClickToCallApp, Outcomes, build
from rtcontrol.emulator import Callee, Transcript
from rtcontrol.testing import EmulatedPlatform, random_credentials

#: Tests that place their calls on the module's shared ``http`` platform run in its loop.
shared = pytest.mark.asyncio(loop_scope="module")

A, B = "+33611111111", "+33622222222"
#: Who answers what: A answers after 1 s; B after 2 s, and hangs up 10 s later (which
#: ends the bridge). The others do not answer, are busy, or hang up during the message.
PHONEBOOK = {
    A: Callee(answer_delay=1.0),
    B: Callee(answer_delay=2.0, hangup_after=10.0),
    "+33600000001": Callee(answer="noanswer"),
    "+33600000002": Callee(answer="busy"),
    "+33600000003": Callee(answer_delay=1.0, hangup_during="play", hangup_delay=1.0),
}
NOANSWER, BUSY, HANGS_UP = "+33600000001", "+33600000002", "+33600000003"
STATUS = {NOANSWER: "NOANSWER", BUSY: "BUSY"}


def platform(outcomes: Outcomes, over: Any = "http") -> EmulatedPlatform:
    app = build(outcomes=outcomes, **random_credentials())
    return EmulatedPlatform(app, over=over, speed=SPEED, phonebook=PHONEBOOK)


def calls_through(p: EmulatedPlatform) -> ClickToCallApp:
    """Point ``start_call`` at the REALTIME10 app the emulator created for this App.

    In production this is ``RTCONTROL_APP_HASH``; here the hash exists only once the
    platform has started, after the App was built.
    """
    app: Any = p.app
    app.settings = app.settings.model_copy(update={"app_hash": p.app_hash})
    return app  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def outcomes() -> Outcomes:
    return Outcomes()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(outcomes: Outcomes) -> AsyncIterator[EmulatedPlatform]:
    """One app and one emulator over loopback HTTP, shared by the module's calls."""
    async with platform(outcomes) as p:
        calls_through(p)
        yield p


async def click(p: EmulatedPlatform, a: str = A, b: str = B) -> Transcript:
    """What the web page does: POST /click-to-call, then wait for the call to end."""
    async with app_client(p, basic_auth(p)) as client:
        response = await client.post("/click-to-call", json={"a": a, "b": b})
    assert response.status_code == 202, response.text
    return await p.emulator.wait_request(response.json()["request_hash"])


def outcome_of(outcomes: Outcomes, t: Transcript) -> dict[str, Any]:
    [record] = [r for r in outcomes.records if r["callid"] == t.callid]
    return record


@shared
async def test_a_answers_and_is_connected_to_b(http: EmulatedPlatform, outcomes: Outcomes) -> None:
    t = await click(http)
    assert t.direction == "outbound"
    assert t.number == A
    assert t.executed == ["play", "dialout"]
    assert said(t) == ["Hello, this is Example Corp. We are connecting your call, please hold."]
    [dial] = params(t, "dialout")
    assert dial["targets"] == [{"number": B, "timeout": B_RING}]
    assert dial["cli"] == A  # B sees who is calling
    assert_ended(t, "bridge")
    assert outcome_of(outcomes, t) == {
        "callid": t.callid,
        "a": A,
        "b": B,
        "status": "HANGUP",
        "result": "connected",
        "b_status": None,
    }


@shared
@pytest.mark.parametrize(
    ("b", "told"),
    [(NOANSWER, "Your correspondent did not answer."), (BUSY, "The line is busy.")],
)
async def test_b_does_not_answer_and_a_is_told(
    http: EmulatedPlatform, outcomes: Outcomes, b: str, told: str
) -> None:
    t = await click(http, b=b)
    assert t.executed == ["play", "dialout", "play", "hangup"]
    assert results(t, "dialout") == [STATUS[b]]
    assert said(t)[-1] == told + " Please try again later. Goodbye."
    assert_ended(t, "app")
    outcome = outcome_of(outcomes, t)
    assert outcome["result"] == "b_unreachable"
    assert outcome["b_status"] == STATUS[b]


@shared
@pytest.mark.parametrize("a", [NOANSWER, BUSY])
async def test_a_does_not_answer_and_the_failure_is_recorded(
    http: EmulatedPlatform, outcomes: Outcomes, a: str
) -> None:
    t = await click(http, a=a)
    assert t.executed == []
    assert [r["call_status"] for r in t.requests] == [STATUS[a]]  # one callback, no HANGUP
    assert t.hangup_count == 0
    assert t.ended_by == "unanswered"
    assert outcome_of(outcomes, t) == {
        "callid": t.callid,
        "a": a,
        "b": B,
        "status": STATUS[a],
        "result": "a_unreachable",
        "b_status": None,
    }


@shared
async def test_a_hanging_up_during_the_message_is_abandoned(
    http: EmulatedPlatform, outcomes: Outcomes
) -> None:
    t = await click(http, a=HANGS_UP)
    assert t.executed == ["play"]
    assert_ended(t, "callee")
    assert outcome_of(outcomes, t)["result"] == "abandoned"


@shared
async def test_an_inbound_call_is_told_this_number_only_calls_out(
    http: EmulatedPlatform, outcomes: Outcomes
) -> None:
    t = await http.call(Callee())
    assert t.executed == ["play", "hangup"]
    assert said(t) == ["This number does not take calls. Goodbye."]
    assert_ended(t, "app")
    assert [r for r in outcomes.records if r["callid"] == t.callid] == []


@shared
async def test_the_route_wants_the_callback_credentials_and_numbers(
    http: EmulatedPlatform,
) -> None:
    calls = len(http.emulator.transcripts)
    async with app_client(http, None) as anonymous:
        response = await anonymous.post("/click-to-call", json={"a": A, "b": B})
        assert response.status_code == 401
    async with app_client(http, ("callr", "wrong")) as intruder:
        response = await intruder.post("/click-to-call", json={"a": A, "b": B})
        assert response.status_code == 401
    async with app_client(http, basic_auth(http)) as client:
        for body in ({"a": "0611111111", "b": B}, {"a": A}, {"a": A, "b": "+0"}):
            assert (await client.post("/click-to-call", json=body)).status_code == 422
    assert len(http.emulator.transcripts) == calls  # nobody was called


async def test_without_an_app_hash_the_route_says_so() -> None:
    async with (
        platform(Outcomes(), over="asgi") as p,
        app_client(p, basic_auth(p)) as client,
    ):
        # The test kit fills in the emulator's app hash; a deployment may lack one.
        p.app.settings = p.app.settings.model_copy(update={"app_hash": None})
        response = await client.post("/click-to-call", json={"a": A, "b": B})
    assert response.status_code == 503
    assert "RTCONTROL_APP_HASH" in response.json()["detail"]
    assert p.emulator.transcripts == []


async def test_connect_in_python_in_process() -> None:
    outcomes = Outcomes()
    async with platform(outcomes, over="asgi") as p:
        app = calls_through(p)
        request_hash = await app.connect(A, B)
        t = await p.emulator.wait_request(request_hash)
        with pytest.raises(ValidationError):
            await app.connect(A, "0622222222")
    assert t.request_hash == request_hash
    assert_ended(t, "bridge")
    assert [o["result"] for o in outcomes.records] == ["connected"]


async def test_the_test_kit_can_start_the_flow_directly() -> None:
    async with platform(Outcomes(), over="asgi") as p:
        t = await p.start_call(A, flow="click_to_call", data={"a": A, "b": B}, ring_timeout=A_RING)
    assert t.executed == ["play", "dialout"]
    assert_ended(t, "bridge")


async def test_refuses_to_start_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    without_credentials(monkeypatch)
    [failed] = await startup_messages(build())
    assert failed["type"] == "lifespan.startup.failed"
    assert "RTCONTROL_CALLBACK_PASSWORD" in failed["message"]
