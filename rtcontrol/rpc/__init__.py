"""The CALLR JSON-RPC 2.0 client (async), with a thin blocking facade."""

from __future__ import annotations

from .client import IDEMPOTENT_METHODS, CallrClient
from .models import AppInfo, BroadcastOptions, RealtimeAppParams, RealtimeOptions
from .sync import SyncCallrClient

__all__ = [
    "IDEMPOTENT_METHODS",
    "AppInfo",
    "BroadcastOptions",
    "CallrClient",
    "RealtimeAppParams",
    "RealtimeOptions",
    "SyncCallrClient",
]
