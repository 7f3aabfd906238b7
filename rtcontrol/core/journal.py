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
JSON arrays (see ``_entry_json``).
"""

from __future__ import annotations

import json
import re
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .actions import Action

__all__ = ["Entry", "Journal", "Once", "Patch", "Report", "Sent", "digest"]


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
    #: :func:`digest` of the parameters: what a replay must ask for again. The
    #: parameters themselves are not kept (a prompt's text is most of a command).
    digest: str
    report: Report | None = None

    def describe(self) -> str:
        return f"{self.name}(...) with parameters of digest {self.digest}"


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


class Journal:
    """One run of a straight-line flow.

    ``version``: the flow version the call started on; ``data``: the state it started
    with (``start_call(data=...)``); ``epoch``: a random id of this run (a
    ``call.restart()`` starts another); ``done``: the flow returned, its last
    command is the call's last.

    Entries are stored as one text, a line of compact JSON per entry (JSON escapes
    newlines, so a line is an entry): the record's JSON carries one string rather than
    a list of lists, and an entry is decoded only when read. A callback resumed on the
    worker holding the flow reads only the last one.
    """

    __slots__ = ("_decoded", "_raw", "data", "done", "epoch", "version")

    def __init__(
        self,
        version: str,
        epoch: str,
        data: dict[str, Any] | None = None,
        entries: list[Entry] | None = None,
        done: bool = False,
        *,
        raw: list[str] | None = None,
    ) -> None:
        self.version = version
        self.epoch = epoch
        self.data = data if data is not None else {}
        self.done = done
        self._raw: list[str] = raw if raw is not None else []
        self._decoded: list[Entry | None] = [None] * len(self._raw)
        for entry in entries or ():
            self.append(entry)

    def __len__(self) -> int:
        return len(self._raw)

    def __getitem__(self, i: int) -> Entry:
        entry = self._decoded[i]
        if entry is None:
            entry = self._decoded[i] = _entry_from_line(self._raw[i])
        return entry

    @property
    def entries(self) -> list[Entry]:
        """Every entry, decoded (a copy: change the journal with :meth:`append`)."""
        return [self[i] for i in range(len(self._raw))]

    def append(self, entry: Entry) -> None:
        self._raw.append(_entry_line(entry))
        self._decoded.append(entry)

    def report_last(self, report: Report) -> Sent:
        """The waiting command's report came: record it. Returns the entry."""
        waiting = self.waiting
        assert waiting is not None
        entry = Sent(waiting.name, waiting.digest, report)
        self._raw[-1] = _entry_line(entry)
        self._decoded[-1] = entry
        return entry

    def same_line(self, i: int, other: Journal) -> bool:
        """Entry ``i`` is stored identically in both journals."""
        return self._raw[i] == other._raw[i]

    def adopt(self, i: int, other: Journal) -> None:
        """Take ``other``'s decoded entry ``i`` (the same line), saving a decode."""
        if self._decoded[i] is None:
            self._decoded[i] = other._decoded[i]

    def copy(self) -> Journal:
        """A copy whose entries can change without touching this one."""
        twin = object.__new__(Journal)
        twin.version, twin.epoch, twin.data, twin.done = (
            self.version,
            self.epoch,
            self.data,
            self.done,
        )
        twin._raw = list(self._raw)
        twin._decoded = list(self._decoded)
        return twin

    @property
    def waiting(self) -> Sent | None:
        """The last command, when its report has not come yet."""
        if not self._raw:
            return None
        last = self[-1]
        return last if isinstance(last, Sent) and last.report is None else None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Journal) and self.to_json() == other.to_json()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Journal v{self.version} {self.epoch} {len(self)} entries>"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"v": self.version, "e": self.epoch, "j": "\n".join(self._raw)}
        if self.data:
            data["d"] = self.data
        if self.done:
            data["x"] = True
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Journal:
        journal = object.__new__(cls)
        journal.version = str(data["v"])
        journal.epoch = str(data["e"])
        journal.data = dict(data.get("d") or {})
        journal.done = bool(data.get("x"))
        text = data.get("j")
        journal._raw = str(text).split("\n") if text else []
        journal._decoded = [None] * len(journal._raw)
        return journal


#: One entry's line: compact JSON (which never holds a raw newline).
_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

#: First item of the stored forms of ``Once`` and ``Patch`` (never a command name).
ONCE, PATCH = "!o", "!p"


def _entry_json(entry: Entry) -> list[Any]:
    """``[name, digest]`` (waiting), ``[name, digest, result]``, ``[name, digest, result,
    error]``, ``[name, digest, result, error, action]``; ``["!o", what, value]``;
    ``["!p", name]``."""
    if isinstance(entry, Sent):
        report = entry.report
        if report is None:
            return [entry.name, entry.digest]
        if report.action is not None:
            return [entry.name, entry.digest, report.result, report.error, report.action.to_json()]
        if report.error:
            return [entry.name, entry.digest, report.result, report.error]
        return [entry.name, entry.digest, report.result]
    if isinstance(entry, Once):
        return [ONCE, entry.what, entry.value]
    return [PATCH, entry.name]


def _entry_line(entry: Entry) -> str:
    """One entry's stored line. Commands read as ``name digest`` (waiting) or ``name
    digest result`` (space-separated: names and digests hold no space, the result takes
    the rest of the line); anything else, or a result holding a newline, as compact JSON
    (its line starts with ``[``)."""
    if isinstance(entry, Sent):
        report = entry.report
        if report is None:
            return f"{entry.name} {entry.digest}"
        if report.action is None and not report.error and "\n" not in report.result:
            return f"{entry.name} {entry.digest} {report.result}"
    return _LINE.encode(_entry_json(entry))


def _entry_from_line(line: str) -> Entry:
    if line.startswith("["):
        return _entry_from_json(json.loads(line))
    parts = line.split(" ", 2)
    if len(parts) == 2:
        return Sent(parts[0], parts[1])
    return Sent(parts[0], parts[1], Report(parts[2], ""))


def _entry_from_json(item: list[Any]) -> Entry:
    kind = item[0]
    if kind == ONCE:
        return Once(str(item[1]), item[2])
    if kind == PATCH:
        return Patch(str(item[1]))
    report = None
    if len(item) > 2:
        action = Action.from_json(item[4]) if len(item) > 4 else None
        report = Report(str(item[2]), str(item[3]) if len(item) > 3 else "", action)
    return Sent(str(kind), str(item[1]), report)


def digest(params: Mapping[str, Any]) -> str:
    """8 hex digits naming ``params``: equal parameters (in the builders' order),
    equal digests. A replay check, not a signature; stable across processes."""
    return f"{zlib.crc32(repr(params).encode()):08x}"


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
