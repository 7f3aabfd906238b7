"""Flow classes: steps are methods, ``.then`` by method or name, inheritance, hooks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rtcontrol import App, Call, Command, Flow, dialout, hangup, play, read, tts, wait

from .rig import APP_HASH, OTHER_APP, FakeClient, Platform, Probe, flow_of, step_of

AGENTS = {"1": "+33100000001", "2": "+33100000002"}


class Menu(Flow):
    """The README's menu: three tries, then goodbye."""

    name = "menu"

    def ask(self, text: str) -> Command:
        prompt = tts(text + " Press 1 for sales, 2 for support.")
        return read(prompt, max_digits=1, attempts=1, timeout_ms=5000).then(self.choice)

    async def start(self, call: Call) -> Command:
        call.state["tries"] = 1
        return self.ask("Welcome to Example Corp.")

    async def choice(self, call: Call) -> Command:
        if call.digits in AGENTS:
            return dialout(AGENTS[call.digits]).then(self.goodbye)
        tries = call.state["tries"] = call.state.get("tries", 1) + 1
        if tries > 3:
            return play(tts("Sorry, we could not help you. Goodbye.")).then("goodbye")
        return self.ask("That is not a valid choice." if call.digits else "We did not hear you.")

    async def goodbye(self, call: Call) -> Command:
        return hangup()


class VipMenu(Menu):
    """Overrides one step of the base IVR and keeps the others."""

    name = "vip"

    async def choice(self, call: Call) -> Command:
        if call.digits == "9":
            return dialout("+33100000009").then(self.goodbye)
        return await super().choice(call)


async def test_menu_flow_with_retries_end_to_end(app: App, platform: Platform) -> None:
    app.add_flow(Menu, inbound=True)
    line = platform.line()

    first = await line.start()
    assert first["command"] == "read"
    assert first["command_id"] == "1:menu:choice"
    assert "Welcome to Example Corp." in first["params"]["media_id"]

    again = await line.report("TIMEOUT")  # nothing typed
    assert step_of(again) == "choice"
    assert "We did not hear you." in again["params"]["media_id"]
    again = await line.report("7")  # not a choice
    assert "That is not a valid choice." in again["params"]["media_id"]
    bye = await line.report("TIMEOUT")  # third failure: goodbye
    assert bye["command"] == "play"
    assert bye["command_id"] == "4:menu:goodbye"
    assert (await line.report("0"))["command"] == "hangup"
    assert await line.hang_up() == {}


async def test_menu_flow_dials_the_chosen_agent(app: App, platform: Platform) -> None:
    app.add_flow(Menu, inbound=True)
    line = platform.line()
    await line.start()
    reply = await line.report("2")
    assert reply["command"] == "dialout"
    assert reply["params"]["targets"] == [{"number": "+33100000002", "timeout": 30}]
    assert step_of(reply) == "goodbye"


async def test_subclass_overrides_one_step_and_keeps_the_rest(app: App, platform: Platform) -> None:
    app.add_flow(Menu, inbound=APP_HASH)
    app.add_flow(VipMenu, inbound=OTHER_APP)

    async def run(app_hash: str, digits: list[str]) -> list[dict[str, Any]]:
        line = platform.line(app=app_hash)
        replies = [await line.start()]
        for d in digits:
            replies.append(await line.report(d))
        return replies

    base, vip = await run(APP_HASH, ["9", "1"]), await run(OTHER_APP, ["9"])
    # Inherited steps behave the same (only the flow name in command_id differs)...
    assert {flow_of(r) for r in base} == {"menu"}
    assert {flow_of(r) for r in vip} == {"vip"}
    assert base[0]["params"] == vip[0]["params"]
    assert step_of(base[0]) == step_of(vip[0]) == "choice"
    # ...and only the overridden step differs: "9" is an error for the base menu,
    # a direct line for the VIP one.
    assert base[1]["command"] == "read"
    assert "That is not a valid choice." in base[1]["params"]["media_id"]
    assert vip[1]["command"] == "dialout"
    assert vip[1]["params"]["targets"][0]["number"] == "+33100000009"
    # The VIP flow still reaches the base's inherited step through super().
    assert base[2]["params"]["targets"][0]["number"] == "+33100000001"


async def test_two_subclass_flows_need_distinct_names(make_app: Callable[..., App]) -> None:
    class Sales(Menu):  # inherits name = "menu" from the base
        async def goodbye(self, call: Call) -> Command:
            return play(tts("Thanks")).then(self.start)

    app = make_app()
    app.add_flow(Menu)
    spec = app.add_flow(Sales, name="sales")
    assert spec.name == "sales"
    assert set(spec.steps) == {"start", "choice", "goodbye"}
    assert spec.steps["goodbye"].__func__ is Sales.goodbye  # type: ignore[attr-defined]
    assert spec.steps["choice"].__func__ is Menu.choice  # type: ignore[attr-defined]


async def test_flow_decorator_and_flow_instances(make_app: Callable[..., App], serve: Any) -> None:
    app = make_app()

    @app.flow(inbound=True)
    class Greeter(Flow):
        def __init__(self, greeting: str = "Hello") -> None:
            self.greeting = greeting

        async def start(self, call: Call) -> Command:
            return play(tts(self.greeting)).then("bye")

        async def bye(self, call: Call) -> Command:
            return hangup()

    # An instance carries its configuration; registered under another name for one app.
    app.add_flow(Greeter("Bonjour"), name="greeter-fr", inbound=OTHER_APP)
    platform: Platform = serve(app)

    en = await platform.line().start()
    fr = await platform.line(app=OTHER_APP).start()
    assert en["command_id"] == "1:Greeter:bye"
    assert en["params"]["media_id"].endswith("|Hello")
    assert fr["command_id"] == "1:greeter-fr:bye"
    assert fr["params"]["media_id"].endswith("|Bonjour")


class Hooked(Flow):
    name = "hooked"

    def __init__(self) -> None:
        self.events: list[str] = []

    async def start(self, call: Call) -> Command:
        return play(tts("no then"))  # its result goes to on_result

    async def on_result(self, call: Call) -> Command:
        self.events.append(f"on_result:{call.command}:{call.result}")
        return wait(30).then(self.waiting)

    async def waiting(self, call: Call) -> Command:
        self.events.append(f"waiting:interrupted={call.interrupted}")
        return hangup()

    async def on_break(self, call: Call) -> Command:
        self.events.append(f"on_break:{call.command}:interrupted={call.interrupted}")
        return hangup()

    async def on_hangup(self, call: Call) -> None:
        self.events.append(f"on_hangup:{call.status}")


async def test_flow_hooks_on_result_on_break_on_hangup(
    app: App, platform: Platform, fake: FakeClient, probe: Probe
) -> None:
    flow = Hooked()
    app.add_flow(flow, inbound=True)
    app_level: list[str] = []

    @app.on_hangup
    async def app_hangup(call: Call) -> None:
        app_level.append("app")

    line = platform.line()
    first = await line.start()
    assert first["command_id"] == "1:hooked:-"  # no step: the result goes to on_result
    waiting = await line.report("0")
    assert step_of(waiting) == "waiting"

    assert await app.interrupt(line.callid) is True  # then=None: the flow's on_break runs
    assert fake.breaks == [line.callid]
    broken = await line.report("")
    assert broken["command"] == "hangup"
    await line.hang_up()
    assert flow.events == [
        "on_result:play:0",
        "on_break:wait:interrupted=True",
        "on_hangup:HANGUP",
    ]
    assert app_level == []  # the flow's own hook wins over the app's


async def test_flows_without_hooks_fall_back_to_app_hooks(app: App, platform: Platform) -> None:
    events: list[str] = []

    class Plain(Flow):
        async def start(self, call: Call) -> Command:
            return play(tts("no then"))

        async def later(self, call: Call) -> Command:
            events.append(f"later:interrupted={call.interrupted}")
            return hangup()

    app.add_flow(Plain, inbound=True)

    @app.on_result
    async def result(call: Call) -> Command:
        events.append(f"app on_result:{call.flow}")
        return wait(30).then("later")

    @app.on_break
    async def broke(call: Call) -> Command:
        events.append(f"app on_break:{call.flow}.{call.step}")
        return wait(1).then("later")

    @app.on_hangup
    async def done(call: Call) -> None:
        events.append(f"app on_hangup:{call.flow}")

    line = platform.line()
    await line.start()
    assert step_of(await line.report("0")) == "later"
    await app.interrupt(line.callid)
    assert step_of(await line.report("")) == "later"
    assert (await line.report(""))["command"] == "hangup"
    await line.hang_up()
    assert events == [
        "app on_result:Plain",
        "app on_break:Plain.on_break",
        "later:interrupted=False",
        "app on_hangup:Plain",
    ]


async def test_break_without_any_hook_goes_to_the_step(app: App, platform: Platform) -> None:
    """No on_break anywhere: the step the command was bound to reads the early result."""
    seen: list[tuple[str, bool, str]] = []

    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("Enter your code"), max_digits=6).then(code)

    @app.step
    async def code(call: Call) -> Command:
        seen.append((call.step, call.interrupted, call.result))
        return hangup()

    line = platform.line()
    await line.start()
    await app.interrupt(line.callid, then=None)
    assert (await line.report("12"))["command"] == "hangup"
    assert seen == [("code", True, "12")]
