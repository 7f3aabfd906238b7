"""The previous command's outcome, parsed into types a handler can ``match`` on.

The platform reports every outcome as two strings (``command_result`` and
``command_error``); what they mean depends on the command. ``parse_outcome`` does
that once so handlers read ``Digits("42")`` or ``ReadTimeout()`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CommandFailed",
    "Completed",
    "DialFailed",
    "Digits",
    "Nothing",
    "Outcome",
    "ReadTimeout",
    "Recording",
    "parse_outcome",
]

#: ``read`` reports this when no digit was typed (configurable in the emulator too).
READ_TIMEOUT = "TIMEOUT"
#: Dial statuses a ``dialout`` reports when no target was bridged.
DIAL_FAILURES = frozenset({"NOANSWER", "BUSY", "CONGESTION", "CHANUNAVAIL", "CANCEL", "NODIAL"})


@dataclass(frozen=True, slots=True)
class Nothing:
    """No command ran yet: the first callback of a call."""


@dataclass(frozen=True, slots=True)
class Digits:
    """``read`` collected these digits."""

    value: str


@dataclass(frozen=True, slots=True)
class ReadTimeout:
    """``read`` got no digit after all its attempts."""


@dataclass(frozen=True, slots=True)
class Recording:
    """``record`` saved this temporary file; play it with ``play_record(file)``."""

    file: str


@dataclass(frozen=True, slots=True)
class DialFailed:
    """``dialout`` bridged no one: ``status`` is NOANSWER, BUSY, CONGESTION..."""

    status: str


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """The platform reported an error for the command (``command_error``)."""

    error: str


@dataclass(frozen=True, slots=True)
class Completed:
    """The command finished; ``result`` is the raw ``command_result``."""

    result: str


Outcome = Nothing | Digits | ReadTimeout | Recording | DialFailed | CommandFailed | Completed


def parse_outcome(command: str, result: str, error: str) -> Outcome:
    if not command:
        return Nothing()
    if error:
        return CommandFailed(error)
    if command == "read":
        return ReadTimeout() if result in ("", READ_TIMEOUT) else Digits(result)
    if command == "record" and result:
        return Recording(result)
    if command == "dialout" and result in DIAL_FAILURES:
        return DialFailed(result)
    return Completed(result)
