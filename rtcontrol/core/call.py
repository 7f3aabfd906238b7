"""``Call``: what a handler sees of the call it is answering."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .protocol import CallStatus, RTRequest
from .results import Digits, Outcome, ReadTimeout, Recording, parse_outcome

if TYPE_CHECKING:
    from .app import App

__all__ = ["Call"]


class Call:
    """One callback of one call, given to every handler.

    ``state`` is server-side per-call state (saved in the store when the handler
    returns). ``variables`` travel with the call through the platform and come back
    on the next callback, so they survive anything that happens to our servers.
    """

    __slots__ = (
        "_outcome",
        "app",
        "flow",
        "interrupted",
        "request",
        "state",
        "step",
        "variables",
    )

    def __init__(
        self,
        app: App,
        request: RTRequest,
        *,
        flow: str,
        step: str,
        state: dict[str, Any],
        variables: dict[str, Any],
        interrupted: bool = False,
    ) -> None:
        self.app = app
        self.request = request
        self.flow = flow
        self.step = step
        self.state = state
        self.variables = variables
        self.interrupted = interrupted
        self._outcome: Outcome | None = None

    # --- who and where -------------------------------------------------------------

    @property
    def id(self) -> int:
        """The platform's call id (for ``calls.hangup``, ``calls.realtime_break``)."""
        return self.request.callid

    @property
    def app_hash(self) -> str:
        return self.request.app

    @property
    def number(self) -> str:
        """Inbound: the number that was called. Outbound: the number we called."""
        return self.request.number

    @property
    def cli_number(self) -> str:
        """The caller's number ("" when hidden)."""
        return self.request.cli_number

    @property
    def cli_name(self) -> str:
        return self.request.cli_name

    @property
    def status(self) -> CallStatus | str:
        return self.request.call_status

    @property
    def is_outbound(self) -> bool:
        return self.request.is_outbound

    @property
    def request_hash(self) -> str | None:
        return self.request.request_hash

    @property
    def cdr_field(self) -> str:
        return self.request.cdr_field

    # --- what just happened ----------------------------------------------------------

    @property
    def command(self) -> str:
        """Name of the command whose result this callback reports ("" on the first)."""
        return self.request.command

    @property
    def result(self) -> str:
        return self.request.command_result

    @property
    def error(self) -> str:
        return self.request.command_error

    @property
    def outcome(self) -> Outcome:
        """The result parsed by command: ``Digits``, ``ReadTimeout``, ``Recording``..."""
        if self._outcome is None:
            req = self.request
            self._outcome = parse_outcome(req.command, req.command_result, req.command_error)
        return self._outcome

    @property
    def digits(self) -> str | None:
        """Digits a ``read`` collected, or None (timeout, error, other command)."""
        outcome = self.outcome
        return outcome.value if isinstance(outcome, Digits) else None

    @property
    def timed_out(self) -> bool:
        return isinstance(self.outcome, ReadTimeout)

    @property
    def recording(self) -> str | None:
        """File name a ``record`` produced, for ``play_record``."""
        outcome = self.outcome
        return outcome.file if isinstance(outcome, Recording) else None

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.flow}.{self.step} {self.status}>"
