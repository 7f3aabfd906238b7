"""Callee scripts as data: the JSON (or YAML) form of :class:`~rtcontrol.emulator.Callee`.

::

    {"answer": "answer", "answer_delay": 2, "when_done": "hangup",
     "actions": [{"press": "1"}, {"silence": true}, {"speak": 4}, {"hangup": 2}]}

Actions: ``{"press": "12#", "after": 1, "barge_in": false}``, ``{"silence": true}``,
``{"speak": SECONDS}``, ``{"hangup": AFTER}``, ``{"leave": AFTER}``. The other keys are
:class:`Callee`'s own (``hangup_after``, ``hangup_during``, ``hangup_delay``, ``name``).

A script file holds one callee (every number reaches it), or
``{"default": CALLEE, "phonebook": {"+33600000001": CALLEE, ...}}``. The README's
"Callee scripts" section documents every key, with a YAML example its tests load.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .callee import Action, Callee, HangUp, Leave, Press, Silence, Speak

__all__ = ["CalleeScript", "ScriptFile", "callee_from_json", "callee_to_json", "load_script"]


class _Action(BaseModel):
    model_config = ConfigDict(extra="forbid")

    press: str | None = None
    after: float | None = Field(None, ge=0)
    barge_in: bool = False
    silence: bool | None = None
    speak: float | None = Field(None, ge=0)
    hangup: float | None = Field(None, ge=0)
    leave: float | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_kind(self) -> _Action:
        kinds = [k for k in ("press", "silence", "speak", "hangup", "leave") if getattr(self, k)]
        kinds += [k for k in ("speak", "hangup", "leave") if getattr(self, k) == 0]
        if len(set(kinds)) != 1:
            raise ValueError("an action is one of press, silence, speak, hangup, leave")
        if self.after is not None and kinds[0] != "press":
            raise ValueError("after goes with press (hangup and leave take their own delay)")
        return self

    def build(self) -> Action:
        if self.press is not None:
            return Press(self.press, 1.0 if self.after is None else self.after, self.barge_in)
        if self.speak is not None:
            return Speak(self.speak)
        if self.hangup is not None:
            return HangUp(self.hangup)
        if self.leave is not None:
            return Leave(self.leave)
        return Silence()


class CalleeScript(BaseModel):
    """A :class:`Callee` as JSON; :meth:`build` makes the callee (or raises ValueError)."""

    model_config = ConfigDict(extra="forbid")

    answer: Literal["answer", "noanswer", "busy", "congestion", "rejected"] = "answer"
    answer_delay: float = Field(2.0, ge=0)
    actions: list[_Action] = Field(default_factory=list)
    hangup_after: float | None = Field(None, ge=0)
    hangup_during: int | str | None = None
    hangup_delay: float = Field(0.0, ge=0)
    when_done: Literal["silent", "hangup"] = "silent"
    name: str = ""

    def build(self) -> Callee:
        return Callee(
            self.answer,
            self.answer_delay,
            [a.build() for a in self.actions],
            hangup_after=self.hangup_after,
            hangup_during=self.hangup_during,
            hangup_delay=self.hangup_delay,
            when_done=self.when_done,
            name=self.name,
        )


class ScriptFile(BaseModel):
    """A script file: a default callee and callees by number."""

    model_config = ConfigDict(extra="forbid")

    default: CalleeScript | None = None
    phonebook: dict[str, CalleeScript] = Field(default_factory=dict)


def _message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "script"
    return f"{where}: {first['msg']}"


def callee_from_json(data: Any) -> Callee:
    """Build a callee from its JSON form; ``ValueError`` (one line) when it is invalid."""
    try:
        return CalleeScript.model_validate(data).build()
    except ValidationError as exc:
        raise ValueError(f"invalid callee script: {_message(exc)}") from None
    except ValueError as exc:  # Press, Callee: digits, delays
        raise ValueError(f"invalid callee script: {exc}") from None


def _action_json(action: Action) -> dict[str, Any]:
    if isinstance(action, Press):
        return {"press": action.digits, "after": action.after, "barge_in": action.barge_in}
    if isinstance(action, Speak):
        return {"speak": action.seconds}
    if isinstance(action, HangUp):
        return {"hangup": action.after}
    if isinstance(action, Leave):
        return {"leave": action.after}
    return {"silence": True}


def callee_to_json(callee: Callee) -> dict[str, Any]:
    """The JSON form of a callee (what :func:`callee_from_json` reads back)."""
    return {
        "answer": callee.answer,
        "answer_delay": callee.answer_delay,
        "actions": [_action_json(a) for a in callee.actions],
        "hangup_after": callee.hangup_after,
        "hangup_during": callee.hangup_during,
        "hangup_delay": callee.hangup_delay,
        "when_done": callee.when_done,
        "name": callee.name,
    }


def load_script(path: str | Path) -> tuple[Callee | None, dict[str, Callee]]:
    """Read a JSON or YAML script file: ``(default callee, phonebook)``.

    ``OSError`` when it cannot be read, ``ValueError`` (one line) when it is invalid.
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            yaml = importlib.import_module("yaml")  # PyYAML comes with uvicorn[standard]
            data = yaml.safe_load(text)
        else:
            data = json.loads(text)
    except ValueError as exc:  # JSONDecodeError and yaml.YAMLError's subclasses
        raise ValueError(f"{path.name} is not valid JSON/YAML: {exc}") from None
    except Exception as exc:  # yaml.YAMLError is not a ValueError
        raise ValueError(f"{path.name} is not valid YAML: {' '.join(str(exc).split())}") from None
    try:
        if isinstance(data, dict) and ({"default", "phonebook"} & data.keys()):
            found = ScriptFile.model_validate(data)
            default = found.default.build() if found.default else None
            return default, {n: c.build() for n, c in found.phonebook.items()}
        return CalleeScript.model_validate(data).build(), {}
    except ValidationError as exc:
        raise ValueError(f"{path.name}: invalid callee script: {_message(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"{path.name}: invalid callee script: {exc}") from None
