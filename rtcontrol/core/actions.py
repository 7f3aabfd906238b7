"""Commands as stored, and what an interrupt does: shared by the record and the journal."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from ..commands import Command

__all__ = ["Action", "ActionKind", "command_from_json", "command_to_json"]


def command_to_json(command: Command) -> dict[str, Any]:
    return {"name": command.name, "params": command.wire_params(), "step": command.step}


def command_from_json(data: dict[str, Any]) -> Command:
    """A command read back from the store; it was checked before it was stored."""
    command = Command(str(data["name"]), dict(data.get("params") or {}), data.get("step"))
    object.__setattr__(command, "_checked", True)
    return command


class ActionKind(StrEnum):
    COMMAND = "command"  # send this command instead
    STEP = "step"  # run this step of the call's flow
    BREAK = "break"  # run the flow's on_break hook (or the step reading the early result)


@dataclass(frozen=True, slots=True)
class Action:
    """What an interrupt does once the broken command reports."""

    kind: ActionKind
    command: Command | None = None
    step: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind.value}
        if self.command is not None:
            data["command"] = command_to_json(self.command)
        if self.step is not None:
            data["step"] = self.step
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Action:
        command = data.get("command")
        return cls(
            ActionKind(data["kind"]),
            command_from_json(command) if isinstance(command, dict) else None,
            data.get("step"),
        )
