"""Compatibility module: the FastAPI adapter now lives in :mod:`rtcontrol.adapters.fastapi`.

Import paths that worked before keep working. Module-level settings such as
``HEALTH_TIMEOUT`` are read from the new module: patch them there.
"""

from __future__ import annotations

from .adapters.fastapi import (
    HEALTH_TIMEOUT,
    SECURITY_SCHEME,
    RtcontrolAPI,
    callback_router,
    create_asgi,
    require_callback_auth,
)

__all__ = [
    "HEALTH_TIMEOUT",
    "SECURITY_SCHEME",
    "RtcontrolAPI",
    "callback_router",
    "create_asgi",
    "require_callback_auth",
]
