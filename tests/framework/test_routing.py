"""Routing: by app hash with a fallback, by call id, and from the echoed command_id."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from rtcontrol import App, Call, Command, Flow, RegistrationError, hangup, play, read, tts

from .rig import (
    APP_HASH,
    OTHER_APP,
    FakeClient,
    FakeClock,
    Platform,
    Probe,
    SpyStore,
    flow_of,
    step_of,
)

THIRD_APP = "0011AABB"


async def test_inbound_routing_by_app_hash_with_fallback(app: App, platform: Platform) -> None:
    @app.on_inbound(APP_HASH)
    async def for_one_app(call: Call) -> Command:
        return play(tts("app one")).then(bye)

    @app.on_inbound
    async def for_the_others(call: Call) -> Command:
        return play(tts("any app")).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return hangup()

    one = await platform.line(app=APP_HASH).start()
    other = await platform.line(app=OTHER_APP).start()
    assert one["params"]["media_id"].endswith("app one")
    assert other["params"]["media_id"].endswith("any app")


async def test_flows_routed_by_app_hash(app: App, platform: Platform) -> None:
    class Sales(Flow):
        async def start(self, call: Call) -> Command:
            return hangup()

    class Support(Flow):
        async def start(self, call: Call) -> Command:
            return hangup()

    app.add_flow(Sales, inbound=[APP_HASH, OTHER_APP])
    app.add_flow(Support, inbound=True)
    assert flow_of(await platform.line(app=APP_HASH).start()) == "Sales"
    assert flow_of(await platform.line(app=OTHER_APP).start()) == "Sales"
    assert flow_of(await platform.line(app=THIRD_APP).start()) == "Support"

    class Again(Support):
        pass

    with pytest.raises(RegistrationError, match="flow 'Sales' already answers app 4346423A"):
        app.add_flow(Again, inbound=APP_HASH)
    with pytest.raises(RegistrationError, match="flow 'Support' already answers all apps"):
        app.add_flow(Again, name="again", inbound=True)


async def test_no_handler_for_the_call_gets_the_fallback(app: App, platform: Platform) -> None:
    line = platform.line()
    reply = await line.start()
    assert reply["command"] == "play"
    assert "something went wrong" in reply["params"]["media_id"]
    assert step_of(reply) == "@bye"
    assert (await line.report("0"))["command"] == "hangup"


async def test_later_callbacks_are_routed_by_call_id(app: App, platform: Platform) -> None:
    class A(Flow):
        async def start(self, call: Call) -> Command:
            return read(tts("a")).then(self.same_name)

        async def same_name(self, call: Call) -> Command:
            return play(tts(f"A got {call.digits}")).then(self.same_name)

    class B(A):
        async def same_name(self, call: Call) -> Command:
            return play(tts(f"B got {call.digits}")).then(self.same_name)

    app.add_flow(A, inbound=APP_HASH)
    app.add_flow(B, inbound=OTHER_APP)
    a, b = platform.line(app=APP_HASH), platform.line(app=OTHER_APP)
    await a.start()
    await b.start()
    # Interleaved callbacks of two calls, same step name, different flows.
    rb = await b.report("2")
    ra = await a.report("1")
    assert ra["params"]["media_id"].endswith("A got 1")
    assert rb["params"]["media_id"].endswith("B got 2")
    # Later callbacks of a call stay in its flow even if they come from another app hash.
    again = await a.report("0", app=THIRD_APP)
    assert flow_of(again) == "A"


class Menu(Flow):
    name = "menu"

    async def start(self, call: Call) -> Command:
        call.state["lang"] = "en"
        return read(tts("Press 1")).then(self.choice)

    async def choice(self, call: Call) -> Command:
        lang = call.state.get("lang", "unknown")
        return play(tts(f"{call.flow} {lang} {call.digits}")).then(self.goodbye)

    async def goodbye(self, call: Call) -> Command:
        return hangup()


class Vip(Menu):
    name = "vip"

    async def choice(self, call: Call) -> Command:
        return play(tts(f"vip {call.digits}")).then(self.goodbye)


def build(make_app: Callable[..., App], store: SpyStore, hangups: list[str]) -> App:
    app = make_app(store=store)
    app.add_flow(Menu, inbound=APP_HASH)
    app.add_flow(Vip, inbound=OTHER_APP)

    @app.on_hangup
    async def done(call: Call) -> None:
        hangups.append(call.flow)

    return app


async def test_restart_with_a_fresh_memory_store_loses_no_call(
    make_app: Callable[..., App],
    serve: Callable[[App], Platform],
    probe: Probe,
    caplog: pytest.LogCaptureFixture,
) -> None:
    hangups: list[str] = []
    old = build(make_app, SpyStore(probe, FakeClock()), hangups)
    old_platform = serve(old)
    menu_line, vip_line = old_platform.line(app=APP_HASH), old_platform.line(app=OTHER_APP)
    assert step_of(await menu_line.start()) == "choice"
    assert step_of(await vip_line.start()) == "choice"

    # The worker restarts: a new App with an empty memory store gets the next callbacks.
    new = build(make_app, SpyStore(probe, FakeClock()), hangups)
    new_platform = serve(new)
    for line in (menu_line, vip_line):
        line.platform = new_platform
        new_platform.lines[line.callid] = line

    with caplog.at_level(logging.WARNING, logger="rtcontrol"):
        menu_reply = await menu_line.report("1")
        vip_reply = await vip_line.report("2")
    # Right flow, right step; per-call state was lost with the old worker's memory.
    assert menu_reply["params"]["media_id"].endswith("menu unknown 1")
    assert menu_reply["command_id"] == "2:menu:goodbye"  # seq continues from the echo
    assert vip_reply["params"]["media_id"].endswith("vip 2")
    warnings = [r.getMessage() for r in caplog.records if r.name == "rtcontrol.app"]
    assert any(
        f"callid={menu_line.callid}: unknown to the store; resuming flow menu" in w
        for w in warnings
    )

    # From then on the new worker knows the calls: hang-up hooks run once each.
    assert (await menu_line.report("0"))["command"] == "hangup"
    await menu_line.hang_up()
    await vip_line.hang_up()
    assert sorted(hangups) == ["menu", "vip"]


async def test_restart_recovers_function_style_steps(
    make_app: Callable[..., App], serve: Callable[[App], Platform]
) -> None:
    app = make_app()
    digits: list[str | None] = []

    @app.step
    async def choice(call: Call) -> Command:
        digits.append(call.digits)
        return hangup()

    line = serve(app).line()
    line.current = {"command": "read", "command_id": "5:main:choice", "variables": {"v": 1}}
    reply = await line.report("9")
    assert digits == ["9"]
    assert reply == {
        "command": "hangup",
        "command_id": "6:main:-",
        "params": {},
        "variables": {"v": 1},
    }


@pytest.mark.parametrize("command_id", [5, "5", "3:ghost:choice", "garbage:id", "7:-:-"])
async def test_unknown_call_with_an_unroutable_command_id_gets_the_fallback_then_hangs_up(
    app: App,
    platform: Platform,
    command_id: int | str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        raise AssertionError("not a first callback")

    line = platform.line()
    line.current = {"command": "play", "command_id": command_id, "variables": {"keep": 1}}
    with caplog.at_level(logging.ERROR, logger="rtcontrol"):
        reply = await line.report("0")
    assert reply["command"] == "play"
    assert "something went wrong" in reply["params"]["media_id"]
    assert reply["variables"] == {"keep": 1}
    assert any("names no flow" in r.getMessage() for r in caplog.records)
    # The apology ends: the call is hung up (not apologised to forever).
    assert (await line.report("0"))["command"] == "hangup"


async def test_unknown_step_of_a_known_flow_gets_the_fallback(app: App, platform: Platform) -> None:
    app.add_flow(Menu, inbound=True)
    line = platform.line()
    line.current = {"command": "read", "command_id": "4:menu:removed_step", "variables": {}}
    reply = await line.report("1")
    assert step_of(reply) == "@bye"
    assert (await line.report("0"))["command"] == "hangup"


async def test_first_callback_of_an_unknown_call_creates_it(
    app: App, platform: Platform, store: SpyStore
) -> None:
    app.add_flow(Menu, inbound=True)
    line = platform.line()
    assert await store.get(f"rtc:{{{line.callid}}}:call") is None
    await line.start()
    record = await store.record(line.callid)
    assert record["flow"] == "menu"
    assert record["state"] == {"lang": "en"}
    assert record["current"] == "1:menu:choice"


async def test_outbound_flow_and_fake_client_untouched_by_inbound(
    app: App, platform: Platform, fake: FakeClient
) -> None:
    app.add_flow(Menu, inbound=True)
    await platform.line().start()
    assert fake.realtime_calls == []
    assert fake.breaks == []
