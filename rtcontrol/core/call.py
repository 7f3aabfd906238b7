"""``Call``: what a handler sees of the call it is answering."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ..protocol import CallStatus, RTRequest
from ..results import Digits, Outcome, ReadTimeout, Recording, parse_outcome

if TYPE_CHECKING:
    from ..commands import Command
    from .actions import Action
    from .journal import Journal

__all__ = ["Call", "CallServices"]

T = TypeVar("T")


class CallServices(Protocol):
    """What a handler may ask of the framework about calls (the ``App`` provides it).

    ``state``: the app's dependencies (a namespace filled by its lifespan)."""

    state: Any

    async def interrupt(self, callid: int, then: Any = None) -> bool: ...

    async def hangup(self, callid: int) -> bool: ...


class Call:
    """One callback of one call, given to every handler.

    ``state`` is server-side per-call state, saved in the store when the handler
    returns; it must stay JSON (str, int, float, bool, None, list, dict with string
    keys), or the call gets the fallback. ``variables`` travel with the call through
    the platform and come back on the next callback (they must be JSON too, and
    small: see ``rtcontrol.validate``).
    """

    __slots__ = (
        "_action",
        "_journal",
        "_journal_next",
        "_outcome",
        "app",
        "flow",
        "idempotency_key",
        "interrupted",
        "request",
        "state",
        "step",
        "variables",
    )

    def __init__(
        self,
        app: CallServices,
        request: RTRequest,
        *,
        flow: str,
        step: str,
        state: dict[str, Any],
        variables: dict[str, Any],
        interrupted: bool = False,
        idempotency_key: str = "",
        journal: Journal | None = None,
        action: Action | None = None,
    ) -> None:
        #: The framework's services (interrupt, hangup): the ``App`` serving the call.
        self.app = app
        self.request = request
        self.flow = flow
        self.step = step
        self.state = state
        self.variables = variables
        self.interrupted = interrupted
        #: Stable per step run: the same string when a step is run again for the same
        #: report (a worker died while running it). Use it to make side effects once-only
        #: (a payment's idempotency key, a unique row id).
        self.idempotency_key = idempotency_key or f"{request.callid}:{step}:{request.command_id}"
        self._outcome: Outcome | None = None
        # Straight-line flows only: the stored journal, the one to store, and the
        # interrupt whose report this callback brings.
        self._journal = journal
        self._journal_next: Journal | None = None
        self._action = action

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

    # --- acting on the call ------------------------------------------------------------

    async def interrupt(self, then: Command | str | Callable[..., Any] | None = None) -> bool:
        """Interrupt this call (see ``App.interrupt``). From inside the call's own
        handler, ``then`` replaces the handler's reply and no break is sent."""
        return await self.app.interrupt(self.id, then)

    async def run_sync(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run blocking code (a database driver, ``requests``, ``time.sleep``) in a worker
        thread, so the event loop keeps serving other calls::

            customer = await call.run_sync(crm.lookup, call.cli_number)
        """
        return await asyncio.to_thread(functools.partial(fn, *args, **kwargs))

    def __repr__(self) -> str:
        return f"<Call {self.id} {self.flow}.{self.step} {self.status}>"
