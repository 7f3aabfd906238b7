"""Scripted callees: the person on the other end of an emulated call.

A :class:`Callee` says whether the phone is answered, and holds a list of actions. Each
*input* the platform asks for consumes the next action, in order:

* ``read``: one action (its digits, silence, or a hang-up);
* ``record``, ``wait_for_silence``, ``play_talk_detect``: one action;
* ``conference`` / ``simple_conference``: one per PIN try (when a PIN is set), then one for
  the time in the room (``Leave`` / ``Press("*")`` leaves, anything else stays).

Other commands take none. When the list runs out the callee stays silent
(``when_done="silent"``) or hangs up at the next input (``"hangup"``).

Hang-ups not tied to an input: ``hangup_after`` (virtual seconds since answer, for
outbound; since the call started, for inbound) and ``hangup_during`` (the n-th executed
command, 1-based, or the first command with that name), ``hangup_delay`` seconds into it.
Offsets inside a command are exact, so scripted hang-ups are deterministic;
``hangup_after`` also counts the time the webhook takes to reply.

Example::

    Callee(actions=[Press("1"), Silence(), Speak(4), HangUp(after=2)])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Action",
    "Answer",
    "Callee",
    "HangUp",
    "Leave",
    "Press",
    "Script",
    "Silence",
    "Speak",
]

#: What happens when the phone rings.
Answer = Literal["answer", "noanswer", "busy", "congestion", "rejected"]

_DTMF = frozenset("0123456789*#")


@dataclass(frozen=True)
class Press:
    """Type ``digits``: ``after`` seconds after the prompt ends, or after it starts (barge-in).

    In ``record`` a ``#`` stops the recording (the callee talks until then); in
    ``conference`` a ``*`` leaves the room and other digits answer the PIN prompt.
    """

    digits: str
    after: float = 1.0
    barge_in: bool = False

    def __post_init__(self) -> None:
        if not self.digits or not set(self.digits) <= _DTMF:
            raise ValueError(f"Press digits must be non-empty 0-9, * or #, got {self.digits!r}")
        if self.after < 0:
            raise ValueError("Press.after must be >= 0")


@dataclass(frozen=True)
class Silence:
    """Say and press nothing: ``read`` times out, ``record`` stops on its silence setting."""


@dataclass(frozen=True)
class Speak:
    """Talk for ``seconds`` (``record`` records it; ``play_talk_detect`` analyses it)."""

    seconds: float

    def __post_init__(self) -> None:
        if self.seconds < 0:
            raise ValueError("Speak.seconds must be >= 0")


@dataclass(frozen=True)
class HangUp:
    """Hang up ``after`` seconds into the command that consumes this action."""

    after: float = 0.0

    def __post_init__(self) -> None:
        if self.after < 0:
            raise ValueError("HangUp.after must be >= 0")


@dataclass(frozen=True)
class Leave:
    """In a conference: press ``*`` after ``after`` seconds in the room."""

    after: float = 1.0


Action = Press | Silence | Speak | HangUp | Leave


@dataclass(frozen=True, init=False)
class Callee:
    """A scripted person; immutable, so one instance can serve many calls."""

    answer: Answer = "answer"
    answer_delay: float = 2.0
    actions: tuple[Action, ...] = ()
    hangup_after: float | None = None
    hangup_during: int | str | None = None
    hangup_delay: float = 0.0
    when_done: Literal["silent", "hangup"] = "silent"
    name: str = ""

    def __init__(
        self,
        answer: Answer = "answer",
        answer_delay: float = 2.0,
        actions: Iterable[Action] = (),
        *,
        hangup_after: float | None = None,
        hangup_during: int | str | None = None,
        hangup_delay: float = 0.0,
        when_done: Literal["silent", "hangup"] = "silent",
        name: str = "",
    ) -> None:
        if answer not in ("answer", "noanswer", "busy", "congestion", "rejected"):
            raise ValueError(f"unknown answer behaviour {answer!r}")
        if answer_delay < 0 or hangup_delay < 0 or (hangup_after is not None and hangup_after < 0):
            raise ValueError("delays must be >= 0")
        if isinstance(hangup_during, int) and (
            isinstance(hangup_during, bool) or hangup_during < 1
        ):
            raise ValueError("hangup_during counts commands from 1")
        values = {
            "answer": answer,
            "answer_delay": float(answer_delay),
            "actions": tuple(actions),
            "hangup_after": hangup_after,
            "hangup_during": hangup_during,
            "hangup_delay": float(hangup_delay),
            "when_done": when_done,
            "name": name,
        }
        for key, value in values.items():
            object.__setattr__(self, key, value)

    @classmethod
    def silent(cls) -> Callee:
        """Answers after the default delay and never presses anything."""
        return cls()


@dataclass
class Script:
    """One call's progress through a callee's actions."""

    callee: Callee
    position: int = 0
    consumed: list[Action] = field(default_factory=list)

    def next(self) -> Action | None:
        """The next action, or ``None`` when the list is exhausted."""
        if self.position >= len(self.callee.actions):
            return None
        action = self.callee.actions[self.position]
        self.position += 1
        self.consumed.append(action)
        return action

    @property
    def remaining(self) -> tuple[Action, ...]:
        return self.callee.actions[self.position :]
