"""Compatibility module: the callback endpoint now lives in :mod:`rtcontrol.adapters.endpoint`.

Import paths that worked before keep working. Module-level settings (``hmac`` for
tests that spy on it, for instance) belong to the new module: patch them there.
"""

from __future__ import annotations

from .adapters.endpoint import (
    CHALLENGE,
    BasicAuth,
    CallbackEndpoint,
    auth_for,
    error_body,
    explain,
    is_json,
)

__all__ = [
    "CHALLENGE",
    "BasicAuth",
    "CallbackEndpoint",
    "auth_for",
    "error_body",
    "explain",
    "is_json",
]
