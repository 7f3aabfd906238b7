"""rtcontrol: real-time call control for the CALLR voice API (REALTIME10).

The public surface is re-exported here; everything else is internal.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .app import App
from .commands import (
    Command,
    conference,
    dialout,
    hangup,
    hangup_callid,
    play,
    play_record,
    play_talk_detect,
    play_wav_data,
    read,
    record,
    send_dtmf,
    simple_conference,
    start_call_recording,
    stop_call_recording,
    wait,
    wait_for_silence,
)
from .context import Call
from .core.straight import LiveCall
from .errors import (
    ApiError,
    AuthenticationError,
    CallEnded,
    CallError,
    CallHungUp,
    CallNotFound,
    CommandError,
    CommandFailedError,
    ConfigurationError,
    ControlError,
    ControlUnreachable,
    DeterminismError,
    FlowError,
    HTTPStatusError,
    Interrupted,
    InvalidResponse,
    JournalFull,
    JSONRPCError,
    LockTimeout,
    OutcomeUnknown,
    OutputError,
    RegistrationError,
    RtcontrolError,
    StoreError,
    StoreUnavailable,
    TransportError,
)
from .flow import Flow
from .media import Target, tts
from .prompts import answer, ask
from .protocol import CallStatus, RTRequest, RTResponse
from .results import (
    CommandFailed,
    Completed,
    DialFailed,
    Digits,
    Nothing,
    Outcome,
    ReadTimeout,
    Recording,
)
from .settings import Settings
from .store import MemoryStore, Store

if TYPE_CHECKING:
    from .rpc import BroadcastOptions, CallrClient, RealtimeOptions, SyncCallrClient

__version__ = "0.2.0"

#: Loaded on first use, so ``import rtcontrol`` loads no HTTP client.
_LAZY = {
    "BroadcastOptions": "rpc",
    "CallrClient": "rpc",
    "RealtimeOptions": "rpc",
    "SyncCallrClient": "rpc",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rtcontrol' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "ApiError",
    "App",
    "AuthenticationError",
    "BroadcastOptions",
    "Call",
    "CallEnded",
    "CallError",
    "CallHungUp",
    "CallNotFound",
    "CallStatus",
    "CallrClient",
    "Command",
    "CommandError",
    "CommandFailed",
    "CommandFailedError",
    "Completed",
    "ConfigurationError",
    "ControlError",
    "ControlUnreachable",
    "DeterminismError",
    "DialFailed",
    "Digits",
    "Flow",
    "FlowError",
    "HTTPStatusError",
    "Interrupted",
    "InvalidResponse",
    "JSONRPCError",
    "JournalFull",
    "LiveCall",
    "LockTimeout",
    "MemoryStore",
    "Nothing",
    "Outcome",
    "OutcomeUnknown",
    "OutputError",
    "RTRequest",
    "RTResponse",
    "ReadTimeout",
    "RealtimeOptions",
    "Recording",
    "RegistrationError",
    "RtcontrolError",
    "Settings",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "SyncCallrClient",
    "Target",
    "TransportError",
    "__version__",
    "answer",
    "ask",
    "conference",
    "dialout",
    "hangup",
    "hangup_callid",
    "play",
    "play_record",
    "play_talk_detect",
    "play_wav_data",
    "read",
    "record",
    "send_dtmf",
    "simple_conference",
    "start_call_recording",
    "stop_call_recording",
    "tts",
    "wait",
    "wait_for_silence",
]
