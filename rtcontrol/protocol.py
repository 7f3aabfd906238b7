"""Wire models of the REALTIME10 protocol: what the platform POSTs and what we answer.

Inbound models accept and ignore unknown fields, so a new platform field never
breaks an app. Types are strict where the platform is exact (``callid`` is an
unsigned 64-bit integer, nothing else) and lenient where it is loose (a string
field sent as ``null`` reads as ``""``).
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr

__all__ = [
    "CALLID_MAX",
    "CallId",
    "CallStatus",
    "CommandId",
    "RTRequest",
    "RTResponse",
    "check_json_value",
    "is_terminal",
]

CALLID_MAX = 2**64 - 1

#: A CALLR call id: a JSON integer in 0..2**64-1. Floats, booleans and strings are refused.
CallId = Annotated[int, Field(strict=True, ge=0, le=CALLID_MAX)]

#: The id we give a command; the platform echoes it with its JSON type.
CommandId = StrictInt | StrictStr

#: How deep ``variables`` may nest. Deeper objects are refused (4xx), never a RecursionError.
MAX_VARIABLES_DEPTH = 32


class CallStatus(StrEnum):
    """Values of ``call_status``. Unknown values are kept as plain strings."""

    INCOMING_CALL = "INCOMING_CALL"
    UP = "UP"
    HANGUP = "HANGUP"
    BUSY = "BUSY"
    NOANSWER = "NOANSWER"
    CONGESTION = "CONGESTION"
    REJECTED = "REJECTED"

    @property
    def ended(self) -> bool:
        """True for every status after which no command can be run."""
        return self not in LIVE_STATUSES


#: The statuses of a call that can still run commands. Every other value, known or
#: not, is terminal (see :func:`is_terminal`).
LIVE_STATUSES = frozenset({CallStatus.INCOMING_CALL, CallStatus.UP})


def is_terminal(status: CallStatus | str) -> bool:
    """Has the call ended? The one answer to that question (spec §6).

    Unknown values (a dial status such as ``CHANUNAVAIL`` on an outbound call's
    first POST, or anything new) are terminal: running a flow on a call that cannot
    take commands is worse than ending one early, and ``on_hangup`` then runs.
    """
    return status not in LIVE_STATUSES


_STATUSES = {s.value: s for s in CallStatus}


def check_json_value(value: Any, depth: int = 0) -> Any:
    """Refuse NaN, Infinity and over-deep nesting: they cannot be echoed back as JSON.

    ``depth`` counts objects/arrays only: an object or array may sit at most
    ``MAX_VARIABLES_DEPTH`` levels below the top-level value; scalars add no level.
    """
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number")
    elif isinstance(value, dict | list):
        if depth > MAX_VARIABLES_DEPTH:
            raise ValueError("nested too deeply")
        items = value.values() if isinstance(value, dict) else value
        for item in items:
            check_json_value(item, depth + 1)
    return value


def _variables(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, dict):
        check_json_value(value)
    return value


def _status(value: Any) -> Any:
    if isinstance(value, str):
        return _STATUSES.get(value, value)
    return value


def _null_is_empty(value: Any) -> Any:
    return "" if value is None else value


Text = Annotated[StrictStr, BeforeValidator(_null_is_empty)]
Variables = Annotated[dict[str, Any], BeforeValidator(_variables)]
Status = Annotated[CallStatus | StrictStr, BeforeValidator(_status)]


class RTRequest(BaseModel):
    """One POST from the platform: the call, its status, and the last command's outcome."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    app: Text = ""
    callid: CallId
    request_hash: StrictStr | None = None
    cli_name: Text = ""
    cli_number: Text = ""
    date_started: Text = ""
    number: Text = ""
    command: Text = ""
    command_id: CommandId = 0
    command_result: Text = ""
    command_error: Text = ""
    call_status: Status
    cdr_field: Text = ""
    variables: Variables = Field(default_factory=dict)

    @property
    def is_first(self) -> bool:
        """The first POST of a call carries no command (``command_id`` 0 or ``""``)."""
        return not self.command_id and not self.command

    @property
    def is_outbound(self) -> bool:
        """Outbound calls carry the request hash ``calls.realtime`` returned."""
        return self.request_hash is not None


class RTResponse(BaseModel):
    """Our answer: one command, its id, its parameters and the variables to echo."""

    model_config = ConfigDict(extra="ignore")

    command: StrictStr
    command_id: CommandId
    params: dict[str, Any] = Field(default_factory=dict)
    variables: Variables = Field(default_factory=dict)
