"""The CALLR JSON-RPC 2.0 client (async), with a thin blocking facade."""

from __future__ import annotations

from .client import IDEMPOTENT_METHODS, CallrClient, SyncCallrClient
from .models import AppInfo, BroadcastOptions, RealtimeOptions

__all__ = [
    "IDEMPOTENT_METHODS",
    "AppInfo",
    "BroadcastOptions",
    "CallrClient",
    "RealtimeOptions",
    "SyncCallrClient",
]
