"""A blocking facade over :class:`CallrClient` for scripts and REPLs.

It owns a private event loop (``asyncio.Runner``) that lives as long as the facade,
so the async client's connection pool is reused across calls. Every method only
forwards to the async client: behaviour, retries and errors are identical.
Do not use it inside async code; await :class:`CallrClient` there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Sequence
from typing import Any, TypeVar

from ..media import Media, Target
from .client import CallrClient
from .models import AppInfo, BroadcastOptions, RealtimeOptions

__all__ = ["SyncCallrClient"]

T = TypeVar("T")


class SyncCallrClient:
    """``SyncCallrClient(api_key=...)`` takes :class:`CallrClient`'s arguments; or wrap one."""

    def __init__(self, client: CallrClient | None = None, /, **kwargs: Any) -> None:
        self.client = client if client is not None else CallrClient(**kwargs)
        self._runner = asyncio.Runner()
        self._closed = False

    @classmethod
    def from_env(cls, **overrides: Any) -> SyncCallrClient:
        """Like :meth:`CallrClient.from_env`."""
        return cls(CallrClient.from_env(**overrides))

    def __repr__(self) -> str:
        return f"SyncCallrClient({self.client!r})"

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if not self._closed:
                return self._runner.run(coro)
            problem = "SyncCallrClient is closed"
        else:
            problem = "SyncCallrClient cannot run inside an event loop; use CallrClient"
        coro.close()  # never awaited: close it so no warning is left behind
        raise RuntimeError(problem)

    def close(self) -> None:
        """Close the connection pool and the private loop; later calls are no-ops."""
        if self._closed:
            return
        try:
            self._run(self.client.aclose())
        finally:
            self._closed = True
            self._runner.close()

    def __enter__(self) -> SyncCallrClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(
        self, method: str, params: list[Any], *, idempotent: bool, timeout: float | None = None
    ) -> Any:
        """See :meth:`CallrClient.call`."""
        return self._run(self.client.call(method, params, idempotent=idempotent, timeout=timeout))

    def realtime(
        self,
        app: str,
        target: Target | str,
        options: RealtimeOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """See :meth:`CallrClient.realtime`."""
        return self._run(self.client.realtime(app, target, options, timeout=timeout))

    def realtime_break(self, callid: int, *, timeout: float | None = None) -> bool:
        """See :meth:`CallrClient.realtime_break`."""
        return self._run(self.client.realtime_break(callid, timeout=timeout))

    def hangup(self, callid: int, *, timeout: float | None = None) -> bool:
        """See :meth:`CallrClient.hangup`."""
        return self._run(self.client.hangup(callid, timeout=timeout))

    def broadcast(
        self,
        target: Target | str,
        messages: Sequence[Media],
        options: BroadcastOptions | None = None,
        *,
        timeout: float | None = None,
    ) -> str:
        """See :meth:`CallrClient.broadcast`."""
        return self._run(self.client.broadcast(target, messages, options, timeout=timeout))

    def get_status(self, request_id: str, *, timeout: float | None = None) -> str:
        """See :meth:`CallrClient.get_status`."""
        return self._run(self.client.get_status(request_id, timeout=timeout))

    def create_app(
        self,
        name: str,
        url: str | None,
        *,
        login: str = "",
        password: str = "",
        timeout: float | None = None,
    ) -> AppInfo:
        """See :meth:`CallrClient.create_app`."""
        coro = self.client.create_app(name, url, login=login, password=password, timeout=timeout)
        return self._run(coro)

    def edit_app(
        self,
        app_hash: str,
        *,
        name: str | None = None,
        url: str | None = None,
        login: str | None = None,
        password: str | None = None,
        timeout: float | None = None,
    ) -> AppInfo:
        """See :meth:`CallrClient.edit_app`."""
        coro = self.client.edit_app(
            app_hash, name=name, url=url, login=login, password=password, timeout=timeout
        )
        return self._run(coro)

    def list_apps(self, *, timeout: float | None = None) -> list[AppInfo]:
        """See :meth:`CallrClient.list_apps`."""
        return self._run(self.client.list_apps(timeout=timeout))

    def get_timestamp(self, *, timeout: float | None = None) -> int:
        """See :meth:`CallrClient.get_timestamp`."""
        return self._run(self.client.get_timestamp(timeout=timeout))
