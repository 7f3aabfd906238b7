"""How each command plays out against the scripted callee, in virtual time.

Every executor gets parameters already validated by :func:`rtcontrol.commands.from_wire`
(defaults filled in) and returns ``(command_result, command_error)``. A hang-up inside
the command surfaces as :class:`~rtcontrol.emulator.runtime.EndCall` from
``ctx.sleep``/``ctx.wait``.

``read`` timeline: attempt *k* plays the prompt (P s) then waits ``timeout_ms`` (T s) for
a first key, so it occupies ``[k(P+T), (k+1)(P+T))``. A :class:`Press` lands at
``after`` seconds from the end of the first prompt (or from its start with
``barge_in=True``); its keys follow each other by ``digit_gap``. Entry ends at ``#`` (not
included), at ``max_digits``, or ``timeout_ms`` after the last key. Nothing, or ``#``
alone, yields ``read_timeout_result`` after all attempts.

``play_talk_detect`` (results UNKNOWN; Asterisk AMD words by default): a callee who
``Speak``s under ``min_ms`` or stays silent is "not sure"; one who talks beyond ``max_ms``
or through the whole ``analysistime_ms`` window is a machine; anything between is human.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import wave
from collections.abc import Callable, Coroutine
from typing import Any

from .bridge import conference, dialout
from .callee import HangUp, Leave, Press, Silence, Speak
from .runtime import CommandContext

__all__ = ["EXECUTORS", "Executor", "Outcome", "collect_digits"]

#: ``(command_result, command_error)``.
Outcome = tuple[str, str]
#: Runs one command against the call's context and validated wire parameters. A callee
#: may replace the platform's own for some commands (``EmulatedCall`` asks it).
Executor = Callable[[CommandContext, dict[str, Any]], Coroutine[Any, Any, Outcome]]


async def _play(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    await ctx.sleep(ctx.media(p["media_id"]))
    return ctx.settings.play_result, ""


async def _play_record(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    length = ctx.services.recordings.get(p["media_file"])
    if length is None:
        ctx.platform(f"play_record: no recording named {p['media_file']!r}")
        return "", ctx.settings.error_invalid_params
    await ctx.sleep(length)
    return ctx.settings.play_result, ""


def wav_seconds(data: str) -> float | None:
    """Length of base64 WAV audio, or ``None`` when it is not WAV."""
    try:
        raw = base64.b64decode(data, validate=True)
        with wave.open(io.BytesIO(raw), "rb") as audio:
            rate = audio.getframerate()
            return audio.getnframes() / rate if rate else None
    except (binascii.Error, wave.Error, EOFError, ValueError):
        return None


async def _play_wav_data(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    length = wav_seconds(p["audio_data"])
    if length is None:
        ctx.platform("play_wav_data: audio_data is not WAV")
        return "", ctx.settings.error_invalid_params
    await ctx.sleep(length)
    return ctx.settings.play_result, ""


async def _play_talk_detect(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    s = ctx.settings
    action = ctx.take()
    result = s.talk_detect_unsure
    if isinstance(action, Speak):
        talk_ms = action.seconds * 1000
        if talk_ms > p["max_ms"] or talk_ms >= p["analysistime_ms"]:
            result = s.talk_detect_machine
        elif talk_ms >= p["min_ms"]:
            result = s.talk_detect_human
        ctx.callee(f"talks for {action.seconds:g}s")
    elif isinstance(action, HangUp):
        ctx.hang_up_in(action.after)
    await ctx.sleep(max(ctx.media(p["media_id"]), p["analysistime_ms"] / 1000))
    return result, ""


def collect_digits(
    digits: str, at: float, max_digits: int, timeout: float, gap: float
) -> tuple[str, float]:
    """Keys typed from ``at``: the entry the platform keeps and when the entry ends."""
    entry = ""
    for i, key in enumerate(digits):
        when = at + i * gap
        if key == "#":
            return entry, when
        entry += key
        if len(entry) == max_digits:
            return entry, when
    return entry, at + (len(digits) - 1) * gap + timeout


async def _read(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    prompt = ctx.media(p["media_id"])
    timeout = p["timeout_ms"] / 1000
    cycle = prompt + timeout
    action = ctx.take()
    if isinstance(action, Leave):
        action = Press("*", after=action.after)
    if isinstance(action, HangUp):
        ctx.hang_up_in(action.after)
    elif isinstance(action, Press):
        start = action.after if action.barge_in else prompt + action.after
        attempt = int(start // cycle)
        in_prompt = start - attempt * cycle < prompt
        how = "during the prompt (barge-in)" if in_prompt else "after the prompt"
        if attempt >= p["attempts"]:
            ctx.callee(f"will press {action.digits!r} too late, after the last attempt")
        elif in_prompt and not ctx.settings.read_barge_in:
            await ctx.until(start)
            ctx.callee(f"presses {action.digits!r} during the prompt: ignored (no barge-in)")
        else:
            entry, end = collect_digits(
                action.digits, start, p["max_digits"], timeout, ctx.settings.digit_gap
            )
            await ctx.until(start)
            ctx.callee(f"presses {action.digits!r} {how}, attempt {attempt + 1}")
            if entry:
                await ctx.until(end)
                return entry, ""
    elif isinstance(action, Speak):
        ctx.callee(f"talks for {action.seconds:g}s instead of pressing keys")
    else:
        ctx.callee("stays silent")
    await ctx.until(p["attempts"] * cycle)
    return ctx.settings.read_timeout_result, ""


async def _record(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    silence = float(p["silence"]) if p["silence"] else math.inf
    limit = float(p["max_duration"]) if p["max_duration"] else math.inf
    action = ctx.take()
    if isinstance(action, Leave):
        action = Press("*", after=action.after)
    end = silence
    if isinstance(action, Speak):
        end = action.seconds + silence
        ctx.callee(f"talks for {action.seconds:g}s")
    elif isinstance(action, Press):
        if "#" in action.digits:
            end = action.after + action.digits.index("#") * ctx.settings.digit_gap
            ctx.callee(f"talks, and will press '#' at {end:g}s")
        else:
            end = action.after + silence
            ctx.callee(f"talks for {action.after:g}s and presses {action.digits!r}")
    elif isinstance(action, HangUp):
        ctx.hang_up_in(action.after)
    elif isinstance(action, Silence):
        ctx.callee("stays silent")
    length = min(end, limit)
    await ctx.sleep(length)
    recordings = ctx.services.recordings
    name = ctx.settings.record_file_template.format(callid=ctx.callid, n=len(recordings) + 1)
    recordings[name] = length
    return name, ""


async def _send_dtmf(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    per_key = (p["duration_ms"] + p["timeout_ms"]) / 1000
    ctx.callee(f"hears DTMF {p['digits']!r}")
    await ctx.sleep(len(p["digits"]) * per_key)
    return ctx.settings.default_result, ""


async def _wait(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    seconds = p.get("seconds", p.get("wait", 0))
    await ctx.sleep(float(seconds))
    return ctx.settings.default_result, ""


async def _wait_for_silence(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    action = ctx.take()
    talk = 0.0
    if isinstance(action, Speak):
        talk = action.seconds
        ctx.callee(f"talks for {talk:g}s")
    elif isinstance(action, HangUp):
        ctx.hang_up_in(action.after)
    span = talk + p["silence_ms"] / 1000
    if p["timeout"]:
        span = min(span, float(p["timeout"]))
    await ctx.sleep(span)
    return ctx.settings.default_result, ""


def _recording(state: str) -> Executor:
    async def run(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
        await ctx.sleep(ctx.media(p["announce"]))
        ctx.platform(f"call recording {state}")
        return ctx.settings.default_result, ""

    return run


async def _hangup_callid(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
    done = ctx.services.hangup_callid(p["callid"], reason="hangup_callid")
    if done is None:
        ctx.platform(f"hangup_callid: unknown callid {p['callid']}")
        return "", ctx.settings.error_unknown_callid
    ctx.platform(f"hangup_callid: {p['callid']} {'hung up' if done else 'had already ended'}")
    return ctx.settings.default_result, ""


EXECUTORS: dict[str, Executor] = {
    "conference": conference,
    "dialout": dialout,
    "hangup_callid": _hangup_callid,
    "play": _play,
    "play_record": _play_record,
    "play_talk_detect": _play_talk_detect,
    "play_wav_data": _play_wav_data,
    "read": _read,
    "record": _record,
    "send_dtmf": _send_dtmf,
    "simple_conference": conference,
    "start_call_recording": _recording("started"),
    "stop_call_recording": _recording("stopped"),
    "wait": _wait,
    "wait_for_silence": _wait_for_silence,
}
