"""Asking with retries (``rtcontrol.prompts``): the same menu in the step style
(``ask(call, ...).then(step)`` and ``answer(call)``) and in the straight-line style
(``await call.ask(...)``), driven through the emulator: a key, a wrong key, silence,
the last try, what the caller hears on each try, and what is refused when built."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from rtcontrol import (
    App,
    Call,
    Command,
    CommandError,
    Flow,
    LiveCall,
    answer,
    ask,
    dialout,
    hangup,
    play,
    tts,
)
from rtcontrol.emulator import Callee, Press, Silence, Transcript
from rtcontrol.prompts import ASK_KEY
from rtcontrol.testing import EmulatedPlatform, random_credentials

SPEED = 400.0
AGENTS = {"1": "+33100000001", "2": "+33100000002"}
PROMPT = "Press 1 for sales, 2 for support."
INVALID = "That is not a valid choice."
SILENCE = "We did not hear you."
SORRY = "Sorry, we could not help you. Goodbye."
PHONEBOOK = {number: Callee(answer_delay=0.5, hangup_after=1.0) for number in AGENTS.values()}


def heard(t: Transcript) -> list[tuple[str, Any]]:
    """Each command the app sent, with the media it says (None for the others)."""
    said = []
    for reply in t.replies:
        if isinstance(reply, dict) and reply.get("command"):
            params = reply.get("params") or {}
            said.append((reply["command"], params.get("media_id")))
    return said


def say(text: str) -> str:
    return f"TTS|TTS_EN-GB_SERENA|{text}"


# ------------------------------------------------------------------ the step style


class Menu(Flow):
    name = "menu"
    seen: list[Any]

    def __init__(self, seen: list[Any], **reasons: Any) -> None:
        self.seen = seen
        self.reasons = reasons or {"invalid": tts(INVALID), "silence": tts(SILENCE)}

    async def start(self, call: Call) -> Command:
        return ask(call, tts(PROMPT), choices=AGENTS, **self.reasons).then(self.chosen)

    async def chosen(self, call: Call) -> Command:
        number = answer(call)
        self.seen.append((call.step, number, dict(call.state)))
        if number is None:
            return play(tts(SORRY)).then(self.goodbye)
        return dialout(number).then(self.goodbye)

    async def goodbye(self, call: Call) -> Command:
        return hangup()


async def run_menu(callee: Callee, **reasons: Any) -> tuple[Transcript, list[Any]]:
    seen: list[Any] = []
    app = App(**random_credentials())
    app.add_flow(Menu(seen, **reasons), inbound=True)
    async with EmulatedPlatform(app, speed=SPEED, phonebook=PHONEBOOK) as p:
        t = await p.call(callee)
        await app.settle()
    assert t.errors == [], t.render()
    return t, seen


async def test_a_valid_key_on_the_first_try_goes_to_the_then_step_with_its_value() -> None:
    t, seen = await run_menu(Callee(actions=[Press("2")]))
    assert heard(t) == [("read", say(PROMPT)), ("dialout", None)]
    [(step, number, state)] = seen
    assert (step, number) == ("chosen", AGENTS["2"])
    assert state == {ASK_KEY: {"answer": AGENTS["2"]}}  # the question is gone, its answer kept
    first = t.replies[0]["params"]
    assert (first["max_digits"], first["attempts"], first["timeout_ms"]) == (1, 1, 5000)
    assert t.replies[0]["command_id"].endswith(":menu:@ask")


async def test_a_wrong_key_then_silence_then_a_valid_key() -> None:
    t, seen = await run_menu(Callee(actions=[Press("7"), Silence(), Press("1")]))
    assert heard(t) == [
        ("read", say(PROMPT)),
        ("read", say(f"{INVALID} {PROMPT}")),  # the reason and the prompt in one read
        ("read", say(f"{SILENCE} {PROMPT}")),
        ("dialout", None),
    ]
    assert [(s, n) for s, n, _ in seen] == [("chosen", AGENTS["1"])]


async def test_three_tries_without_an_answer_end_in_the_then_step_with_none() -> None:
    t, seen = await run_menu(Callee(actions=[Silence(), Press("9"), Press("#")]))
    assert heard(t) == [
        ("read", say(PROMPT)),
        ("read", say(f"{SILENCE} {PROMPT}")),
        ("read", say(f"{INVALID} {PROMPT}")),
        ("play", say(SORRY)),
        ("hangup", None),
    ]
    assert [(s, n) for s, n, _ in seen] == [("chosen", None)]


async def test_a_reason_that_cannot_join_the_prompt_is_played_first() -> None:
    t, seen = await run_menu(Callee(actions=[Press("5"), Press("2")]), invalid=131)
    assert heard(t) == [
        ("read", say(PROMPT)),
        ("play", 131),  # a media id cannot be joined to a TTS
        ("read", say(PROMPT)),
        ("dialout", None),
    ]
    assert [(s, n) for s, n, _ in seen] == [("chosen", AGENTS["2"])]


async def test_without_reasons_the_prompt_is_asked_again_as_it_is() -> None:
    class Plain(Flow):
        name = "plain"

        async def start(self, call: Call) -> Command:
            return ask(call, tts(PROMPT), choices={"1": "yes"}, tries=2).then(self.done)

        async def done(self, call: Call) -> Command:
            return play(tts(f"Answer {answer(call)}"))

    app = App(**random_credentials())
    app.add_flow(Plain, inbound=True)
    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("3"), Press("1")], when_done="hangup"))
    assert heard(t)[:3] == [
        ("read", say(PROMPT)),
        ("read", say(PROMPT)),
        ("play", say("Answer yes")),
    ]


async def test_function_style_with_then_and_longer_keys() -> None:
    app = App(**random_credentials())
    got: list[Any] = []

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return ask(
            call,
            tts("Enter your floor"),
            choices={"10": 10, "12": 12, "*": "reception"},
            tries=2,
        ).then(floor)

    @app.step
    async def floor(call: Call) -> Command:
        got.append(answer(call))
        return hangup()

    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("12")]))
    assert got == [12]
    assert t.replies[0]["params"]["max_digits"] == 2  # the longest key


async def test_ask_sent_without_then_says_how_to_fix_it(caplog: pytest.LogCaptureFixture) -> None:
    app = App(**random_credentials())

    @app.on_inbound
    async def welcome(call: Call) -> Command:
        return ask(call, tts(PROMPT), choices=AGENTS)  # .then(...) forgotten

    caplog.set_level(logging.ERROR, "rtcontrol.handler")
    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("1")]))
    assert t.executed[:2] == ["read", "play"]  # the fallback apology
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "FlowError: flow main: ask() was sent without .then(step), so its answer has nowhere "
        "to go: return `ask(call, ...).then(self.next_step)`" in m
        for m in messages
    ), messages


@pytest.mark.parametrize(
    ("kwargs", "param", "allowed"),
    [
        ({"choices": {}}, "choices", "a non-empty dict"),
        ({"choices": {"1a": 1}}, "choices", "keys of 1-20 digits"),
        ({"choices": {"1": None}}, "choices", "values other than None"),
        ({"choices": {"1": object()}}, "choices", "JSON values in the step style"),
        ({"tries": 0}, "tries", "an integer 1..10"),
        ({"tries": True}, "tries", "an integer 1..10"),
        ({"timeout_ms": 50}, "timeout_ms", "an integer 100..30000"),
        ({"invalid": "not media"}, "invalid", "a media id"),
    ],
)
def test_bad_parts_are_refused_when_built(kwargs: dict[str, Any], param: str, allowed: str) -> None:
    call = Call(None, _request(), flow="main", step="start", state={}, variables={})  # type: ignore[arg-type]
    kwargs = {"choices": {"1": 1}, **kwargs}
    with pytest.raises(CommandError) as info:
        ask(call, tts(PROMPT), **kwargs)
    assert (info.value.command, info.value.param) == ("ask", param)
    assert allowed in info.value.allowed
    assert call.state == {}  # nothing kept for a question never sent


def test_then_takes_a_step_like_command_then() -> None:
    call = Call(None, _request(), flow="main", step="start", state={}, variables={})  # type: ignore[arg-type]
    with pytest.raises(CommandError, match="'then' must be a step name or a step function"):
        ask(call, tts(PROMPT), choices={"1": 1}).then("not a name")


def test_a_straight_line_call_is_pointed_at_call_ask() -> None:
    with pytest.raises(
        TypeError, match=r"write `value = await call.ask\(prompt, choices=\.\.\.\)`"
    ):
        ask(object(), tts(PROMPT), choices={"1": 1})  # type: ignore[arg-type]


def _request() -> Any:
    from rtcontrol import RTRequest
    from rtcontrol.testing import callback_body

    return RTRequest.model_validate(callback_body())


# ------------------------------------------------------------ the straight-line style


def straight_app(seen: list[Any], **settings: Any) -> App:
    app = App(**random_credentials(), **settings)

    @app.inbound_call
    async def menu(call: LiveCall) -> None:
        number = await call.ask(
            tts(PROMPT),
            choices=AGENTS,
            tries=3,
            invalid=tts(INVALID),
            silence=tts(SILENCE),
        )
        seen.append(number)
        if number is None:
            await call.play(tts(SORRY))
            return
        await call.dialout(number)

    return app


@pytest.mark.parametrize("flow_cache", [10_000, 0])  # 0: every callback replays the flow
async def test_straight_line_ask_returns_the_value_after_wrong_keys(flow_cache: int) -> None:
    seen: list[Any] = []
    app = straight_app(seen, flow_cache=flow_cache)
    async with EmulatedPlatform(app, speed=SPEED, phonebook=PHONEBOOK) as p:
        t = await p.call(Callee(actions=[Press("4"), Silence(), Press("2")]))
    assert t.errors == [], t.render()
    assert heard(t) == [
        ("read", say(PROMPT)),
        ("read", say(f"{INVALID} {PROMPT}")),
        ("read", say(f"{SILENCE} {PROMPT}")),
        ("dialout", None),
    ]
    assert seen[-1] == AGENTS["2"]


async def test_straight_line_ask_returns_none_after_the_last_try() -> None:
    seen: list[Any] = []
    app = straight_app(seen)
    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Silence(), Silence(), Press("0")]))
    assert heard(t) == [
        ("read", say(PROMPT)),
        ("read", say(f"{SILENCE} {PROMPT}")),
        ("read", say(f"{SILENCE} {PROMPT}")),
        ("play", say(SORRY)),
        ("hangup", None),
    ]
    assert seen == [None]


async def test_straight_line_values_may_be_anything_and_reasons_may_be_media_ids() -> None:
    picked: list[Any] = []

    async def sales(call: LiveCall) -> None:
        await call.play(tts("Sales"))

    app = App(**random_credentials())

    @app.inbound_call
    async def menu(call: LiveCall) -> None:
        branch = await call.ask(tts(PROMPT), choices={"1": sales}, tries=2, invalid=131)
        picked.append(branch)
        if branch is not None:
            await branch(call)

    async with EmulatedPlatform(app, speed=SPEED) as p:
        t = await p.call(Callee(actions=[Press("3"), Press("1")]))
    assert picked == [sales]
    assert heard(t) == [
        ("read", say(PROMPT)),
        ("play", 131),
        ("read", say(PROMPT)),
        ("play", say("Sales")),
        ("hangup", None),
    ]
