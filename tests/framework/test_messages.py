"""Messages that point at the fix: each input that used to fail with a puzzling message
gets the exact message that says what to change."""

from __future__ import annotations

import logging

import pytest

from rtcontrol import (
    App,
    Call,
    Command,
    CommandError,
    ConfigurationError,
    Flow,
    RegistrationError,
    Settings,
    hangup,
    play,
    read,
    tts,
)
from rtcontrol.emulator import Callee, Press
from rtcontrol.media import TTS_MAX_CHARS
from rtcontrol.testing import EmulatedPlatform, random_credentials

SPEED = 400.0

# ------------------------------------------------------------- a forgotten .then(...)


class Forgetful(Flow):
    name = "menu"

    async def start(self, call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1)  # .then(self.choice) forgotten

    async def choice(self, call: Call) -> Command:
        return hangup()


def forgotten(command: str, flow: str) -> str:
    return (
        f"FlowError: flow {flow}: the result of a {command} came back, but that {command} "
        "was sent without .then(step) and no on_result hook is registered. Send it to the "
        f"step that reads its result: `return {command}(...).then(self.next_step)` "
        "(`.then(next_step)` in function style); or register `@app.on_result` "
        "(`async def on_result(self, call)` in a Flow) to receive such results; answering "
        "with the fallback"
    )


async def errors_of(app: App, caplog: pytest.LogCaptureFixture) -> list[str]:
    caplog.set_level(logging.ERROR, "rtcontrol.handler")
    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("1")]))
    assert "play" in t.executed  # the caller heard the fallback apology
    return [r.getMessage().partition(": ")[2] for r in caplog.records]


async def test_a_forgotten_then_in_a_flow_says_how_to_fix_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(**random_credentials())
    app.add_flow(Forgetful, inbound=True)
    assert forgotten("read", "menu") in await errors_of(app, caplog)


async def test_a_forgotten_then_in_function_style_names_its_command(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App(**random_credentials())

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return play(tts("Hello"))

    assert forgotten("play", "main") in await errors_of(app, caplog)


async def test_with_on_result_the_result_goes_there() -> None:
    app = App(**random_credentials())
    seen: list[str] = []

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return play(tts("Hello"))

    @app.on_result
    async def result(call: Call) -> Command:
        seen.append(call.command)
        return hangup()

    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee())
    assert seen == ["play"]
    assert t.executed == ["play", "hangup"]


# ------------------------------------------------------------------ duplicate flow names


class Menu(Flow):
    name = "menu"

    async def start(self, call: Call) -> Command:
        return hangup()


class VipMenu(Menu):
    async def start(self, call: Call) -> Command:  # overrides one step, keeps the name
        return play(tts("Welcome, VIP"))


def test_a_subclass_keeping_its_parents_name_is_told_to_set_its_own() -> None:
    app = App(**random_credentials())
    app.add_flow(Menu)
    with pytest.raises(RegistrationError) as info:
        app.add_flow(VipMenu)
    assert str(info.value) == (
        "a flow named 'menu' is already registered (class Menu): VipMenu inherits "
        "`name = 'menu'` from Menu, and each flow needs its own name (it is written in "
        'every command_id). Set `name = "vip_menu"` on VipMenu, or pass '
        "add_flow(VipMenu, name=...)"
    )
    app.add_flow(VipMenu, name="vip_menu")  # the fix works


def test_other_duplicate_names_say_what_to_change() -> None:
    app = App(**random_credentials())
    app.add_flow(Menu)
    with pytest.raises(RegistrationError) as info:
        app.add_flow(Menu)
    assert str(info.value) == (
        "a flow named 'menu' is already registered (class Menu): register each flow "
        "once, or the second under another name=..."
    )
    with pytest.raises(RegistrationError) as info:
        app.add_flow(VipMenu, name="menu")
    assert str(info.value) == (
        "a flow named 'menu' is already registered (class Menu): pass another name to "
        "add_flow(VipMenu, name=...)"
    )

    class Main(Flow):
        name = "main"

        async def start(self, call: Call) -> Command:
            return hangup()

    with pytest.raises(RegistrationError) as info:
        app.add_flow(Main)
    assert str(info.value) == (
        "a flow named 'main' is already registered (the function-style handlers "
        "(@app.on_inbound, @app.step...)): 'main' is reserved for them; set "
        '`name = "main_2"` on test_other_duplicate_names_say_what_to_change.<locals>.Main'
    )


# ------------------------------------------------------------------------- settings


def test_a_misspelled_keyword_is_named_as_written_with_the_closest_setting() -> None:
    with pytest.raises(ConfigurationError) as info:
        App(handler_budjet=2)
    assert (
        str(info.value) == "App(handler_budjet=...): no such keyword; did you mean handler_budget=?"
    )
    with pytest.raises(ConfigurationError) as info:
        App(fallbak=hangup())
    assert str(info.value) == "App(fallbak=...): no such keyword; did you mean fallback=?"
    with pytest.raises(ConfigurationError) as info:
        Settings.from_env({}, store_ulr="redis://x")
    assert str(info.value) == "store_ulr=...: no such keyword; did you mean store_url=?"


def test_an_unknown_keyword_far_from_any_lists_them_and_never_echoes_values() -> None:
    with pytest.raises(ConfigurationError) as info:
        App(zzz="s3cret")
    message = str(info.value)
    assert message.startswith("App(zzz=...): no such keyword; the keywords are settings, store,")
    assert "handler_budget" in message
    assert "s3cret" not in message


def test_a_bad_value_names_the_keyword_or_the_variable_it_came_from(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ConfigurationError) as info:
        App(handler_budget=9)
    assert str(info.value) == (
        "invalid settings: handler_budget=9: Input should be less than or equal to 4.9"
    )
    with pytest.raises(ConfigurationError) as info:
        App(callback_password=5)
    assert (
        str(info.value) == "invalid settings: callback_password=...: Input should be a valid string"
    )
    monkeypatch.setenv("RTCONTROL_HANDLER_BUDGET", "9")
    with pytest.raises(ConfigurationError) as info:
        App()
    assert str(info.value) == (
        "invalid settings: RTCONTROL_HANDLER_BUDGET: Input should be less than or equal to 4.9"
    )


def test_a_misspelled_variable_keeps_its_name_in_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "rtcontrol.settings")
    settings = Settings.from_env(
        {"RTCONTROL_HANDLER_BUDJET": "2", "RTCONTROL_TEST_REDIS_URL": "redis://"}
    )
    assert settings.handler_budget == 4.0  # ignored, as before
    assert [r.getMessage() for r in caplog.records] == [
        "RTCONTROL_HANDLER_BUDJET is not a setting and is ignored; did you mean "
        "RTCONTROL_HANDLER_BUDGET?"
    ]


# ------------------------------------------------------------------------------ tts


@pytest.mark.parametrize("text", ["Press 1 | 2", "|", "a|b|c"])
def test_a_bar_in_tts_text_is_refused(text: str) -> None:
    with pytest.raises(CommandError) as info:
        tts(text)
    assert str(info.value) == (
        "tts: parameter 'text' must be text without '|' (it separates the voice from the "
        "text in TTS|voice|text, and cannot be escaped): write it as a word or drop it, "
        f"got {text!r}"
    )


def test_tts_text_has_a_documented_maximum_length() -> None:
    assert TTS_MAX_CHARS == 1000
    at_limit = "a" * TTS_MAX_CHARS
    assert tts(at_limit, "TTS_FR-FR_AUDREY") == f"TTS|TTS_FR-FR_AUDREY|{at_limit}"
    too_long = "Bonjour " * 126  # 1008 characters
    with pytest.raises(CommandError) as info:
        tts(too_long)
    assert str(info.value) == (
        "tts: parameter 'text' must be at most 1000 characters (rtcontrol.media."
        "TTS_MAX_CHARS; CALLR's limit is unknown): split it over several play commands, "
        "got 1008 characters starting 'Bonjour Bonjour Bonjour Bonjour Bonjour '"
    )
    assert info.value.value.text == too_long  # the value itself is kept on the error


def test_a_reason_too_long_to_join_the_prompt_is_played_before_it() -> None:
    from rtcontrol.prompts import question

    prompt = tts(" ".join(["word"] * 199))  # 994 characters: no room for the reason
    q = question(
        prompt,
        {"1": 1},
        tries=2,
        invalid=tts("Invalid choice."),
        silence=tts("Hm?"),
        timeout_ms=5000,
        stored=True,
    )
    assert [(c.name, c.params["media_id"]) for c in q.retry("9")] == [
        ("play", tts("Invalid choice.")),
        ("read", prompt),
    ]
    assert [c.params["media_id"] for c in q.retry(None)] == [
        tts("Hm? " + " ".join(["word"] * 199))
    ]  # 998 characters fit
