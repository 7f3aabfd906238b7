"""Per-call state stores: one interface, memory and Redis behind it."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import JSON, LockToken, Store
from .memory import MemoryStore

__all__ = ["JSON", "LockToken", "MemoryStore", "Store", "open_store"]


def open_store(url: str) -> Store:
    """``memory://`` or ``redis://[user:password@]host:port/db`` (also ``rediss://``, ``unix://``)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        return MemoryStore()
    if scheme in ("redis", "rediss", "unix", "valkey"):
        from .redis import RedisStore

        store: Store = RedisStore.from_url(url)
        return store
    raise ConfigurationError(
        f"RTCONTROL_STORE_URL must start with memory:// or redis:// (got scheme {scheme!r})"
    )
