"""Web adapters: HTTP in, :class:`~rtcontrol.protocol.RTRequest` to the handler,
:class:`~rtcontrol.core.ports.Reply` out. They only translate.

* :mod:`.endpoint`: the callback endpoint as bare ASGI (no web framework);
* :mod:`.fastapi`: the FastAPI app (``create_asgi``) and router (``callback_router``);
* :mod:`.process`: one process per memory store (K9);
* :mod:`.ports`: what they need from the app (:class:`ServedApp`).

They depend on Protocols only, never on ``rtcontrol.app``. The FastAPI names are
imported on first use, so the bare endpoint does not load FastAPI.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .endpoint import BasicAuth, CallbackEndpoint, CallbackSwitch, auth_for, explain, is_json
from .ports import AdapterSettings, MetricsSource, ServedApp, StoreProbe

if TYPE_CHECKING:
    from .fastapi import RtcontrolAPI, callback_router, create_asgi, require_callback_auth

__all__ = [
    "AdapterSettings",
    "BasicAuth",
    "CallbackEndpoint",
    "CallbackSwitch",
    "MetricsSource",
    "RtcontrolAPI",
    "ServedApp",
    "StoreProbe",
    "auth_for",
    "callback_router",
    "create_asgi",
    "explain",
    "is_json",
    "require_callback_auth",
]

_FASTAPI = frozenset({"RtcontrolAPI", "callback_router", "create_asgi", "require_callback_auth"})


def __getattr__(name: str) -> Any:
    if name in _FASTAPI:
        return getattr(importlib.import_module(".fastapi", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
