"""Media values (``rt_media``) and phone-call targets shared by commands and the API client.

A media value is a media-library id (an int, ``0`` meaning "none") or a
text-to-speech string ``TTS|<VOICE>|<text>``. Build the latter with :func:`tts`,
which checks the voice's ``TTS_LL-CC_NAME`` shape and the text.

The app's voice: ``tts(text)`` without a voice is spoken with :data:`DEFAULT_VOICE`,
unless the :class:`~rtcontrol.App` that sends it was built with ``App(voice=...)``:
such a value is marked (:class:`AppVoiceTTS`, still a plain ``str`` equal to the
default-voice string), and the app puts its own voice in it when it sends the command.
So prompts built at import time follow the app's voice too, and a voice given to
``tts(text, voice)`` is never replaced.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from .errors import CommandError

__all__ = [
    "DEFAULT_VOICE",
    "E164",
    "TTS_MAX_CHARS",
    "AppVoiceTTS",
    "Media",
    "Target",
    "check_media",
    "check_voice",
    "tts",
    "with_voice",
]

#: The voice :func:`tts` uses when none is given (seen in CALLR's SDK examples).
DEFAULT_VOICE = "TTS_EN-GB_SERENA"

_VOICE = re.compile(r"TTS_[A-Z]{2}-[A-Z]{2}_[A-Z0-9]+")
#: E.164 with a leading ``+``: country code then up to 14 more digits.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: Media-library ids are positive ints; the real bound is unknown, this one keeps them sane.
MEDIA_ID_MAX = 2**63 - 1

#: Longest text :func:`tts` accepts, in characters (Unicode code points). CALLR's own
#: limit is UNKNOWN (the spec does not give one): this bound is our choice, short enough
#: for any TTS engine we know of and long enough for a minute of speech. Say more with
#: several ``play`` commands.
TTS_MAX_CHARS = 1000

Media = int | str


class AppVoiceTTS(str):
    """A TTS value built by ``tts(text)`` without a voice: ``TTS|<DEFAULT_VOICE>|text``.

    It is a ``str`` (equal to the default-voice value, valid everywhere a media is); the
    type only says "no voice was chosen", so an ``App(voice=...)`` may put its voice in
    (:func:`with_voice`). Sent by anything else, it speaks with :data:`DEFAULT_VOICE`.
    """

    __slots__ = ()


class _Excerpt:
    """How a long text shows in an error message: its length and its start."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"{len(self.text)} characters starting {self.text[:40]!r}"


def check_voice(voice: Any, command: str = "tts", param: str = "voice") -> str:
    """The voice itself if it is shaped ``TTS_LL-CC_NAME`` (``TTS_FR-FR_AUDREY``: the
    language and country are part of the name), else :class:`CommandError`."""
    if not isinstance(voice, str) or not _VOICE.fullmatch(voice):
        raise CommandError(command, param, "a voice name shaped TTS_LL-CC_NAME", voice)
    return voice


def tts(text: str, voice: str | None = None) -> str:
    """A text-to-speech media value ``TTS|<voice>|<text>``: ``tts("Bonjour",
    "TTS_FR-FR_AUDREY")``.

    ``voice`` None: the voice of the ``App`` that sends it (``App(voice=...)``), else
    :data:`DEFAULT_VOICE` (see the module docstring). ``text``: 1 to
    :data:`TTS_MAX_CHARS` characters, not only blanks, without ``|`` (it separates the
    voice from the text, and the spec gives no way to escape it).
    Raises :class:`CommandError` naming what to change.
    """
    if voice is not None:
        check_voice(voice)
    if not isinstance(text, str) or not text.strip():
        raise CommandError("tts", "text", "a non-empty string", text)
    if "|" in text:
        raise CommandError(
            "tts",
            "text",
            "text without '|' (it separates the voice from the text in TTS|voice|text, "
            "and cannot be escaped): write it as a word or drop it",
            text if len(text) <= 80 else _Excerpt(text),
        )
    if len(text) > TTS_MAX_CHARS:
        raise CommandError(
            "tts",
            "text",
            f"at most {TTS_MAX_CHARS} characters (rtcontrol.media.TTS_MAX_CHARS; CALLR's "
            "limit is unknown): split it over several play commands",
            _Excerpt(text),
        )
    if voice is None:
        return AppVoiceTTS(f"TTS|{DEFAULT_VOICE}|{text}")
    return f"TTS|{voice}|{text}"


def with_voice(value: Any, voice: str) -> Any:
    """``value`` with ``voice`` in it when it is an :class:`AppVoiceTTS` (a plain ``str``
    then); any other value unchanged. ``voice`` must be valid (:func:`check_voice`)."""
    if type(value) is AppVoiceTTS:
        return f"TTS|{voice}|{value[len(DEFAULT_VOICE) + 5 :]}"
    return value


def check_media(command: str, param: str, value: Any, *, optional: bool = False) -> Media:
    """Validate one media parameter; ``optional`` media may be ``0`` (none)."""
    low = 0 if optional else 1
    if isinstance(value, int) and not isinstance(value, bool):
        if low <= value <= MEDIA_ID_MAX:
            return value
    elif isinstance(value, str):
        parts = value.split("|", 2)
        if (
            len(parts) == 3
            and parts[0] == "TTS"
            and _VOICE.fullmatch(parts[1])
            and parts[2].strip()
        ):
            return value
    allowed = (
        f"a media id {low}..{MEDIA_ID_MAX}"
        + (" (0 for none)" if optional else "")
        + " or a TTS string built with tts(text, voice)"
    )
    raise CommandError(command, param, allowed, value)


class Target(BaseModel):
    """A number to call and how long to let it ring (``timeout``, 5..300 seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    number: StrictStr
    timeout: Annotated[StrictInt, Field(ge=5, le=300)] = 30

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not E164.fullmatch(value):
            raise ValueError("must be an E.164 number with a leading + (e.g. +33123456789)")
        return value
