"""Media values (``rt_media``) and phone-call targets shared by commands and the API client.

A media value is a media-library id (an int, ``0`` meaning "none") or a
text-to-speech string ``TTS|<VOICE>|<text>``. Build the latter with :func:`tts`,
which checks the voice's ``TTS_LL-CC_NAME`` shape.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from .errors import CommandError

__all__ = ["DEFAULT_VOICE", "E164", "Media", "Target", "check_media", "tts"]

#: The voice :func:`tts` uses when none is given (seen in CALLR's SDK examples).
DEFAULT_VOICE = "TTS_EN-GB_SERENA"

_VOICE = re.compile(r"TTS_[A-Z]{2}-[A-Z]{2}_[A-Z0-9]+")
#: E.164 with a leading ``+``: country code then up to 14 more digits.
E164 = re.compile(r"\+[1-9][0-9]{1,14}")
#: Media-library ids are positive ints; the real bound is unknown, this one keeps them sane.
MEDIA_ID_MAX = 2**63 - 1

Media = int | str


def tts(text: str, voice: str = DEFAULT_VOICE) -> str:
    """Build a text-to-speech media value: ``tts("Bonjour", "TTS_FR-FR_AUDREY")``."""
    if not isinstance(voice, str) or not _VOICE.fullmatch(voice):
        raise CommandError("tts", "voice", "a voice name shaped TTS_LL-CC_NAME", voice)
    if not isinstance(text, str) or not text.strip():
        raise CommandError("tts", "text", "a non-empty string", text)
    return f"TTS|{voice}|{text}"


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
