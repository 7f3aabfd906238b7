"""Redis Cluster store: the Redis store's scripts and semantics on ``RedisCluster``.

URL: ``redis+cluster://[user:password@]host1:port1,host2:port2[/0][?timeout=..]``
(``rediss+cluster://`` for TLS). The nodes are seeds: the client discovers the rest.

Why it is a thin subclass of :class:`~rtcontrol.store.redis.RedisStore`:

* Every Lua script runs on the node that owns its keys, so the keys of one operation
  must share a hash slot. The engine's keys of one call share a hash tag
  (``rtc:{42}:call``, ``rtc:{42}:lock``); keys that do not are refused before anything
  is sent, with a :class:`StoreError` that says so (not redis-py's cluster error).
* ``delete`` across slots works: redis-py sends one ``DEL`` per slot.
* ``update``'s WATCH/MULTI runs on the key's node (redis-py's transaction pipeline).
* The same time bounds as one Redis: socket timeouts, one retry after a broken
  connection (redis-py then re-reads the slot map), no retry after a timeout.
* A ``prefix`` must not contain ``{`` or ``}``: it would change the keys' hash tags.
* The client reads the slot map once, before any command, one caller at a time:
  redis-py 8.1 breaks connections (``AttributeError`` inside the client) when many
  commands race the first discovery of a fresh client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ClusterDownError, SlotNotCoveredError
from redis.exceptions import ConnectionError as RedisConnectionError

from ..errors import ConfigurationError, StoreError
from .redis import FAST_HANDSHAKE, RedisStore, parse_options, url_secret

__all__ = ["CLUSTER_SCHEMES", "ClusterStore", "parse_cluster_nodes"]

T = TypeVar("T")

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
#: redis-py options a cluster URL may carry besides rtcontrol's own.
CLUSTER_PASS_THROUGH = frozenset(
    (
        "client_name",
        "ssl_cert_reqs",
        "ssl_ca_certs",
        "ssl_certfile",
        "ssl_keyfile",
        "ssl_check_hostname",
    )
)
#: Connections per node. redis-py's cluster pool refuses (does not wait) past it.
MAX_CONNECTIONS_PER_NODE = 1000


class _Cluster(RedisCluster):
    """redis-py's cluster client, minus retries after a timeout (one bound, not two)."""

    ERRORS_ALLOW_RETRY = (RedisConnectionError, ClusterDownError, SlotNotCoveredError)  # type: ignore[assignment]


def parse_cluster_nodes(url: str) -> list[tuple[str, int]]:
    """The seed nodes of a cluster URL; errors name the bad part, never the password."""
    netloc = urlsplit(url).netloc.rpartition("@")[2]
    nodes: list[tuple[str, int]] = []
    for item in netloc.split(","):
        item = item.strip()
        if item.startswith("["):  # [IPv6]:port
            host, _, rest = item[1:].partition("]")
            port_text = rest.removeprefix(":")
        elif ":" in item:
            host, _, port_text = item.rpartition(":")
        else:
            host, port_text = item, ""
        try:
            port = int(port_text) if port_text else 6379
        except ValueError:
            port = -1
        if not host or not 0 < port < 65536:
            raise ConfigurationError(f"cluster store URL: bad node {item!r} (want host:port)")
        nodes.append((unquote(host), port))
    return nodes


class ClusterStore(RedisStore):
    """:class:`Store` on a Redis Cluster (``redis.asyncio.cluster.RedisCluster``)."""

    kind = "redis cluster"

    def __init__(self, client: RedisCluster, **kwargs: Any) -> None:
        """Prefer :meth:`from_url`; keyword arguments as for :class:`RedisStore`."""
        prefix = kwargs.get("prefix", "")
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a cluster store prefix cannot contain braces: {prefix!r}")
        super().__init__(client, **kwargs)
        self._cluster = client
        self._discovered = False
        self._discovering = asyncio.Lock()

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str = "",
        timeout: float | None = None,
        connect_timeout: float | None = None,
        **kwargs: Any,
    ) -> ClusterStore:
        """Build a store for ``redis+cluster://host:port,host:port``; connects lazily.

        Timeouts as for :meth:`RedisStore.from_url`. Extra keyword arguments go to
        :class:`redis.asyncio.cluster.RedisCluster`.
        """
        parts = urlsplit(url)
        if parts.scheme not in CLUSTER_SCHEMES:
            raise ConfigurationError(
                f"a cluster store URL starts with redis+cluster:// (got {parts.scheme!r})"
            )
        if parts.path.strip("/") not in ("", "0"):
            raise ConfigurationError("a Redis Cluster has only database 0")
        _, timeout, connect_timeout = parse_options(
            url, timeout=timeout, connect_timeout=connect_timeout, allowed=CLUSTER_PASS_THROUGH
        )
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if name in CLUSTER_PASS_THROUGH:
                kwargs.setdefault(
                    name,
                    value.lower() in ("1", "true", "yes")
                    if name == "ssl_check_hostname"
                    else value,
                )
        if parts.username:
            kwargs.setdefault("username", unquote(parts.username))
        if parts.password:
            kwargs.setdefault("password", unquote(parts.password))
        kwargs.setdefault("ssl", parts.scheme == "rediss+cluster")
        kwargs.setdefault("socket_timeout", timeout)
        kwargs.setdefault("socket_connect_timeout", connect_timeout)
        kwargs.setdefault("retry", Retry(NoBackoff(), 1))
        kwargs.setdefault("max_connections", MAX_CONNECTIONS_PER_NODE)
        for name, value in FAST_HANDSHAKE.items():
            kwargs.setdefault(name, value)
        nodes = [ClusterNode(host, port) for host, port in parse_cluster_nodes(url)]
        client = _Cluster(startup_nodes=nodes, **kwargs)
        return cls(
            client,
            prefix=prefix,
            timeout=timeout,
            connect_timeout=connect_timeout,
            secret=url_secret(url, kwargs.get("password")),
        )

    def __repr__(self) -> str:
        seeds = ",".join(node.name for node in self._cluster.nodes_manager.startup_nodes.values())
        return f"ClusterStore({seeds}, prefix={self._prefix!r})"

    async def _call(self, op: str, make: Callable[[], Awaitable[T]]) -> T:
        if not self._discovered:
            await super()._call(op, self._discover)
        return await super()._call(op, make)

    async def _discover(self) -> None:
        async with self._discovering:
            if not self._discovered:
                await self._cluster.initialize()
                self._discovered = True

    def _check_keys(self, op: str, keys: list[str]) -> None:
        if len(keys) > 1 and len({key_slot(k.encode()) for k in keys}) > 1:
            names = ", ".join(repr(k.removeprefix(self._prefix)) for k in keys)
            raise StoreError(
                f"{self.kind} {op}: keys {names} are in different hash slots; keys used "
                "together need a common hash tag, e.g. 'rtc:{42}:call' and 'rtc:{42}:lock'"
            )
