"""Reply bodies: encoding, the built-in replies, and the replay envelope.

rtcontrol keeps its own data inside ``variables`` under one reserved key,
``_rtc``. It is read once, by :func:`unwrap`, when a callback arrives, and never
reaches a handler; a handler cannot forge it (:func:`encode` drops the key).

The replay envelope: when the store cannot be used (unreachable, slow, the call
locked by a crashed worker), the caller hears a short hold whose ``variables``
carry the report being answered. When the hold ends the platform POSTs them back,
and :func:`unwrap` restores the original report, so nothing is lost.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic_core import to_json

from ..commands import Command, wait
from ..protocol import RTRequest, is_terminal

__all__ = [
    "EMPTY",
    "REPLAY_HOLD",
    "RESERVED",
    "ReplayEnvelope",
    "encode",
    "strip_reserved",
    "unwrap",
    "wrap",
]

RESERVED = "_rtc"  # key of rtcontrol's own data inside ``variables``
EMPTY = b"{}"
REPLAY_HOLD = wait(1)


def encode(
    command: Command,
    command_id: int | str,
    variables: Mapping[str, Any],
    *,
    reserved: bool = False,
) -> bytes:
    """The exact reply body. ``variables`` must have passed ``validate.check_outgoing``;
    ``reserved``: they carry rtcontrol's own replay envelope (see :func:`wrap`)."""
    if not reserved and RESERVED in variables:  # a handler cannot forge replay data
        variables = strip_reserved(variables)
    return to_json(
        {
            "command": command.name,
            "command_id": command_id,
            # the frozen params as they are: _FrozenDict is a dict, tuples encode as arrays
            "params": dict(command.params),
            "variables": variables,
        }
    )


def strip_reserved(variables: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in variables.items() if k != RESERVED}


@dataclass(frozen=True, slots=True)
class ReplayEnvelope:
    """A report held back while the store was not ready, and how often that happened.

    ``holds``: holds given so far for this report; ``since``: wall time of the
    first one (bounds how long a first callback may wait for its binding).
    """

    command: str
    command_id: int | str
    result: str
    error: str
    status: str
    holds: int
    since: float


def wrap(req: RTRequest, holds: int, since: float) -> dict[str, Any]:
    """``variables`` for a replay hold: the handler's variables plus the envelope."""
    variables = dict(req.variables)
    variables[RESERVED] = {
        "replay": [
            req.command,
            req.command_id,
            req.command_result,
            req.command_error,
            str(req.call_status),
        ],
        "n": holds,
        "t": since,
    }
    return variables


def unwrap(req: RTRequest) -> tuple[RTRequest, ReplayEnvelope | None]:
    """The original report (if the callback carries an envelope) and the envelope.

    A terminal status is never replaced: the call ended, whatever was held back.
    The status is the call's status now (the hold answered an incoming call: UP);
    the report is recognised by its ``command_id``, not by its status.
    A malformed envelope is dropped (the callback is handled as it came).
    """
    data = req.variables.get(RESERVED)
    if data is None:
        return req, None
    variables = strip_reserved(req.variables)
    replay = data.get("replay") if isinstance(data, dict) else None
    if not (isinstance(replay, list) and len(replay) in (4, 5)):
        return req.model_copy(update={"variables": variables}), None
    command, command_id, result, error, *rest = replay
    if not isinstance(command_id, int | str) or isinstance(command_id, bool):
        return req.model_copy(update={"variables": variables}), None
    n, since = data.get("n", 0), data.get("t", 0.0)
    holds = n if isinstance(n, int) and not isinstance(n, bool) and n >= 0 else 0
    first = float(since) if isinstance(since, int | float) and not isinstance(since, bool) else 0.0
    status = str(rest[0]) if rest and isinstance(rest[0], str) else str(req.call_status)
    envelope = ReplayEnvelope(
        str(command), command_id, str(result), str(error), status, holds, first
    )
    if is_terminal(req.call_status):
        return req.model_copy(update={"variables": variables}), envelope
    update: dict[str, Any] = {
        "variables": variables,
        "command": envelope.command,
        "command_id": command_id,
        "command_result": envelope.result,
        "command_error": envelope.error,
    }
    return req.model_copy(update=update), envelope
