"""Per-call state stores: one interface; memory, Redis and Redis Cluster behind it."""

from __future__ import annotations

from urllib.parse import urlsplit

from ..errors import ConfigurationError
from .base import JSON, Encoded, LockToken, Store
from .memory import MemoryStore

__all__ = ["JSON", "Encoded", "LockToken", "MemoryStore", "Store", "open_store"]

_REDIS_SCHEMES = ("redis", "rediss", "unix", "valkey")


def open_store(
    url: str, *, timeout: float | None = None, connect_timeout: float | None = None
) -> Store:
    """The store named by ``url`` (``RTCONTROL_STORE_URL``):

    * ``memory://``: in-process, one worker;
    * ``redis://[user:password@]host:port/db`` (also ``rediss://``, ``unix://``): one Redis;
    * ``redis+cluster://[user:password@]host:port,host:port`` (``rediss+cluster://``
      for TLS): a Redis Cluster, the nodes listed being seeds.

    ``timeout`` bounds one round trip once connected (default 1 s) and
    ``connect_timeout`` opening a connection (default 2 s). The URL's own
    ``?timeout=0.5&connect_timeout=2`` win over the arguments. An unknown query
    parameter raises :class:`ConfigurationError` naming it.
    """
    scheme = urlsplit(url).scheme.lower()
    if scheme == "memory":
        from .redis import parse_options

        parse_options(url, timeout=timeout, connect_timeout=connect_timeout, allowed=())
        return MemoryStore()
    if scheme in ("redis+cluster", "rediss+cluster"):
        from .cluster import ClusterStore

        return ClusterStore.from_url(url, timeout=timeout, connect_timeout=connect_timeout)
    if scheme in _REDIS_SCHEMES:
        from .redis import RedisStore

        return RedisStore.from_url(url, timeout=timeout, connect_timeout=connect_timeout)
    raise ConfigurationError(
        "RTCONTROL_STORE_URL must start with memory://, redis:// or redis+cluster:// "
        f"(got scheme {scheme!r})"
    )
