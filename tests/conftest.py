"""Root fixtures shared by every test area. Area-specific fixtures go in sub-directory conftests.

Redis: ``redis_url`` is ``RTCONTROL_TEST_REDIS_URL`` when set, else a private
``redis-server`` started for the session; when neither is possible the Redis tests
skip, except on CI (``CI=true``) where they fail, so a broken runner is not green.

Redis Cluster: ``redis_cluster_url`` (``redis+cluster://host:port,...``) is
``RTCONTROL_TEST_REDIS_CLUSTER_URL`` when set, else a private three-master cluster
started for the session (``tests/redis_cluster.py``); skipped or failed as above.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from typing import Any, NoReturn
from urllib.parse import urlsplit

import pytest
import redis
from redis_cluster import RedisClusterServer
from redis_server import RedisServer


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1")


def skip_or_fail(reason: str) -> NoReturn:
    """Skip a test that lacks its infrastructure; fail instead on CI."""
    if _on_ci():
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server for tests (see the module docstring)."""
    url = os.environ.get("RTCONTROL_TEST_REDIS_URL")
    if url:
        yield url
        return
    try:
        server = RedisServer()
        server.start()
    except (OSError, RuntimeError) as exc:
        skip_or_fail(
            f"no Redis for tests: set RTCONTROL_TEST_REDIS_URL or install redis-server ({exc})"
        )
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A fresh key prefix per test; its keys are deleted afterwards (never FLUSHDB).

    Synchronous on purpose, so async fixtures can request it with ``getfixturevalue``.
    """
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    with redis.Redis.from_url(redis_url, socket_timeout=5) as client:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)


@pytest.fixture(scope="session")
def redis_cluster_url() -> Iterator[str]:
    """URL of a Redis Cluster for tests (see the module docstring)."""
    url = os.environ.get("RTCONTROL_TEST_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    try:
        cluster = RedisClusterServer()
        cluster.start()
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        skip_or_fail(
            "no Redis Cluster for tests: set RTCONTROL_TEST_REDIS_CLUSTER_URL or install "
            f"redis-server and redis-tools ({exc})"
        )
    try:
        yield cluster.url
    finally:
        cluster.close()


@pytest.fixture
def redis_cluster_prefix(redis_cluster_url: str) -> Iterator[str]:
    """A fresh key prefix per test on the cluster; its keys are deleted afterwards."""
    prefix = f"test:{uuid.uuid4().hex[:12]}:"
    yield prefix
    seeds = urlsplit(redis_cluster_url).netloc.rpartition("@")[2].split(",")
    host, _, port = seeds[0].rpartition(":")
    with redis.RedisCluster(host=host, port=int(port), socket_timeout=5) as client:
        for key in list(client.scan_iter(match=f"{prefix}*", count=500)):  # every primary
            client.delete(key)  # one by one: the keys span many slots


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """``srv = redis_server_factory(args=[...])``: a started private server, killed after the test.

    For tests that stop, restart or crash Redis mid-run (``srv.stop()``, ``srv.restart()``).
    """
    if shutil.which("redis-server") is None:
        skip_or_fail("redis-server not found on PATH")
    started: list[RedisServer] = []

    def start(**kwargs: Any) -> RedisServer:
        server = RedisServer(**kwargs)
        started.append(server)
        server.start()
        return server

    try:
        yield start
    finally:
        for server in started:
            server.close()
