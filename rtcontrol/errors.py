"""Every exception rtcontrol raises, in one tree.

::

    RtcontrolError
    ├── ConfigurationError           bad or missing settings; raised at start-up
    ├── CommandError (ValueError)    a command built with a bad parameter
    ├── RegistrationError (TypeError) a handler or flow of the wrong shape
    ├── OutputError                  a reply, variables or state we refuse to send or store
    ├── FlowError                    a straight-line flow cannot go on (the call gets the fallback)
    │   ├── DeterminismError         its replay asked for something else than its journal
    │   └── JournalFull              its journal reached RTCONTROL_JOURNAL_LIMIT
    ├── CallError                    an operation on a call that cannot be done
    │   ├── CallNotFound             the call id is unknown to the store
    │   ├── CallEnded                the call has already hung up
    │   │   └── CallHungUp           ...raised at a straight-line flow's pending await
    │   ├── Interrupted              App.interrupt() reached a straight-line flow's await
    │   └── CommandFailedError       the platform reported a command error to such a flow
    ├── StoreError                   the shared store failed
    │   ├── StoreUnavailable         cannot reach the store (Redis down)
    │   └── LockTimeout              a per-call lock was not acquired in time
    ├── ApiError                     the CALLR JSON-RPC API failed
    │   ├── TransportError           the request never produced an HTTP answer
    │   │   └── OutcomeUnknown       ...and it may have reached the server: not retried
    │   ├── HTTPStatusError          a non-2xx HTTP status
    │   │   └── AuthenticationError  401/403: credentials refused
    │   ├── JSONRPCError             the server answered with a JSON-RPC ``error``
    │   └── InvalidResponse          the answer is not a valid JSON-RPC response
    └── ControlError                 the emulator's control API refused a request (status, code)
        └── ControlUnreachable       ...or gave no answer of its own (nothing there, not the API)

Catch ``RtcontrolError`` for "anything from rtcontrol"; catch the leaves to act.
``OutcomeUnknown`` deserves its own handling: a ``calls.realtime`` that raised it
may have dialled someone, so never blindly retry it.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ApiError",
    "AuthenticationError",
    "CallEnded",
    "CallError",
    "CallHungUp",
    "CallNotFound",
    "CommandError",
    "CommandFailedError",
    "ConfigurationError",
    "ControlError",
    "ControlUnreachable",
    "DeterminismError",
    "FlowError",
    "HTTPStatusError",
    "Interrupted",
    "InvalidResponse",
    "JSONRPCError",
    "JournalFull",
    "LockTimeout",
    "OutcomeUnknown",
    "OutputError",
    "RegistrationError",
    "RtcontrolError",
    "StoreError",
    "StoreUnavailable",
    "TransportError",
]


class RtcontrolError(Exception):
    """Base of every error raised by rtcontrol."""


class ConfigurationError(RtcontrolError):
    """A setting is missing or invalid; the message names the setting."""


class CommandError(RtcontrolError, ValueError):
    """A command parameter is out of range or of the wrong type.

    The message names the command, the parameter, what is allowed and the value given.
    """

    def __init__(self, command: str, param: str, allowed: str, value: Any) -> None:
        self.command = command
        self.param = param
        self.allowed = allowed
        self.value = value
        super().__init__(f"{command}: parameter {param!r} must be {allowed}, got {value!r}")


class RegistrationError(RtcontrolError, TypeError):
    """A handler or flow was registered with the wrong shape; says what to change."""


class OutputError(RtcontrolError):
    """What a handler produced cannot be sent or stored: not JSON (NaN, a set, a
    datetime), nested too deeply, too large for the platform's echo, or an invalid
    command. The message names the cause, never the value. The call gets the fallback.
    """


class CallError(RtcontrolError):
    """An operation on one call could not be carried out."""

    def __init__(self, message: str, *, callid: int | None = None) -> None:
        self.callid = callid
        super().__init__(message)


class CallNotFound(CallError):
    """The call id is not known to the store (never seen, or forgotten after its TTL)."""


class CallEnded(CallError):
    """The call has already hung up."""


class CallHungUp(CallEnded):
    """Raised at the pending ``await`` of a straight-line flow when the call ends
    (the caller hung up, ``calls.hangup``, a platform error): ``finally`` blocks and
    context managers run; ``on_hangup`` still runs once, after them."""


class Interrupted(CallError):
    """Raised at the pending ``await`` of a straight-line flow by
    ``App.interrupt(callid, then=...)``, once ``then`` (a command or a sub-flow) has
    run. Catch it to go on; a flow that lets it escape ends the call quietly.
    ``outcome``: what the broken command reported (its partial result)."""

    def __init__(self, message: str, *, callid: int | None = None, outcome: Any = None) -> None:
        self.outcome = outcome
        super().__init__(message, callid=callid)


class CommandFailedError(CallError):
    """A straight-line flow's command was reported with an error by the platform
    (``command_error``, spec §4). ``command`` and ``error`` name both."""

    def __init__(self, command: str, error: str, *, callid: int | None = None) -> None:
        self.command = command
        self.error = error
        super().__init__(f"{command} failed: {error}", callid=callid)


class FlowError(RtcontrolError):
    """A straight-line flow cannot go on; the call gets the fallback. Never raised
    inside the flow (it cannot be caught there by mistake)."""


class DeterminismError(FlowError):
    """Replaying a straight-line flow's journal, the flow asked for something else than
    the journal recorded at that position (the code changed mid-call without a new
    ``version``, or it branched on the clock, randomness or unjournaled I/O). The
    message names the flow, the position and both commands."""


class JournalFull(FlowError):
    """A straight-line call reached ``RTCONTROL_JOURNAL_LIMIT`` entries."""


class StoreError(RtcontrolError):
    """The per-call store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be reached (for Redis: connection refused, timeout)."""


class LockTimeout(StoreError):
    """A per-call lock could not be acquired within the allowed wait."""


class ApiError(RtcontrolError):
    """A call to the CALLR JSON-RPC API failed."""

    def __init__(self, message: str, *, method: str | None = None) -> None:
        self.method = method
        super().__init__(message)


class TransportError(ApiError):
    """No HTTP response was received (connection refused, timeout, reset)."""


class OutcomeUnknown(TransportError):
    """The request may have reached the server, and the method is not safe to retry.

    ``request`` holds the JSON-RPC request that was sent (without credentials), so the
    caller can reconcile (for ``calls.realtime``: check whether the callee was dialled).
    """

    def __init__(self, message: str, *, method: str, request: dict[str, Any]) -> None:
        self.request = request
        super().__init__(message, method=method)


class HTTPStatusError(ApiError):
    """The API answered with a non-2xx HTTP status."""

    def __init__(self, message: str, *, method: str | None = None, status_code: int) -> None:
        self.status_code = status_code
        super().__init__(message, method=method)


class AuthenticationError(HTTPStatusError):
    """The API refused the credentials (HTTP 401 or 403)."""


class JSONRPCError(ApiError):
    """The API answered with a JSON-RPC error object."""

    def __init__(self, *, method: str | None, code: int, message: str, data: Any = None) -> None:
        self.code = code
        self.rpc_message = message
        self.data = data
        super().__init__(f"{method}: JSON-RPC error {code}: {message}", method=method)


class InvalidResponse(ApiError):
    """The API answered something that is not a valid JSON-RPC 2.0 response."""


class ControlError(RtcontrolError):
    """The emulator's control API (``/control/v1``, :mod:`rtcontrol.emulator.control`)
    refused a request: its HTTP ``status`` (400 bad input, 404 no such call or app, 409
    not now), its error ``code`` (``INVALID_PARAM``, ``NO_SUCH_CALL``, ``NOT_LIVE``, a
    CALLR error token...) and ``message``. The control API raises it to answer
    ``{"error": {"code": ..., "message": ...}}``; :class:`~rtcontrol.emulator.ControlClient`
    raises it from that answer."""

    def __init__(self, status: int, code: str, message: str) -> None:
        self.status = status
        self.code = code
        self.message = message
        super().__init__(message)


class ControlUnreachable(ControlError):
    """No control API answered: nothing at that address (``status`` 0, code
    ``UNREACHABLE``), or something that is not the control API (code
    ``NOT_CONTROL_API``, with the HTTP status it answered: a 404 without the API's
    error object, or a body that is not its JSON)."""
