"""The journal of a straight-line call: every command sent, every result received.

A straight-line flow (``digits = await call.read(...)``) is one coroutine. A worker
that does not hold that coroutine rebuilds it by running the flow again from the
top and answering each ``await`` from the journal, so the journal must say, in order:

* :class:`Sent`: a command the flow sent, its parameters (to check a replay asks
  for the same thing) and, once it came, the platform's :class:`Report`;
* :class:`Once`: the JSON result of a ``call.once(fn, ...)`` side effect;
* :class:`Patch`: a ``call.patched(name)`` mark (the call took a patched branch).

The journal lives in the call's record, so it is written in the same store round
trip as the reply that sends its newest command: it is durable exactly when the
command is. Entries are small frozen dataclasses; their stored form is compact
JSON arrays (``["c", name, params, result, error, action]``, ``["o", what, value]``,
``["p", name]``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

from .actions import Action

__all__ = ["Entry", "Journal", "Once", "Patch", "Report", "Sent", "same_params"]


@dataclass(frozen=True, slots=True)
class Report:
    """What the platform reported for a command (spec §4: ``command_result`` and
    ``command_error``). ``action``: the interrupt that broke the command, if any."""

    result: str
    error: str
    action: Action | None = None


@dataclass(frozen=True, slots=True)
class Sent:
    """A command sent by the flow (``report`` is None until its callback came)."""

    name: str
    params: dict[str, Any]
    report: Report | None = None

    def describe(self) -> str:
        return describe(self.name, self.params)


@dataclass(frozen=True, slots=True)
class Once:
    """The result of ``call.once(fn, ...)``; ``what`` names ``fn``."""

    what: str
    value: Any


@dataclass(frozen=True, slots=True)
class Patch:
    """``call.patched(name)`` answered True here."""

    name: str


Entry = Sent | Once | Patch


@dataclass(slots=True)
class Journal:
    """One run of a straight-line flow.

    ``version``: the flow version the call started on; ``data``: the state it started
    with (``start_call(data=...)``); ``epoch``: a random id of this run (a
    ``call.restart()`` starts another); ``done``: the flow returned, its last
    command is the call's last.
    """

    version: str
    epoch: str
    data: dict[str, Any] = field(default_factory=dict)
    entries: list[Entry] = field(default_factory=list)
    done: bool = False

    def copy(self) -> Journal:
        """A copy whose entry list can grow without touching this one."""
        return replace(self, entries=list(self.entries))

    @property
    def waiting(self) -> Sent | None:
        """The last command, when its report has not come yet."""
        last = self.entries[-1] if self.entries else None
        return last if isinstance(last, Sent) and last.report is None else None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": self.version, "e": self.epoch, "j": _entries_json(self)}
        if self.data:
            data["d"] = self.data
        if self.done:
            data["x"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        return cls(
            version=str(data["v"]),
            epoch=str(data["e"]),
            data=dict(data.get("d") or {}),
            entries=[_entry_from_json(item) for item in data.get("j") or ()],
            done=bool(data.get("x")),
        )


def _entries_json(journal: Journal) -> list[list[Any]]:
    out: list[list[Any]] = []
    for entry in journal.entries:
        if isinstance(entry, Sent):
            item: list[Any] = ["c", entry.name, entry.params]
            report = entry.report
            if report is not None:
                item += [report.result, report.error]
                if report.action is not None:
                    item.append(report.action.to_json())
            out.append(item)
        elif isinstance(entry, Once):
            out.append(["o", entry.what, entry.value])
        else:
            out.append(["p", entry.name])
    return out


def _entry_from_json(item: list[Any]) -> Entry:
    kind = item[0]
    if kind == "c":
        report = None
        if len(item) >= 5:
            action = Action.from_json(item[5]) if len(item) > 5 else None
            report = Report(str(item[3]), str(item[4]), action)
        return Sent(str(item[1]), dict(item[2]), report)
    if kind == "o":
        return Once(str(item[1]), item[2])
    return Patch(str(item[1]))


def _canonical(params: dict[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def same_params(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Equal as the platform would see them (JSON, key order ignored)."""
    return a == b or _canonical(a) == _canonical(b)


_NUMBER = re.compile(r"\+?\d{6,}")


def mask_numbers(text: str) -> str:
    """Phone numbers (6 digits or more) shown as their first 3 and last 2 digits."""
    return _NUMBER.sub(lambda m: m[0][:3] + "*" * (len(m[0]) - 5) + m[0][-2:], text)


def describe(name: str, params: dict[str, Any], limit: int = 120) -> str:
    """``read(media_id=..., max_digits=4)`` shortened to ``limit`` characters, phone
    numbers masked (it goes to logs)."""
    args = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in params.items())
    text = mask_numbers(f"{name}({args})")
    return text if len(text) <= limit else text[: limit - 4] + "...)"
