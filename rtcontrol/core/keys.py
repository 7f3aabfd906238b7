"""Store keys and the ``command_id`` codec.

Keys of one call share a Redis Cluster hash tag (``{<callid>}``), so the engine's
multi-key scripts (lock and read, write and unlock) touch one hash slot.

Every command we send carries ``command_id = "<seq>:<flow>:<step>"``. The platform
echoes it, so a callback names its own flow and step even when the store has
forgotten the call: routing needs nothing but the request. ``seq`` orders the
commands of a call and makes every id unique.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "BUILTIN_STEPS",
    "BYE_STEP",
    "HANGUP_INDEX",
    "HOLD_STEP",
    "NO_STEP",
    "REPLAY_STEP",
    "StepRef",
    "call_key",
    "encode_command_id",
    "hold_key",
    "legacy_call_key",
    "lock_key",
    "parse_command_id",
    "report_key",
    "request_key",
    "starts_key",
]

PREFIX = "rtc:"
#: Steps run by rtcontrol itself, never by a handler.
HOLD_STEP = "@hold"  # the hold command ended (a slow handler may have finished)
BYE_STEP = "@bye"  # the fallback apology ended: hang up
REPLAY_STEP = "@replay"  # a hold given while the store was unreachable ended: replay
NO_STEP = "-"  # the command was sent without .then(step)
BUILTIN_STEPS = frozenset({HOLD_STEP, BYE_STEP, REPLAY_STEP})
#: Index (sorted by due time) of calls whose ``on_hangup`` has not completed yet.
HANGUP_INDEX = f"{PREFIX}hangups"


def call_key(callid: int) -> str:
    """The call's record (one JSON object)."""
    return f"{PREFIX}{{{callid}}}:call"


def lock_key(callid: int) -> str:
    """The call's lock: one callback, interrupt or delivery at a time."""
    return f"{PREFIX}{{{callid}}}:lock"


def hold_key(callid: int, token: str) -> str:
    """Alive (short TTL, renewed) while a worker still runs the slow handler of the
    hold ``token`` of the call."""
    return f"{PREFIX}{{{callid}}}:hold:{token}"


def legacy_call_key(callid: int) -> str:
    """The record's key before 0.2 (no hash tag); read once when a call is unknown."""
    return f"{PREFIX}call:{callid}"


def request_key(request_hash: str) -> str:
    """Binds an outbound call's request hash to the flow and data it was started with."""
    return f"{PREFIX}req:{request_hash}"


def starts_key() -> str:
    """``start_call``s in flight (any worker): first callbacks may wait for their binding."""
    return f"{PREFIX}starting"


class StepRef(NamedTuple):
    seq: int
    flow: str
    step: str


def encode_command_id(seq: int, flow: str, step: str | None) -> str:
    return f"{seq}:{flow}:{step or NO_STEP}"


def parse_command_id(command_id: int | str) -> StepRef | None:
    """Decode an echoed id; None for ids we did not make (0 on the first callback)."""
    if not isinstance(command_id, str):
        return None
    seq, sep, rest = command_id.partition(":")
    flow, sep2, step = rest.partition(":")
    if not (sep and sep2 and seq.isascii() and seq.isdigit() and flow and step):
        return None
    return StepRef(int(seq), flow, step)


def report_key(command_id: int | str) -> str:
    """Identity of a report: the command it reports on (JSON type included: 1 != "1")."""
    return f"i{command_id}" if isinstance(command_id, int) else f"s{command_id}"
