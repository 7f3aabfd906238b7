"""What the engine keeps per call: one JSON object, typed here.

One object per call keeps a callback at two store round trips: lock and read,
then write and unlock. Sub-records are small frozen dataclasses, never dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..commands import Command
from .actions import Action, ActionKind, command_from_json, command_to_json
from .journal import Journal

__all__ = [
    "Action",
    "ActionKind",
    "CallRecord",
    "HangupTicket",
    "HoldTicket",
    "Interrupt",
    "Pending",
    "command_from_json",
    "command_to_json",
]

#: How many recent replies a record keeps, keyed by the report they answered.
REPLIES_KEPT = 2

CommandId = int | str


@dataclass(frozen=True, slots=True)
class Interrupt:
    """An interrupt waiting for the report of ``target`` (the command it broke)."""

    target: CommandId | None
    action: Action
    #: The break for ``target`` is still to be sent (by the delivery of a straight-line
    #: flow's next command): the first break ended an earlier hold.
    rearmed: bool = False

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"target": self.target, "action": self.action.to_json()}
        if self.rearmed:
            data["rearmed"] = True
        return data


@dataclass(frozen=True, slots=True)
class HoldTicket:
    """A slow handler runs behind the hold. ``until``: wall time it may run to;
    ``token``: which background run may deliver (a later one replaces it);
    ``request``: the report that started the step (JSON), to run it again if its
    worker dies; ``interrupted``: it was an interrupt's step."""

    token: str
    until: float
    step: str
    request: dict[str, Any] | None = None
    interrupted: bool = False


@dataclass(frozen=True, slots=True)
class Pending:
    """A slow handler's finished command, waiting for its hold to end."""

    command: Command
    variables: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HangupTicket:
    """The call ended; ``on_hangup`` runs from this, after the reply.

    ``request``: the terminal RT.Request (JSON), ``attempt``: runs started so far,
    ``due``: wall time after which another worker may take the run over,
    ``done``: it completed (or failed for good).
    """

    request: dict[str, Any]
    due: float
    attempt: int = 1
    done: bool = False


@dataclass(slots=True)
class CallRecord:
    """Server-side state of one call."""

    flow: str
    app: str = ""
    seq: int = 0
    #: command_id of the command the platform runs now: the only report that is new.
    current: CommandId | None = None
    #: report key (see ``keys.report_key``) -> the exact reply body sent for it.
    replies: dict[str, str] = field(default_factory=dict)
    state: dict[str, Any] = field(default_factory=dict)
    interrupt: Interrupt | None = None
    hold: HoldTicket | None = None
    pending: Pending | None = None
    hangup: HangupTicket | None = None
    ended: bool = False
    #: A straight-line call's journal (see ``journal``); None for a step-style call.
    journal: Journal | None = None
    #: Not stored: the state a new call started with (``start_call`` data), kept in
    #: case its first step leaves a state that cannot be stored.
    initial: dict[str, Any] | None = None
    #: Not stored: keys to delete once this record is durable (the outbound binding).
    cleanup: tuple[str, ...] = ()

    def remember(self, report: str, body: bytes) -> None:
        """Keep ``body`` as the answer to ``report``, dropping the oldest beyond the limit."""
        replies = self.replies
        replies.pop(report, None)
        replies[report] = body.decode()
        while len(replies) > REPLIES_KEPT:
            del replies[next(iter(replies))]

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"flow": self.flow}
        if self.app:
            data["app"] = self.app
        if self.seq:
            data["seq"] = self.seq
        if self.current is not None:
            data["current"] = self.current
        if self.replies:
            data["replies"] = self.replies
        if self.state:
            data["state"] = self.state
        if self.interrupt is not None:
            data["interrupt"] = self.interrupt.to_json()
        if self.hold is not None:
            h = self.hold
            data["hold"] = {"token": h.token, "until": h.until, "step": h.step}
            if h.request is not None:
                data["hold"]["request"] = h.request
            if h.interrupted:
                data["hold"]["interrupted"] = True
        if self.pending is not None:
            p = self.pending
            data["pending"] = {"command": command_to_json(p.command), "variables": p.variables}
        if self.hangup is not None:
            t = self.hangup
            data["hangup"] = {
                "request": t.request,
                "due": t.due,
                "attempt": t.attempt,
                "done": t.done,
            }
        if self.ended:
            data["ended"] = True
        if self.journal is not None:
            data["journal"] = self.journal.to_json()
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CallRecord:
        record = cls(
            flow=str(data.get("flow") or "main"),
            app=str(data.get("app") or ""),
            seq=int(data.get("seq") or 0),
            current=data.get("current"),
            replies=dict(data.get("replies") or {}),
            state=dict(data.get("state") or {}),
            ended=bool(data.get("ended")),
        )
        if (j := data.get("journal")) is not None:
            record.journal = Journal.from_json(j)
        if (i := data.get("interrupt")) is not None:
            record.interrupt = Interrupt(
                i.get("target"), Action.from_json(i["action"]), bool(i.get("rearmed"))
            )
        if (h := data.get("hold")) is not None:
            request = h.get("request")
            record.hold = HoldTicket(
                str(h["token"]),
                float(h["until"]),
                str(h["step"]),
                dict(request) if isinstance(request, dict) else None,
                bool(h.get("interrupted")),
            )
        if (p := data.get("pending")) is not None:
            record.pending = Pending(command_from_json(p["command"]), dict(p["variables"]))
        if (t := data.get("hangup")) is not None:
            record.hangup = HangupTicket(
                dict(t["request"]), float(t["due"]), int(t.get("attempt", 1)), bool(t["done"])
            )
        return record
