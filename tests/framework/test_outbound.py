"""Outbound calls: start_call binds a flow and its data to the request hash."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import (
    App,
    Call,
    Command,
    ConfigurationError,
    Flow,
    RegistrationError,
    Target,
    hangup,
    play,
    tts,
)

from .rig import APP_HASH, OTHER_APP, FakeClient, Platform, Probe, SpyStore, flow_of


class Survey(Flow):
    name = "survey"

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    async def start(self, call: Call) -> Command:
        self.started.append(
            {"state": dict(call.state), "outbound": call.is_outbound, "hash": call.request_hash}
        )
        call.state["asked"] = True
        return play(tts("How was your order?")).then(self.done)

    async def done(self, call: Call) -> Command:
        return hangup()


async def test_start_call_binds_flow_and_data_to_the_request_hash(
    app: App, platform: Platform, fake: FakeClient, store: SpyStore
) -> None:
    survey = Survey()
    app.add_flow(survey)

    request_hash = await app.start_call(
        "+33612345678", flow="survey", data={"order": 42}, app_hash=APP_HASH, cdr_field="ORD42"
    )

    [(app_hash, target, options)] = fake.realtime_calls
    assert (app_hash, target) == (APP_HASH, "+33612345678")
    assert (options.cli, options.cdr_field) == ("BLOCKED", "ORD42")
    assert await store.get(f"rtc:req:{request_hash}") == {"flow": "survey", "data": {"order": 42}}

    line = platform.line(request_hash=request_hash, number="+33612345678")
    first = await line.start()  # UP, command_id 0, request_hash: the doc's example
    assert flow_of(first) == "survey"
    assert survey.started == [{"state": {"order": 42}, "outbound": True, "hash": request_hash}]
    # The binding is used once: the call id now routes every later callback. It is
    # deleted once the call's record (which now holds the flow and data) is durable.
    await app.settle()
    assert await store.get(f"rtc:req:{request_hash}") is None
    assert (await line.report("0"))["command"] == "hangup"
    call = await store.record(line.callid)
    assert call["state"] == {"order": 42, "asked": True}


async def test_start_call_with_a_flow_class_and_the_default_app_hash(
    make_app: Callable[..., App], serve: Callable[[App], Platform], fake: FakeClient
) -> None:
    app = make_app(app_hash=OTHER_APP)
    survey = Survey()
    app.add_flow(survey, name="survey-b")
    target = Target(number="+33612345678", timeout=20)
    platform = serve(app)  # with the memory store, only the serving process may start calls
    request_hash = await app.start_call(target, flow=Survey, data={"n": 1})
    assert fake.realtime_calls[0][:2] == (OTHER_APP, target)
    first = await platform.line(app=OTHER_APP, request_hash=request_hash).start()
    assert flow_of(first) == "survey-b"
    assert survey.started[0]["state"] == {"n": 1}


async def test_first_callback_before_start_call_returned(
    app: App, platform: Platform, fake: FakeClient, probe: Probe
) -> None:
    """The platform calls back before calls.realtime has returned the request hash to us."""
    survey = Survey()
    app.add_flow(survey)
    first_reply: list[asyncio.Task[dict[str, Any]]] = []

    async def callback_first(request_hash: str) -> None:
        line = platform.line(request_hash=request_hash)
        first_reply.append(platform.spawn(line.start()))
        # The callback looked for the binding, found nothing, and is waiting for it.
        await probe.wait(f"get:rtc:req:{request_hash}")
        assert not first_reply[0].done()

    fake.before_return = callback_first
    request_hash = await app.start_call(
        "+33612345678", flow="survey", data={"order": 7}, app_hash=APP_HASH
    )
    reply = await asyncio.wait_for(first_reply[0], 2)
    assert flow_of(reply) == "survey"
    assert survey.started == [{"state": {"order": 7}, "outbound": True, "hash": request_hash}]


async def test_default_outbound_flow(
    make_app: Callable[..., App], serve: Callable[[App], Platform]
) -> None:
    app = make_app()
    survey = Survey()
    app.add_flow(survey, outbound=APP_HASH)

    @app.on_outbound
    async def other_apps(call: Call) -> Command:
        return play(tts("function handler")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return hangup()

    platform = serve(app)
    by_flow = await app.start_call("+33612345678", app_hash=APP_HASH, data={"k": "v"})
    by_function = await app.start_call("+33612345678", app_hash=OTHER_APP)
    assert flow_of(await platform.line(request_hash=by_flow).start()) == "survey"
    assert survey.started[0]["state"] == {"k": "v"}
    reply = await platform.line(app=OTHER_APP, request_hash=by_function).start()
    assert reply["command_id"] == "1:main:bye"


async def test_outbound_callback_with_an_unbound_request_hash(app: App, platform: Platform) -> None:
    """A call started elsewhere (another tool, an expired binding) gets the outbound route."""

    @app.on_outbound
    async def greet(call: Call) -> Command:
        return hangup()

    @app.on_inbound
    async def inbound(call: Call) -> Command:
        raise AssertionError("an outbound call must not reach the inbound handler")

    reply = await platform.line(request_hash="NOTOURS1").start()
    assert reply["command"] == "hangup"


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"flow": "survey"},
            ConfigurationError,
            "start_call needs app_hash= or RTCONTROL_APP_HASH",
        ),
        ({"flow": "nope", "app_hash": APP_HASH}, RegistrationError, "no flow named 'nope'"),
        ({"flow": "bad:name", "app_hash": APP_HASH}, RegistrationError, "must be 1-64 letters"),
        ({"flow": Flow, "app_hash": APP_HASH}, RegistrationError, "Flow is not registered"),
        ({"app_hash": APP_HASH}, ConfigurationError, "no outbound flow registered"),
    ],
)
async def test_start_call_errors_dial_no_one(
    make_app: Callable[..., App],
    fake: FakeClient,
    kwargs: dict[str, Any],
    error: type[Exception],
    message: str,
) -> None:
    app = make_app()
    app.add_flow(Survey)  # registered, but not as an outbound route
    with pytest.raises(error, match=message):
        await app.start_call("+33612345678", **kwargs)
    assert fake.realtime_calls == []
