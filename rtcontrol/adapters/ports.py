"""What the web adapters need from the application they serve: small Protocols.

The adapters never import :mod:`rtcontrol.app` (not even for type checking): they
serve anything that answers callbacks (:class:`~rtcontrol.core.ports.CallbackHandler`)
and offers the few attributes below. ``App`` satisfies :class:`ServedApp`.
"""

from __future__ import annotations

from typing import Protocol

from ..core.ports import CallbackHandler

__all__ = ["AdapterSettings", "MetricsSource", "ServedApp", "StoreProbe"]


class AdapterSettings(Protocol):
    """The settings the adapters read (``rtcontrol.settings.Settings`` has them all)."""

    @property
    def callback_login(self) -> str | None: ...

    @property
    def callback_password(self) -> str | None: ...

    @property
    def allow_no_auth(self) -> bool: ...

    @property
    def max_body(self) -> int: ...

    @property
    def workers(self) -> int: ...


class StoreProbe(Protocol):
    """What the adapters ask of the store: is it shared between processes, is it up."""

    @property
    def shared(self) -> bool: ...

    async def ping(self) -> None: ...


class MetricsSource(Protocol):
    """Prometheus text for ``/metrics``."""

    def render(self) -> bytes: ...


class ServedApp(CallbackHandler, Protocol):
    """An application the adapters can serve: callbacks plus the operational surface."""

    @property
    def settings(self) -> AdapterSettings: ...

    @property
    def store(self) -> StoreProbe: ...

    @property
    def metrics(self) -> MetricsSource: ...

    async def startup(self) -> None:
        """Check the store and start background work; raise to refuse to start
        (:class:`~rtcontrol.errors.StoreError` when the store is unreachable)."""
        ...

    async def shutdown(self) -> None:
        """Let callbacks in flight finish, then release the store."""
        ...
