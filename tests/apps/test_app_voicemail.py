"""apps/voicemail.py: whole calls through the emulator, and which messages are kept."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from app_kit import (
    CALLER,
    SPEED,
    assert_ended,
    params,
    results,
    said,
    startup_messages,
    without_credentials,
)

from apps.voicemail import MAX_DURATION, MENU, SILENCE, Mailbox, build
from rtcontrol.emulator import Callee, HangUp, Press, Silence, Speak, Transcript
from rtcontrol.testing import EmulatedPlatform, random_credentials

MAILBOX = "+33123456789"


#: Tests that place their calls on the module's shared ``http`` platform run in its loop.
shared = pytest.mark.asyncio(loop_scope="module")


@pytest.fixture(scope="module")
def mailbox() -> Mailbox:
    return Mailbox()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(mailbox: Mailbox) -> AsyncIterator[EmulatedPlatform]:
    """One app and one emulator over loopback HTTP, shared by the module's calls."""
    app = build(mailbox=mailbox, **random_credentials())
    async with EmulatedPlatform(app, over="http", speed=SPEED) as p:
        yield p


def kept(mailbox: Mailbox, t: Transcript) -> list[dict[str, Any]]:
    """The messages kept from this call."""
    return [m for m in mailbox.messages if m["callid"] == t.callid]


def asgi(mailbox: Mailbox) -> EmulatedPlatform:
    app = build(mailbox=mailbox, **random_credentials())
    return EmulatedPlatform(app, over="asgi", speed=SPEED)


@shared
async def test_a_message_recorded_played_back_and_kept(
    http: EmulatedPlatform, mailbox: Mailbox
) -> None:
    t = await http.call(Callee(actions=[Speak(4.0), Press("1")]), cli_number=CALLER, number=MAILBOX)
    assert t.executed == ["play", "record", "play_record", "read", "play", "hangup"]
    assert params(t, "record") == [{"max_duration": MAX_DURATION, "silence": SILENCE}]
    [file] = results(t, "record")
    assert params(t, "play_record") == [{"media_file": file}]
    assert said(t)[1:] == [MENU, "Your message has been saved. Goodbye."]
    assert_ended(t, "app")
    [message] = kept(mailbox, t)
    assert message["file"] == file
    assert message["caller"] == CALLER
    assert message["mailbox"] == MAILBOX
    assert 0 <= message["duration"] < 5  # measured by the app, in real seconds


@shared
async def test_record_again_keeps_only_the_second_take(
    http: EmulatedPlatform, mailbox: Mailbox
) -> None:
    caller = Callee(actions=[Press("#", after=3.0), Press("2"), Speak(2.0), Press("1")])
    t = await http.call(caller)
    assert t.executed == [
        "play", "record", "play_record", "read",
        "play", "record", "play_record", "read",
        "play", "hangup",
    ]  # fmt: skip
    first, second = results(t, "record")
    assert first != second
    assert [p["media_file"] for p in params(t, "play_record")] == [first, second]
    assert said(t)[2] == "Please record your message after the tone."
    assert_ended(t, "app")
    assert [m["file"] for m in kept(mailbox, t)] == [second]


@shared
async def test_invalid_keys_and_silence_at_the_menu_are_asked_again(
    http: EmulatedPlatform, mailbox: Mailbox
) -> None:
    t = await http.call(Callee(actions=[Speak(3.0), Press("9"), Silence(), Press("1")]))
    assert t.executed == ["play", "record", "play_record", "read", "read", "read", "play", "hangup"]
    assert results(t, "read") == ["9", "TIMEOUT", "1"]
    assert said(t)[2:4] == ["That is not a valid choice. " + MENU, "We did not hear you. " + MENU]
    assert_ended(t, "app")
    assert len(kept(mailbox, t)) == 1


async def test_three_mistakes_at_the_menu_keep_nothing() -> None:
    mailbox = Mailbox()
    async with asgi(mailbox) as p:
        t = await p.call(Callee(actions=[Speak(3.0), Press("4"), Silence(), Press("*")]))
    assert t.executed[-5:] == ["read", "read", "read", "play", "hangup"]
    assert said(t)[-1] == "Your message was not saved. Goodbye."
    assert_ended(t, "app")
    assert mailbox.messages == []


@shared
async def test_cancel_keeps_nothing(http: EmulatedPlatform, mailbox: Mailbox) -> None:
    t = await http.call(Callee(actions=[Speak(3.0), Press("3")]))
    assert t.executed == ["play", "record", "play_record", "read", "play", "hangup"]
    assert said(t)[-1] == "Your message has been deleted. Goodbye."
    assert_ended(t, "app")
    assert kept(mailbox, t) == []


@shared
async def test_a_caller_hanging_up_while_recording_leaves_nothing(
    http: EmulatedPlatform, mailbox: Mailbox
) -> None:
    t = await http.call(Callee(actions=[HangUp(after=2.0)]))
    assert t.executed == ["play", "record"]
    assert t.requests[-1]["command"] == "record"
    assert_ended(t, "callee")
    assert kept(mailbox, t) == []


@shared
async def test_a_caller_hanging_up_at_the_menu_leaves_nothing(
    http: EmulatedPlatform, mailbox: Mailbox
) -> None:
    t = await http.call(Callee(actions=[Speak(3.0), HangUp(after=1.0)]))
    assert t.executed == ["play", "record", "play_record", "read"]
    assert_ended(t, "callee")
    assert kept(mailbox, t) == []


async def test_a_silent_caller_is_recorded_until_the_silence_limit() -> None:
    mailbox = Mailbox()
    async with asgi(mailbox) as p:
        t = await p.call(Callee(actions=[Silence(), Press("1")]))
    assert p.emulator.recordings[results(t, "record")[0]] == SILENCE
    assert_ended(t, "app")
    assert len(mailbox.messages) == 1


async def test_messages_go_to_the_jsonl_file_named_by_voicemail_messages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "messages.jsonl"
    monkeypatch.setenv("VOICEMAIL_MESSAGES", str(path))
    async with EmulatedPlatform(build(**random_credentials()), over="asgi", speed=SPEED) as p:
        kept = await p.call(Callee(actions=[Speak(2.0), Press("1")]), cli_number=CALLER)
        await p.call(Callee(actions=[Speak(2.0), Press("3")]))
    [line] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert line["file"] == results(kept, "record")[0]
    assert line["caller"] == CALLER


async def test_refuses_to_start_without_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    without_credentials(monkeypatch)
    [failed] = await startup_messages(build())
    assert failed["type"] == "lifespan.startup.failed"
    assert "RTCONTROL_CALLBACK_PASSWORD" in failed["message"]
