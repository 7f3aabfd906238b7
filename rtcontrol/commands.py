"""Typed builders for the 16 REALTIME10 commands, validated when they are built.

Each builder takes the spec's parameter names, so ``read(media_id=..., max_digits=4)``
sends exactly ``{"media_id": ..., "max_digits": 4, ...}``. A bad value raises
:class:`~rtcontrol.errors.CommandError` naming the command, the parameter, the allowed
range and the value given. :func:`from_wire` runs the same checks on a command
received as JSON (the emulator uses it to refuse replies that break the spec).

Wire names the spec is unsure of are constants here, each a one-line change:

* ``WAIT_KEY``: CALLR's current PHP SDK sends ``wait`` as ``{"seconds": n}``; the older
  .NET SDK and the 2012 PHP server send ``{"wait": n}``. We follow the newest
  CALLR-authored code (``seconds``); the emulator accepts both.
* ``WAIT_FOR_SILENCE_MAX_ITERATIONS``: 3 per the PHP SDK, 10 per the .NET SDK; we
  keep the stricter 3 so a command we build is accepted by either reading.
* ``play_talk_detect`` ranges are not published; we accept 0..600000 ms for each.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from pydantic import ValidationError

from .errors import CommandError
from .media import E164, Media, Target, check_media
from .protocol import CALLID_MAX

__all__ = [
    "BUILDERS",
    "WAIT_KEY",
    "Command",
    "conference",
    "dialout",
    "from_wire",
    "hangup",
    "hangup_callid",
    "play",
    "play_record",
    "play_talk_detect",
    "play_wav_data",
    "read",
    "record",
    "send_dtmf",
    "simple_conference",
    "start_call_recording",
    "stop_call_recording",
    "wait",
    "wait_for_silence",
]

WAIT_KEY = "seconds"
WAIT_FOR_SILENCE_MAX_ITERATIONS = 3
TALK_DETECT_MAX_MS = 600_000

_DTMF = re.compile(r"[0-9*#]+")
_PIN = re.compile(r"[0-9]*")
_CDR_FIELD = re.compile(r"[A-Za-z0-9]{0,32}")


@dataclass(frozen=True, eq=True)
class Command:
    """One command ready to send: its wire name, its parameters, and the step for its result.

    Build commands with the module's functions, not directly. ``then`` binds the step
    that will receive the command's result: ``read(...).then("choice")``.
    """

    name: str
    params: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    step: str | None = None

    def __post_init__(self) -> None:
        # Deep-freeze: nested lists/dicts (dialout targets) must not be mutable either.
        object.__setattr__(self, "params", _freeze(self.params, top=True))

    def then(self, step: str | Callable[..., Any]) -> Command:
        """Return a copy whose result goes to ``step`` (a step name or the step itself)."""
        name = step if isinstance(step, str) else getattr(step, "__name__", None)
        if not isinstance(name, str) or not name.isidentifier():
            raise CommandError(self.name, "then", "a step name or a step function", step)
        # A field-for-field copy: the parameters are frozen already (no second deep
        # freeze), and a builder's check mark is kept.
        copy = object.__new__(Command)
        copy.__dict__.update(self.__dict__)
        copy.__dict__["step"] = name
        return copy

    @property
    def checked(self) -> bool:
        """True when a builder made this command, so its parameters passed the checks."""
        return bool(self.__dict__.get("_checked"))

    def wire_params(self) -> dict[str, Any]:
        """The ``params`` object as sent on the wire (a fresh, mutable deep copy)."""
        params: dict[str, Any] = _thaw(self.params)
        return params

    def __reduce__(self) -> tuple[type[Command], tuple[str, dict[str, Any], str | None]]:
        # copy, deepcopy and pickle: rebuilt from plain params (a mappingproxy cannot pickle)
        return (Command, (self.name, self.wire_params(), self.step))

    @property
    def ends_call(self) -> bool:
        return self.name == "hangup"

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.wire_params().items())
        then = f".then({self.step!r})" if self.step else ""
        return f"{self.name}({args}){then}"


class _FrozenDict(dict[str, Any]):
    """A read-only dict for nested params: JSON encoders still see a plain dict."""

    __slots__ = ()

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("command parameters are read-only; use Command.wire_params()")

    __setitem__ = __delitem__ = __ior__ = _read_only
    clear = pop = popitem = setdefault = update = _read_only

    def __reduce__(self) -> tuple[type[_FrozenDict], tuple[dict[str, Any]]]:
        return (_FrozenDict, (dict(self),))


def _freeze(value: Any, *, top: bool = False) -> Any:
    """Deep read-only copy: lists become tuples, nested dicts ``_FrozenDict``."""
    if isinstance(value, Mapping):
        items = {k: _freeze(v) for k, v in value.items()}
        return MappingProxyType(items) if top else _FrozenDict(items)
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


def _make(name: str, **params: Any) -> Command:
    command = Command(name, params)
    object.__setattr__(command, "_checked", True)  # built here, so checked here
    return command


def _int(command: str, param: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    raise CommandError(command, param, f"an integer {low}..{high}", value)


def _bool(command: str, param: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise CommandError(command, param, "true or false", value)


def _str(command: str, param: str, value: Any, pattern: re.Pattern[str], allowed: str) -> str:
    if isinstance(value, str) and pattern.fullmatch(value):
        return value
    raise CommandError(command, param, allowed, value)


def _room(command: str, value: Any) -> int | str:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and 0 < len(value) <= 64 and value.isprintable():
        return value
    raise CommandError(
        command, "id", "a room id: an integer >= 0 or a 1..64 character string", value
    )


def _cli(command: str, value: Any) -> str:
    if value == "BLOCKED" or (isinstance(value, str) and E164.fullmatch(value)):
        return str(value)
    raise CommandError(command, "cli", '"BLOCKED" or an E.164 number such as +33123456789', value)


def play(media_id: Media) -> Command:
    """Play a media (or TTS) to the caller; blocks until it ends."""
    return _make("play", media_id=check_media("play", "media_id", media_id))


def play_record(media_file: str) -> Command:
    """Play back a recording made by :func:`record` (its result is the file name)."""
    if not isinstance(media_file, str) or not media_file or len(media_file) > 255:
        raise CommandError(
            "play_record", "media_file", "the file name a record returned", media_file
        )
    return _make("play_record", media_file=media_file)


def play_wav_data(audio_data: bytes | str) -> Command:
    """Play WAV audio sent inline; ``bytes`` are base64-encoded for you."""
    if isinstance(audio_data, bytes | bytearray):
        if not audio_data:
            raise CommandError("play_wav_data", "audio_data", "non-empty WAV bytes", b"")
        audio_data = base64.b64encode(audio_data).decode("ascii")
    if isinstance(audio_data, str) and audio_data:
        try:
            base64.b64decode(audio_data, validate=True)
        except (binascii.Error, ValueError):
            pass
        else:
            return _make("play_wav_data", audio_data=audio_data)
    shown = audio_data[:32] if isinstance(audio_data, str) else audio_data
    raise CommandError("play_wav_data", "audio_data", "WAV bytes or their base64 text", shown)


def play_talk_detect(
    media_id: Media,
    silence_ms: int = 5,
    min_ms: int = 500,
    max_ms: int = 60_000,
    analysistime_ms: int = 4_000,
) -> Command:
    """Play a media while detecting whether a person talks (answering-machine detection)."""
    n = "play_talk_detect"
    return _make(
        n,
        media_id=check_media(n, "media_id", media_id),
        silence_ms=_int(n, "silence_ms", silence_ms, 0, TALK_DETECT_MAX_MS),
        min_ms=_int(n, "min_ms", min_ms, 0, TALK_DETECT_MAX_MS),
        max_ms=_int(n, "max_ms", max_ms, 0, TALK_DETECT_MAX_MS),
        analysistime_ms=_int(n, "analysistime_ms", analysistime_ms, 0, TALK_DETECT_MAX_MS),
    )


def read(
    media_id: Media,
    max_digits: int = 20,
    attempts: int = 10,
    timeout_ms: int = 30_000,
) -> Command:
    """Play a prompt and collect DTMF digits; the result is the digits or ``TIMEOUT``."""
    n = "read"
    return _make(
        n,
        media_id=check_media(n, "media_id", media_id),
        max_digits=_int(n, "max_digits", max_digits, 1, 20),
        attempts=_int(n, "attempts", attempts, 1, 10),
        timeout_ms=_int(n, "timeout_ms", timeout_ms, 100, 30_000),
    )


def record(max_duration: int = 60, silence: int = 0) -> Command:
    """Record the caller until ``#``, ``silence`` seconds of silence or ``max_duration``.

    ``max_duration`` 0 means no limit (max 300 s); ``silence`` 0 disables silence detection.
    """
    n = "record"
    return _make(
        n,
        max_duration=_int(n, "max_duration", max_duration, 0, 300),
        silence=_int(n, "silence", silence, 0, 20),
    )


def send_dtmf(digits: str, duration_ms: int = 500, timeout_ms: int = 500) -> Command:
    """Send DTMF tones (``0-9*#``) on the call."""
    n = "send_dtmf"
    return _make(
        n,
        digits=_str(n, "digits", digits, _DTMF, "a non-empty string of 0-9, * and #"),
        duration_ms=_int(n, "duration_ms", duration_ms, 1, 5_000),
        timeout_ms=_int(n, "timeout_ms", timeout_ms, 0, 10_000),
    )


def wait(seconds: int) -> Command:
    """Do nothing for 1..30 seconds (a hold without music)."""
    return _make("wait", **{WAIT_KEY: _int("wait", WAIT_KEY, seconds, 1, 30)})


def wait_for_silence(silence_ms: int = 1_000, iterations: int = 1, timeout: int = 0) -> Command:
    """Wait until the line is silent for ``silence_ms`` (``timeout`` in seconds, 0 = none)."""
    n = "wait_for_silence"
    return _make(
        n,
        silence_ms=_int(n, "silence_ms", silence_ms, 1, 5_000),
        iterations=_int(n, "iterations", iterations, 1, WAIT_FOR_SILENCE_MAX_ITERATIONS),
        timeout=_int(n, "timeout", timeout, 0, 300),
    )


def _target(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        value = {"number": value}
    if isinstance(value, Mapping):
        try:
            value = Target.model_validate(dict(value))
        except ValidationError:
            raise CommandError(
                "dialout",
                "targets",
                "Target objects: an E.164 number (+CCNSN) and a timeout of 5..300 s",
                value,
            ) from None
    if isinstance(value, Target):
        return value.model_dump()
    raise CommandError("dialout", "targets", "Target objects or E.164 numbers", value)


def dialout(
    targets: Sequence[Target | str | Mapping[str, Any]] | Target | str,
    cli: str = "BLOCKED",
    ringtone: str = "RING",
    whisper: Media = 0,
    cdr_field: str = "",
) -> Command:
    """Call the targets one after the other and bridge the first that answers."""
    n = "dialout"
    if isinstance(targets, str | Target):
        targets = [targets]
    if not isinstance(targets, Sequence) or not 1 <= len(targets) <= 10:
        raise CommandError(n, "targets", "a list of 1..10 targets", targets)
    if ringtone not in ("RING", "MUSIC"):
        raise CommandError(n, "ringtone", '"RING" or "MUSIC"', ringtone)
    return _make(
        n,
        targets=[_target(t) for t in targets],
        cli=_cli(n, cli),
        ringtone=ringtone,
        whisper=check_media(n, "whisper", whisper, optional=True),
        cdr_field=_str(n, "cdr_field", cdr_field, _CDR_FIELD, "up to 32 letters or digits"),
    )


def conference(
    id: int | str,  # the spec's name
    welcome: Media = 0,
    waiting: Media = 0,
    pin_prompt: Media = 0,
    pin_error: Media = 0,
    pin_valid: Media = 0,
    pin_code: str = "",
    pin_max_tries: int = 3,
    pin_wait: int = 5,
    auto_leave_when_alone: bool = False,
    auto_leave_announce: Media = 0,
    user_join: Media = 0,
    user_leave: Media = 0,
) -> Command:
    """Join conference room ``id`` (created on demand); blocks until the caller leaves."""
    n = "conference"
    return _make(
        n,
        id=_room(n, id),
        welcome=check_media(n, "welcome", welcome, optional=True),
        waiting=check_media(n, "waiting", waiting, optional=True),
        pin_prompt=check_media(n, "pin_prompt", pin_prompt, optional=True),
        pin_error=check_media(n, "pin_error", pin_error, optional=True),
        pin_valid=check_media(n, "pin_valid", pin_valid, optional=True),
        pin_code=_str(n, "pin_code", pin_code, _PIN, 'a string of digits ("" for no PIN)'),
        pin_max_tries=_int(n, "pin_max_tries", pin_max_tries, 1, 10),
        pin_wait=_int(n, "pin_wait", pin_wait, 0, 30),
        auto_leave_when_alone=_bool(n, "auto_leave_when_alone", auto_leave_when_alone),
        auto_leave_announce=check_media(
            n, "auto_leave_announce", auto_leave_announce, optional=True
        ),
        user_join=check_media(n, "user_join", user_join, optional=True),
        user_leave=check_media(n, "user_leave", user_leave, optional=True),
    )


def simple_conference(id: int | str, auto_leave_when_alone: bool = True) -> Command:
    """Join conference room ``id`` with no prompts."""
    n = "simple_conference"
    return _make(
        n,
        id=_room(n, id),
        auto_leave_when_alone=_bool(n, "auto_leave_when_alone", auto_leave_when_alone),
    )


def hangup() -> Command:
    """End the call."""
    return _make("hangup")


def hangup_callid(callid: int) -> Command:
    """Hang up another call (a bridged leg, a conference participant)."""
    return _make("hangup_callid", callid=_int("hangup_callid", "callid", callid, 0, CALLID_MAX))


def start_call_recording(announce: Media = 0) -> Command:
    """Start recording the whole call, optionally announcing it."""
    n = "start_call_recording"
    return _make(n, announce=check_media(n, "announce", announce, optional=True))


def stop_call_recording(announce: Media = 0) -> Command:
    """Stop recording the call, optionally announcing it."""
    n = "stop_call_recording"
    return _make(n, announce=check_media(n, "announce", announce, optional=True))


BUILDERS: dict[str, Callable[..., Command]] = {
    f.__name__: f
    for f in (
        conference,
        dialout,
        hangup,
        hangup_callid,
        play,
        play_record,
        play_talk_detect,
        play_wav_data,
        read,
        record,
        send_dtmf,
        simple_conference,
        start_call_recording,
        stop_call_recording,
        wait,
        wait_for_silence,
    )
}


def from_wire(name: Any, params: Any) -> Command:
    """Validate a command as received on the wire, with the builders' checks.

    Raises :class:`CommandError` for an unknown command, an unknown or missing
    parameter, or a bad value.
    """
    builder = BUILDERS.get(name) if isinstance(name, str) else None
    if builder is None:
        raise CommandError("reply", "command", "one of " + ", ".join(sorted(BUILDERS)), name)
    if not isinstance(params, Mapping):
        raise CommandError(str(name), "params", "a JSON object", params)
    # ``wait`` takes its one value under either spelling of the key (see WAIT_KEY).
    if name == "wait" and len(params) == 1 and next(iter(params)) in ("wait", "seconds"):
        params = {WAIT_KEY: next(iter(params.values()))}
    try:
        return builder(**params)
    except TypeError:
        raise CommandError(
            str(name),
            "params",
            "only the spec's parameter names, with every required one",
            sorted(map(str, params)),
        ) from None
