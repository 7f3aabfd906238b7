"""One validator for what rtcontrol receives and what it sends.

The same rules apply in both directions, so whatever we send the platform can echo
back to us (spec §4: ``variables`` come back on the next POST):

* JSON values: finite numbers only (no NaN, no Infinity), string keys, objects and
  arrays nested at most :data:`MAX_DEPTH` levels;
* ``variables`` we send: small enough that the platform's next POST, which echoes
  them, stays under our own body limit (:func:`variables_limit`);
* commands we send: a known REALTIME10 command with parameters that pass the
  builders' checks (``rtcontrol.commands.from_wire``);
* per-call ``state``: JSON, because the store keeps it as JSON.

Inbound, ``rtcontrol.protocol`` applies :func:`check_json_value` (defined there,
below the commands, and re-exported here) to ``variables``;
outbound, the engine calls :func:`check_outgoing` and :func:`encode_json`. A
violation is an :class:`~rtcontrol.errors.OutputError` naming the cause, never the
value.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .commands import Command, from_wire
from .errors import CommandError, OutputError
from .protocol import MAX_VARIABLES_DEPTH, check_json_value

__all__ = [
    "HEADROOM",
    "MAX_DEPTH",
    "check_command",
    "check_json_value",
    "check_outgoing",
    "encode_json",
    "encode_record",
    "variables_limit",
]

#: How deep ``variables`` may nest (objects/arrays below the top value); state is only
#: held to what JSON can carry.
#: The inbound rule (``rtcontrol.protocol``) and this one are the same definition.
MAX_DEPTH = MAX_VARIABLES_DEPTH
#: Bytes kept free under the body limit for the rest of the platform's POST
#: (callid, numbers, command result...) when it echoes our ``variables``.
HEADROOM = 4096

_encoder = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def variables_limit(max_body: int) -> int:
    """Largest encoded ``variables`` we send, in bytes, for a body limit of ``max_body``."""
    return max(max_body - HEADROOM, 256)


def encode_json(value: Any, what: str) -> str:
    """Compact JSON text of ``value``, or :class:`OutputError` naming ``what`` and the cause.

    Refuses what JSON cannot carry faithfully: NaN/Infinity, non-string keys, sets,
    datetimes and other objects, and nesting deeper than :data:`MAX_DEPTH`.
    """
    try:
        check_json_value(value)
        return _encoder.encode(_checked_keys(value, what))
    except OutputError:
        raise
    except ValueError as exc:
        raise OutputError(f"{what}: {_cause(exc)}") from None
    except (TypeError, RecursionError) as exc:
        raise OutputError(f"{what}: {_cause(exc)}") from None


def _checked_keys(value: Any, what: str) -> Any:
    # json would silently turn int/float/bool/None keys into strings: a changed value.
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise OutputError(f"{what}: object keys must be strings, got {type(key).__name__}")
            _checked_keys(item, what)
    elif isinstance(value, list):
        for item in value:
            _checked_keys(item, what)
    return value


def _cause(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    text = str(exc)
    if "is not JSON serializable" in text:
        kind = text.split("Object of type ", 1)[-1].split(" ", 1)[0]
        return f"{kind} is not JSON (use str, int, float, bool, None, list or dict)"
    if "Out of range float" in text:
        return "non-finite number"
    return text.splitlines()[0][:120] if text else type(exc).__name__


def encode_record(record: dict[str, Any], state: Any, what: str) -> str:
    """Compact JSON text of a stored record whose ``state`` a handler may have changed.

    The C encoder refuses what JSON cannot carry (NaN/Infinity, sets, datetimes and
    other objects, runaway nesting); every key in ``state`` must be a string (JSON
    would silently turn ``1`` into ``"1"``). Raises :class:`OutputError` naming ``what``.
    """
    try:
        _checked_keys(state, what)
        return _encoder.encode(record)
    except OutputError:
        raise
    except (ValueError, TypeError, RecursionError) as exc:
        raise OutputError(f"{what}: {_cause(exc)}") from None


def check_command(command: Any) -> Command:
    """The command itself, if it may be sent; else :class:`OutputError`.

    Commands made by the builders were checked when built; a hand-built
    ``Command(...)`` goes through the same checks as a command received on the wire.
    """
    if not isinstance(command, Command):
        raise OutputError(
            f"returned {type(command).__name__}, not a command; return a command built "
            "with rtcontrol's builders (play, read, hangup...)"
        )
    if command.checked:
        return command
    try:
        from_wire(command.name, command.wire_params())
    except CommandError as exc:
        raise OutputError(
            f"invalid command: {exc.command}: parameter {exc.param!r} must be {exc.allowed}"
        ) from None
    except (TypeError, ValueError) as exc:
        raise OutputError(f"invalid command {command.name!r}: {_cause(exc)}") from None
    return command


def check_outgoing(variables: Mapping[str, Any], max_body: int) -> str:
    """The encoded ``variables`` of a reply, or :class:`OutputError` (not JSON, too deep,
    too big for the platform's echo to pass our own body limit)."""
    text = encode_json(dict(variables), "set call.variables that cannot be sent")
    limit = variables_limit(max_body)
    size = len(text.encode()) if not text.isascii() else len(text)
    if size > limit:
        raise OutputError(
            f"set call.variables too large to send: {size} bytes encoded, more than {limit} "
            f"(the platform echoes them in its next POST, which must stay under "
            f"RTCONTROL_MAX_BODY={max_body}); keep large data in call.state"
        )
    return text
