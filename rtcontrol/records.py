"""What rtcontrol keeps per call, the store keys, and the ``command_id`` encoding.

Every command we send carries ``command_id = "<seq>:<flow>:<step>"``. The platform
echoes it, so a callback names its own flow and step even when the store has
forgotten the call (a restart of a worker using the memory store): routing needs
nothing but the request. ``seq`` orders commands and makes every id unique.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

__all__ = [
    "BUILTIN_STEPS",
    "CallRecord",
    "StepRef",
    "call_key",
    "encode_command_id",
    "fingerprint",
    "lock_key",
    "parse_command_id",
    "request_key",
]

PREFIX = "rtc:"
#: Steps run by rtcontrol itself, never by a handler.
HOLD_STEP = "@hold"  # the hold command ended (a slow handler may have finished)
BYE_STEP = "@bye"  # the fallback apology ended: hang up
REPLAY_STEP = "@replay"  # a hold given while the store was unreachable ended: replay
NO_STEP = "-"  # the command was sent without .then(step)
BUILTIN_STEPS = frozenset({HOLD_STEP, BYE_STEP, REPLAY_STEP})


def call_key(callid: int) -> str:
    return f"{PREFIX}call:{callid}"


def lock_key(callid: int) -> str:
    return f"{PREFIX}lock:{callid}"


def request_key(request_hash: str) -> str:
    """Binds an outbound call's request hash to the flow it was started with."""
    return f"{PREFIX}req:{request_hash}"


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
    if not (sep and sep2 and seq.isdigit() and flow and step):
        return None
    return StepRef(int(seq), flow, step)


def fingerprint(command_id: int | str, command: str, status: str) -> str:
    """Identity of a callback for duplicate detection (id type included: 1 != "1")."""
    kind = "i" if isinstance(command_id, int) else "s"
    return f"{kind}{command_id}|{command}|{status}"


@dataclass(slots=True)
class CallRecord:
    """Server-side state of one live call, stored as one JSON object.

    One object per call keeps a callback at two store round trips: lock and read,
    then write and unlock.
    """

    flow: str
    app: str = ""
    seq: int = 0
    current: int | str | None = None  # command_id of the command the platform runs now
    last_key: str | None = None  # fingerprint of the last callback answered...
    last_reply: str | None = None  # ...and the exact reply body, for duplicates
    state: dict[str, Any] = field(default_factory=dict)
    interrupt: dict[str, Any] | None = None  # {"target": command_id, "then": action}
    hold: dict[str, Any] | None = None  # {"until": epoch, "step": name} while a slow handler runs
    pending: dict[str, Any] | None = None  # a slow handler's finished reply, to deliver
    ended: bool = False

    def to_json(self) -> dict[str, Any]:
        # Drop empty fields: smaller records, smaller Redis payloads. No deep copy
        # (asdict): the store serialises the values at once.
        data: dict[str, Any] = {"flow": self.flow}
        for name in _FIELD_NAMES:
            value = getattr(self, name)
            if value is not None and value != {} and value is not False and value != 0:
                data[name] = value
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        return cls(**{k: v for k, v in data.items() if k in _FIELDS})


_FIELDS = frozenset(CallRecord.__dataclass_fields__)
_FIELD_NAMES = tuple(name for name in CallRecord.__dataclass_fields__ if name != "flow")
