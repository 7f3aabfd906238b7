"""``CallResult.said`` and ``.ran``: what the caller heard, and the commands as objects."""

from __future__ import annotations

import pytest

from rtcontrol import (
    App,
    Call,
    Command,
    ConfigurationError,
    hangup,
    play,
    play_talk_detect,
    read,
    tts,
    wait,
)
from rtcontrol.emulator import Callee, EmulatorSettings, Press, Transcript
from rtcontrol.emulator.transcript import Event
from rtcontrol.testing import MAX_CALL_SECONDS, CallResult, EmulatedPlatform, ran, said

SPEED = 400.0


def build() -> App:
    app = App()

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return play_talk_detect(tts("Hello")).then(menu)

    @app.step
    async def menu(call: Call) -> Command:
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call: Call) -> Command:
        return play(1234).then(pause)  # a recorded media: heard, but not text

    @app.step
    async def pause(call: Call) -> Command:
        return wait(1).then(bye)

    @app.step
    async def bye(call: Call) -> Command:
        return play(tts("Bye now")).then(end)

    @app.step
    async def end(call: Call) -> Command:
        return hangup()

    return app


async def test_said_and_ran_follow_the_call_in_order() -> None:
    async with EmulatedPlatform(build(), speed=SPEED, strict=True) as p:
        t = await p.call(Callee(actions=[Press("1")]))
    assert isinstance(t, CallResult)
    assert isinstance(t, Transcript)  # every Transcript property still works
    assert t.said == ["Hello", "Press 1", "Bye now"]
    assert t.ran == [
        play_talk_detect(tts("Hello")),
        read(tts("Press 1"), max_digits=1),
        play(1234),
        wait(1),
        play(tts("Bye now")),
        hangup(),
    ]
    assert [c.name for c in t.ran] == t.executed
    assert all(c.step is None for c in t.ran)
    assert said(t) == t.said
    assert ran(t) == t.ran


def transcript(*events: Event) -> Transcript:
    t = Transcript(callid=1, app="A", direction="inbound", number="+33123456789")
    for event in events:
        t.add(event)
    return t


def test_refused_replies_and_the_ignored_last_reply_are_not_commands_run() -> None:
    good = {"command": "play", "command_id": 1, "params": {"media_id": tts("Hi")}}
    refused = {"command": "play", "command_id": 2, "params": {"media_id": "nope"}}
    t = transcript(
        Event(0.0, "reply", "", good),
        Event(0.0, "platform", "run play #1", "play"),
        Event(1.0, "reply", "", refused),  # no "run" line follows: the platform refused it
        Event(1.0, "reply", "", None),  # a timeout
        Event(2.0, "reply", "", {"command": "hangup", "command_id": 3}),
        Event(2.0, "platform", "run hangup #3", "hangup"),
        Event(2.0, "reply", "", good, ignored=True),
    )
    assert ran(t) == [play(tts("Hi")), hangup()]
    assert said(t) == ["Hi"]


def test_the_default_call_limit_is_the_kits() -> None:
    app = App()
    assert EmulatedPlatform(app)._settings.max_call_duration == MAX_CALL_SECONDS == 600.0
    own = EmulatorSettings(max_call_duration=30.0)
    assert EmulatedPlatform(app, settings=own)._settings is own


async def test_an_app_without_credentials_gets_throwaway_ones() -> None:
    app = App(callback_login=None, callback_password=None, allow_no_auth=False)

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return hangup()

    async with EmulatedPlatform(app, speed=SPEED, over="http", strict=True) as p:
        t = await p.call()
        login, password = app.settings.callback_login, app.settings.callback_password
        assert p.emulator.apps[p.app_hash].login == login
    assert login == "callr"
    assert password
    assert len(password) >= 20
    assert t.executed == ["hangup"]


@pytest.mark.parametrize("over", ["asgi", "http"])
async def test_a_half_configured_app_is_refused_as_in_production(over: str) -> None:
    app = App(callback_login="callr", callback_password=None)
    with pytest.raises(ConfigurationError, match="RTCONTROL_CALLBACK_PASSWORD is empty"):
        async with EmulatedPlatform(app, over=over) as p:  # type: ignore[arg-type]
            await p.call()
