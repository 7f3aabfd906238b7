"""Reading an app's reply the way a strict platform would.

A reply is sorted into one of three verdicts:

* :class:`Malformed`: not an RT.Response at all (not JSON, not an object, ``command`` or
  ``command_id`` missing or of the wrong JSON type, ``params``/``variables`` not objects).
  Handled by ``settings.on_invalid_json``.
* :class:`Refused`: a well-formed envelope whose command breaks the spec (unknown name,
  unknown/missing parameter, value out of range), checked with
  :func:`rtcontrol.commands.from_wire`. Handled by ``settings.on_invalid_command``.
* :class:`Accepted`: the validated :class:`~rtcontrol.commands.Command`.

Nothing is accepted silently: even ignored extra keys are reported in ``notes``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from rtcontrol.commands import BUILDERS, Command, from_wire
from rtcontrol.errors import CommandError
from rtcontrol.protocol import check_json_value

from .settings import EmulatorSettings

__all__ = ["REPLY_KEYS", "Accepted", "Malformed", "Refused", "check_reply", "decode_json"]

REPLY_KEYS = ("command", "command_id", "params", "variables")


@dataclass(frozen=True)
class Accepted:
    command: Command
    command_id: int | str
    variables: dict[str, Any]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Refused:
    name: str
    command_id: int | str
    variables: dict[str, Any]
    error: str
    detail: str
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Malformed:
    detail: str


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(raw: bytes) -> Any:
    """Strict JSON: UTF-8 only, no NaN/Infinity, bounded nesting."""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _command_id(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))


def check_reply(
    body: Any, settings: EmulatorSettings, previous: dict[str, Any]
) -> Accepted | Refused | Malformed:
    """Sort a decoded reply; ``previous`` is the variables object currently held."""
    if not isinstance(body, dict):
        return Malformed(f"reply must be a JSON object, got {type(body).__name__}")
    name = body.get("command")
    if not isinstance(name, str):
        return Malformed("'command' is missing or not a string")
    if "command_id" not in body or not _command_id(body["command_id"]):
        return Malformed("'command_id' is missing or not an integer or string")
    command_id: int | str = body["command_id"]
    if "params" in body:
        params = body["params"]
    elif settings.missing_params == "empty":
        params = {}
    else:
        return Malformed("'params' is missing (send {} for none)")
    if not isinstance(params, dict):
        return Malformed("'params' must be a JSON object")
    if "variables" in body:
        variables = body["variables"]
    elif settings.missing_variables == "invalid_response":
        return Malformed("'variables' is missing")
    else:
        variables = previous if settings.missing_variables == "keep" else {}
    if not isinstance(variables, dict):
        return Malformed("'variables' must be a JSON object")
    try:
        check_json_value(variables)
    except ValueError as exc:
        return Malformed(f"'variables' cannot be echoed: {exc}")
    notes = [f"extra key {key!r} ignored" for key in body if key not in REPLY_KEYS]
    try:
        command = from_wire(name, params)
    except (CommandError, TypeError, ValueError) as exc:
        token = (
            settings.error_invalid_params if name in BUILDERS else settings.error_unknown_command
        )
        return Refused(name, command_id, variables, token, str(exc), notes)
    return Accepted(command, command_id, variables, notes)
