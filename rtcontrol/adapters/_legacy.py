"""TEMPORARY shim: serve an ``App`` that predates :class:`CallbackHandler`.

Until ``App`` implements ``handle_callback``/``safe_reply`` (engine v2), it answers
with ``await app.handle(request) -> bytes`` and builds its fallback with
``app.dispatcher.fallback_reply(request)``. Delete this module, and its one use in
``endpoint.py``, once ``App`` implements the Protocol.
"""

from __future__ import annotations

from typing import Any

from ..core.ports import CallbackHandler, Reply
from ..protocol import RTRequest

__all__ = ["as_handler"]


def as_handler(app: object) -> CallbackHandler:
    """``app`` itself when it is a :class:`CallbackHandler`, else an adapter around it."""
    if callable(getattr(app, "handle_callback", None)) and callable(
        getattr(app, "safe_reply", None)
    ):
        handler: CallbackHandler = app  # type: ignore[assignment]
        return handler
    return _LegacyHandler(app)


class _LegacyHandler:
    def __init__(self, app: Any) -> None:
        self._app = app

    async def handle_callback(self, request: RTRequest) -> Reply:
        body: bytes = await self._app.handle(request)
        return Reply(body)

    def safe_reply(self, request: RTRequest) -> Reply:
        body: bytes = self._app.dispatcher.fallback_reply(request)
        return Reply(body)
