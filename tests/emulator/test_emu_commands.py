"""Commands against scripted callees: results, timing in virtual seconds, bridging."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from typing import Any

import pytest
from emu_helpers import EmuFactory, ScriptedApp, cmd, run_inbound, spans, tts

from rtcontrol.emulator import Callee, Leave, Press, Silence, Speak

#: Timing assertions run slower, so that scheduling jitter stays far below the tolerance.
SLOW = 20.0
TOLERANCE = 0.75
PROMPT = tts("Press one for sales")  # 19 characters: 1.33 s at 0.07 s/char


def read(command_id: Any = 1, **params: Any) -> dict[str, Any]:
    params = {"media_id": PROMPT, "max_digits": 4, "attempts": 2, "timeout_ms": 3000} | params
    return cmd("read", command_id, **params)


def results(t: Any) -> list[tuple[str, str, str]]:
    return [(r["command"], r["command_result"], r["command_error"]) for r in t.requests[1:]]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Press("42#"), "42"),
        (Press("12345678"), "1234"),  # max_digits
        (Press("7"), "7"),  # ends timeout_ms after the last key
        (Press("9", after=1, barge_in=True), "9"),
        (Press("5", after=4.0), "5"),  # lands in the second attempt's prompt
        (Press("#"), "TIMEOUT"),
        (Silence(), "TIMEOUT"),
        (Speak(3), "TIMEOUT"),
        (Press("1", after=100), "TIMEOUT"),  # after the last attempt
    ],
)
async def test_read_results(make_emu: EmuFactory, action: Any, expected: str) -> None:
    app = ScriptedApp(read(), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app, Callee(actions=[action]))
    assert t.requests[1]["command_result"] == expected
    assert t.requests[1]["command_error"] == ""


async def test_read_timing_in_virtual_seconds(make_emu: EmuFactory) -> None:
    app = ScriptedApp(
        read(1, attempts=3, timeout_ms=2000), read(2, max_digits=1), read(3), cmd("hangup", 4)
    )
    callee = Callee(actions=[Silence(), Press("3", after=0.5, barge_in=True), Press("88#")])
    _, t = await run_inbound(make_emu, app, callee, speed=SLOW)
    (_, silent), (_, barge), (_, typed), _ = spans(t)
    assert silent == pytest.approx(3 * (1.33 + 2.0), abs=TOLERANCE)
    assert barge == pytest.approx(0.5, abs=TOLERANCE)  # max_digits=1 ends it on the key
    assert typed == pytest.approx(1.33 + 1.0 + 2 * 0.2, abs=TOLERANCE)  # '#' ends it
    assert results(t)[:3] == [("read", "TIMEOUT", ""), ("read", "3", ""), ("read", "88", "")]


async def test_barge_in_can_be_disabled(make_emu: EmuFactory) -> None:
    app = ScriptedApp(read(attempts=1), cmd("hangup", 2))
    callee = Callee(actions=[Press("1", after=0.2, barge_in=True)])
    _, t = await run_inbound(make_emu, app, callee, read_barge_in=False)
    assert t.requests[1]["command_result"] == "TIMEOUT"
    assert any("no barge-in" in text for text in t.callee_events)


async def test_read_timeout_result_is_a_setting(make_emu: EmuFactory) -> None:
    app = ScriptedApp(read(attempts=1), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app, read_timeout_result="")
    assert t.requests[1]["command_result"] == ""


async def test_exhausted_script_hangs_up_when_asked(make_emu: EmuFactory) -> None:
    app = ScriptedApp(read(1), read(2), cmd("hangup", 3))
    _, t = await run_inbound(make_emu, app, Callee(actions=[Press("1")], when_done="hangup"))
    assert results(t) == [("read", "1", ""), ("read", "", "")]
    assert t.requests[-1]["call_status"] == "HANGUP"
    assert t.ended_by == "callee"


async def test_record_then_play_record(make_emu: EmuFactory) -> None:
    files: list[str] = []

    def play_it(body: dict[str, Any]) -> dict[str, Any]:
        files.append(body["command_result"])
        return cmd("play_record", 3, media_file=body["command_result"])

    app = ScriptedApp(
        cmd("record", 1, max_duration=60, silence=2),
        cmd("record", 2, max_duration=5, silence=0),
        play_it,
        cmd("hangup", 4),
    )
    callee = Callee(actions=[Speak(4), Silence()])
    _, t = await run_inbound(make_emu, app, callee, speed=SLOW)
    first, second, played = results(t)[:3]
    assert first[0] == "record"
    assert first[1].endswith(".wav")
    assert first[1] != second[1]
    assert second[1] == files[0]
    assert played == ("play_record", "0", "")
    talk, capped, replay, _ = (seconds for _, seconds in spans(t))
    assert talk == pytest.approx(4 + 2, abs=TOLERANCE)  # talk, then 2 s of silence
    assert capped == pytest.approx(5, abs=TOLERANCE)  # max_duration
    assert replay == pytest.approx(5, abs=TOLERANCE)  # plays back what was recorded


async def test_record_stops_on_hash(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("record", 1, max_duration=0, silence=0), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app, Callee(actions=[Press("#", after=3)]))
    assert t.requests[1]["command_result"].endswith(".wav")
    assert t.requests[1]["command_result"].startswith("/tmp/callr-rec-")


async def test_play_record_of_unknown_file_is_an_error(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("play_record", 1, media_file="/tmp/nope.wav"), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app)
    assert results(t)[0] == ("play_record", "", "INVALID_PARAMS")


@pytest.mark.parametrize("key", ["seconds", "wait"])
async def test_wait_accepts_both_keys(make_emu: EmuFactory, key: str) -> None:
    app = ScriptedApp(cmd("wait", 1, **{key: 10}), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app, speed=SLOW)
    assert results(t)[0] == ("wait", "", "")
    assert spans(t)[0] == ("wait", pytest.approx(10, abs=TOLERANCE))


async def test_play_duration_follows_tts_length_and_media_table(make_emu: EmuFactory) -> None:
    app = ScriptedApp(
        cmd("play", 1, media_id=tts("x" * 100)), cmd("play", 2, media_id=77), cmd("hangup", 3)
    )
    _, t = await run_inbound(make_emu, app, media_durations={77: 12.0}, speed=SLOW)
    assert spans(t)[:2] == [
        ("play", pytest.approx(7.0, abs=TOLERANCE)),
        ("play", pytest.approx(12.0, abs=TOLERANCE)),
    ]
    assert [r["command_result"] for r in t.requests[1:3]] == ["0", "0"]


def _wav(seconds: float) -> str:
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(8000)
        out.writeframes(b"\x80" * int(8000 * seconds))
    return base64.b64encode(buffer.getvalue()).decode()


async def test_play_wav_data(make_emu: EmuFactory) -> None:
    junk = base64.b64encode(b"not a wav").decode()
    app = ScriptedApp(
        cmd("play_wav_data", 1, audio_data=_wav(0.5)),
        cmd("play_wav_data", 2, audio_data=junk),
        cmd("hangup", 3),
    )
    _, t = await run_inbound(make_emu, app)
    assert results(t)[:2] == [("play_wav_data", "0", ""), ("play_wav_data", "", "INVALID_PARAMS")]


@pytest.mark.parametrize(
    ("action", "expected"),
    [
        (Speak(1.0), "HUMAN"),
        (Speak(30), "MACHINE"),
        (Silence(), "NOTSURE"),
        (Speak(0.1), "NOTSURE"),
    ],
)
async def test_play_talk_detect(make_emu: EmuFactory, action: Any, expected: str) -> None:
    app = ScriptedApp(cmd("play_talk_detect", 1, media_id=tts("Hello?")), cmd("hangup", 2))
    _, t = await run_inbound(make_emu, app, Callee(actions=[action]))
    assert t.requests[1]["command_result"] == expected


async def test_simple_commands(make_emu: EmuFactory) -> None:
    app = ScriptedApp(
        cmd("send_dtmf", 1, digits="12#"),
        cmd("wait_for_silence", 2, silence_ms=500, iterations=1, timeout=0),
        cmd("start_call_recording", 3, announce=tts("This call is recorded")),
        cmd("stop_call_recording", 4),
        cmd("hangup", 5),
    )
    _, t = await run_inbound(make_emu, app, Callee(actions=[Speak(2)]))
    assert results(t)[:4] == [
        ("send_dtmf", "", ""),
        ("wait_for_silence", "", ""),
        ("start_call_recording", "", ""),
        ("stop_call_recording", "", ""),
    ]
    assert any("12#" in text for text in t.callee_events)


async def test_dialout_answered_bridges_until_a_side_hangs_up(make_emu: EmuFactory) -> None:
    targets = [{"number": "+33700000001", "timeout": 10}, {"number": "+33700000002", "timeout": 10}]
    app = ScriptedApp(cmd("dialout", 1, targets=targets), cmd("play", 2, media_id=1))
    book = {
        "+33700000001": Callee("busy", answer_delay=1),
        "+33700000002": Callee(answer_delay=3, hangup_after=30),
    }
    # 34 virtual seconds: at a quarter of the usual speed, the tolerance is 60 ms of
    # real time (a busy machine's loop lag), for 1.4 s of run time
    emu, t = await run_inbound(make_emu, app, phonebook=book, speed=25)
    assert t.executed == ["dialout"]
    assert len(t.requests) == 2
    final = t.requests[-1]
    assert (final["call_status"], final["command"], final["command_id"]) == ("HANGUP", "dialout", 1)
    assert final["command_result"] == "ANSWER"
    assert t.ended_by == "bridge"
    assert spans(t) == [("dialout", pytest.approx(1 + 3 + 30, abs=2 * TOLERANCE))]
    assert len(emu.legs) == 1


async def test_dialout_not_answered_continues_the_flow(make_emu: EmuFactory) -> None:
    targets = [{"number": "+33700000001", "timeout": 5}, {"number": "+33700000002", "timeout": 8}]
    app = ScriptedApp(cmd("dialout", 1, targets=targets), cmd("hangup", 2))
    book = {"+33700000001": Callee("noanswer"), "+33700000002": Callee("busy", answer_delay=2)}
    _, t = await run_inbound(make_emu, app, phonebook=book)
    assert results(t)[0] == ("dialout", "BUSY", "")
    assert t.requests[1]["call_status"] == "UP"
    assert spans(t)[0] == ("dialout", pytest.approx(5 + 2, abs=2 * TOLERANCE))
    assert t.executed == ["dialout", "hangup"]


async def test_dialout_caller_hangs_up_during_bridge(make_emu: EmuFactory) -> None:
    app = ScriptedApp(cmd("dialout", 1, targets=[{"number": "+33700000001", "timeout": 10}]))
    caller = Callee(hangup_during="dialout", hangup_delay=12)
    emu, t = await run_inbound(make_emu, app, caller, phonebook={"+33700000001": Callee()})
    assert t.ended_by == "callee"
    assert t.requests[-1]["command"] == "dialout"
    assert t.requests[-1]["command_result"] == "ANSWER"
    assert all(leg.ended for leg in emu.legs.values())


async def test_conference_members_meet_and_leave(make_emu: EmuFactory) -> None:
    room = {"id": 42, "auto_leave_when_alone": True}

    def flow(body: dict[str, Any]) -> dict[str, Any]:
        if body["command"] == "":
            return cmd("simple_conference", 1, **room)
        return cmd("hangup", 2)

    app = ScriptedApp(flow=flow)
    emu = make_emu(app)
    hash_ = emu.create_app(app.url).hash
    first = emu.start_call(hash_, Callee(actions=[Silence()]))
    await first.wait_command("simple_conference")
    second = emu.start_call(hash_, Callee(actions=[Leave(after=5)]))
    await second.wait_command("simple_conference")
    t1, t2 = await first.wait(), await second.wait()
    assert [r["command_result"] for r in (t1.requests[1], t2.requests[1])] == ["", ""]
    assert (t1.requests[1]["command"], t1.requests[1]["call_status"]) == ("simple_conference", "UP")
    assert any("alone" in e.text for e in t1.events)
    assert any("'*'" in text for text in t2.callee_events)
    assert emu.rooms.members("42") == []


async def test_conference_pin(make_emu: EmuFactory) -> None:
    conf = {"id": "sales", "pin_code": "1234", "pin_max_tries": 2}
    app = ScriptedApp(cmd("conference", 1, **conf), cmd("conference", 2, **conf), cmd("hangup", 3))
    callee = Callee(actions=[Press("9999#"), Press("1234#"), Leave(after=2), Silence(), Silence()])
    _, t = await run_inbound(make_emu, app, callee)
    assert results(t)[:2] == [("conference", "", ""), ("conference", "", "INVALID_PIN")]


async def test_hangup_callid_hangs_up_another_call(make_emu: EmuFactory) -> None:
    victim_started = asyncio.Event()
    calls: dict[str, int] = {}

    def flow(body: dict[str, Any]) -> dict[str, Any]:
        if body["cli_number"] == "+33600000009":  # the victim waits a long time
            calls["victim"] = body["callid"]
            victim_started.set()
            return cmd("wait", "v", seconds=30) if body["command"] == "" else cmd("hangup", 0)
        if body["command"] == "":
            return cmd("hangup_callid", 1, callid=calls["victim"])
        if body["command_id"] == 1:
            return cmd("hangup_callid", 2, callid=999)
        return cmd("hangup", 3)

    app = ScriptedApp(flow=flow)
    emu = make_emu(app)
    hash_ = emu.create_app(app.url).hash
    victim = emu.start_call(hash_, cli_number="+33600000009")
    await victim.wait_command("wait")
    killer = await emu.place_call(hash_)
    tv = await victim.wait()
    assert results(killer)[:2] == [
        ("hangup_callid", "", ""),
        ("hangup_callid", "", "UNKNOWN_CALLID"),
    ]
    assert tv.ended_by == "hangup_callid"
    assert (tv.requests[-1]["command"], tv.requests[-1]["call_status"]) == ("wait", "HANGUP")
    assert tv.hangup_count == 1


@pytest.mark.parametrize("how", ["listed", "every-number"])
async def test_dialout_to_a_softphone_number_is_taken_by_a_scripted_callee(
    make_emu: EmuFactory, how: str
) -> None:
    """The softphone rings for outbound calls (calls.realtime) only: a dialout leg to a
    "live" number is answered by the phonebook's callee (or the default), and the
    transcript says so rather than leaving the reader to wonder."""
    targets = [{"number": "+33700000003", "timeout": 10}]
    app = ScriptedApp(cmd("dialout", 1, targets=targets))
    emu = make_emu(app)
    if how == "listed":
        emu.live_numbers.add("+33700000003")
    else:
        emu.live_default = True
    emu.default_callee = Callee(answer_delay=1, hangup_after=5, name="agent")
    hash_ = emu.create_app(app.url).hash
    t = await emu.place_call(hash_, Callee())
    assert t.ended_by == "bridge"
    assert t.requests[-1]["command_result"] == "ANSWER"
    notes = [e.text for e in t.events if e.kind == "platform"]
    assert any("rings the softphone for outbound calls only: callee 'agent'" in n for n in notes)
