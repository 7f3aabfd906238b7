"""Retries follow safety: never resend what may have run, unless running it twice is harmless."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from rpc_fake import API_KEY, FakeAPI, Step, result, status

from rtcontrol.errors import HTTPStatusError, OutcomeUnknown, TransportError
from rtcontrol.rpc import IDEMPOTENT_METHODS, CallrClient

Call = Callable[[CallrClient], Awaitable[Any]]

METHODS: list[tuple[str, Call]] = [
    ("calls.realtime", lambda c: c.realtime("4346423A", "+33612345678")),
    ("calls.realtime_break", lambda c: c.realtime_break(421889)),
    ("calls.hangup", lambda c: c.hangup(421889)),
    ("calls.broadcast_1", lambda c: c.broadcast("+33612345678", [131])),
    ("calls.get_status_1", lambda c: c.get_status("8242D945")),
    ("apps.create", lambda c: c.create_app("IVR", "https://ivr.example.com/cb")),
    ("apps.edit", lambda c: c.edit_app("4346423A", name="IVR")),
    ("apps.get_list", lambda c: c.list_apps()),
    ("system.get_timestamp", lambda c: c.get_timestamp()),
]
IDEMPOTENT = {
    "calls.hangup",
    "calls.get_status_1",
    "apps.edit",
    "apps.get_list",
    "system.get_timestamp",
}
by_method = pytest.mark.parametrize(("method", "call"), METHODS, ids=[m for m, _ in METHODS])


def test_the_idempotent_set_is_the_documented_one() -> None:
    assert IDEMPOTENT_METHODS == IDEMPOTENT


@by_method
@pytest.mark.parametrize(
    "failure",
    [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("full")],
    ids=["refused", "connect-timeout", "pool-timeout"],
)
async def test_every_method_retries_what_never_left(
    api: FakeAPI, client: CallrClient, method: str, call: Call, failure: Exception
) -> None:
    api.then(failure, failure)
    await call(client)
    assert [b["method"] for b in api.bodies] == [method] * 3


@by_method
@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("slow"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("disconnected"),
        status(502),
        status(503),
        status(504),
    ],
    ids=["read-timeout", "reset", "disconnect", "502", "503", "504"],
)
async def test_only_idempotent_methods_retry_what_may_have_run(
    api: FakeAPI, client: CallrClient, method: str, call: Call, failure: Step
) -> None:
    api.then(failure)
    if method in IDEMPOTENT:
        await call(client)
        assert len(api.requests) == 2
    else:
        with pytest.raises(OutcomeUnknown) as info:
            await call(client)
        assert info.value.method == method
        assert len(api.requests) == 1


async def test_retries_stop_after_the_configured_count(api: FakeAPI) -> None:
    api.then(*[httpx.ConnectError("refused")] * 10)
    async with api.client(retries=3) as client:
        with pytest.raises(TransportError) as info:
            await client.realtime("4346423A", "+33612345678")
    assert type(info.value) is TransportError
    assert len(api.requests) == 4


async def test_retries_zero_means_one_attempt(api: FakeAPI) -> None:
    api.then(status(503), status(503))
    async with api.client(retries=0) as client:
        with pytest.raises(HTTPStatusError) as info:
            await client.get_timestamp()
    assert info.value.status_code == 503
    assert len(api.requests) == 1


async def test_gateway_errors_exhaust_into_http_status_error(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(status(502), status(503), status(504), status(502))
    with pytest.raises(HTTPStatusError) as info:
        await client.get_status("8242D945")
    assert info.value.status_code == 504
    assert info.value.__cause__ is None
    assert len(api.requests) == 3


async def test_a_non_idempotent_retry_after_connect_error_can_still_be_unknown(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(httpx.ConnectError("refused"), httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown) as info:
        await client.realtime("4346423A", "+33612345678")
    assert len(api.requests) == 2
    assert info.value.request == api.bodies[1]


@pytest.mark.parametrize("idempotent", [True, False])
async def test_generic_call_honours_the_flag(
    api: FakeAPI, client: CallrClient, idempotent: bool
) -> None:
    api.then(httpx.ReadTimeout("slow"), result(5))
    if idempotent:
        assert await client.call("media.get", [1], idempotent=True) == 5
    else:
        with pytest.raises(OutcomeUnknown):
            await client.call("media.get", [1], idempotent=False)


# ----------------------------------------------------------------- hangup (C6)


async def test_hangup_false_after_a_lost_answer_counts_as_success(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(httpx.ReadTimeout("slow"), result(False))
    assert await client.hangup(421889) is True
    assert len(api.requests) == 2


async def test_hangup_false_after_a_gateway_error_counts_as_success(
    api: FakeAPI, client: CallrClient
) -> None:
    api.then(status(504), result(False))
    assert await client.hangup(421889) is True


async def test_hangup_false_after_a_refused_connection_is_false(
    api: FakeAPI, client: CallrClient
) -> None:
    """The first attempt never arrived, so the server's ``false`` is the real answer."""
    api.then(httpx.ConnectError("refused"), result(False))
    assert await client.hangup(421889) is False


async def test_hangup_false_on_first_attempt_is_false(api: FakeAPI, client: CallrClient) -> None:
    api.then(result(False))
    assert await client.hangup(421889) is False


# ----------------------------------------------------------------- time budget


async def test_backoff_doubles_between_attempts(api: FakeAPI) -> None:
    stamps: list[float] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        stamps.append(time.monotonic())
        raise httpx.ConnectError("refused")

    transport = httpx.MockTransport(refuse)
    async with CallrClient(api_key=API_KEY, transport=transport, backoff=0.05) as client:
        with pytest.raises(TransportError):
            await client.get_timestamp()
    assert len(stamps) == 3
    first, second = stamps[1] - stamps[0], stamps[2] - stamps[1]
    assert first >= 0.045
    assert second >= 0.095


async def test_retries_never_outlast_the_budget() -> None:
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused")

    transport = httpx.MockTransport(refuse)
    client = CallrClient(api_key=API_KEY, transport=transport, retries=10, backoff=0.1)
    async with client:
        started = time.monotonic()
        with pytest.raises(TransportError):
            await client.realtime("4346423A", "+33612345678", timeout=0.35)
        elapsed = time.monotonic() - started
    # attempts at 0, 0.1, 0.3; the next one (at 0.7) would overrun the 0.35 s budget
    assert calls == 3
    assert elapsed < 1.0  # the budget, plus room for a busy machine


async def _hang(request: httpx.Request) -> httpx.Response:
    await asyncio.sleep(30)
    raise AssertionError("not reached")  # pragma: no cover


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda c: c.get_timestamp(timeout=0.2), TransportError),
        (lambda c: c.realtime_break(1, timeout=0.2), OutcomeUnknown),
    ],
    ids=["idempotent", "non-idempotent"],
)
async def test_per_call_timeout_is_a_hard_deadline(call: Call, error: type[Exception]) -> None:
    """A server that never answers costs the caller its budget, not the client's 10 s."""
    transport = httpx.MockTransport(_hang)
    async with CallrClient(api_key=API_KEY, transport=transport, timeout=10) as client:
        started = time.monotonic()
        with pytest.raises(error):
            await call(client)
        assert time.monotonic() - started < 1.0


# ----------------------------------------------------------------- real sockets


@pytest.fixture
async def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class LocalServer:
    """A raw TCP server on 127.0.0.1 that reads one HTTP request per connection.

    ``hold=True`` keeps the connection open without a reply (a read timeout);
    ``hold=False`` closes it right after reading (a reset after sending).
    """

    def __init__(self, *, hold: bool) -> None:
        self.hold = hold
        self.url = ""
        self.connections = 0
        self._stop = asyncio.Event()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            if self.hold:
                await self._stop.wait()
        finally:
            writer.close()

    async def run(self) -> AsyncIterator[str]:
        server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}/json-rpc/v1.1/"
        finally:
            self._stop.set()
            server.close()
            await server.wait_closed()


@pytest.fixture
async def silent_server() -> AsyncIterator[LocalServer]:
    """Reads the request, never answers."""
    server = LocalServer(hold=True)
    async for url in server.run():
        server.url = url
        yield server


@pytest.fixture
async def dropping_server() -> AsyncIterator[LocalServer]:
    """Reads the request, then closes the connection without a response."""
    server = LocalServer(hold=False)
    async for url in server.run():
        server.url = url
        yield server


async def test_real_connection_refused_is_retried_then_transport_error(closed_port: int) -> None:
    url = f"http://127.0.0.1:{closed_port}/json-rpc/v1.1/"
    async with CallrClient(api_url=url, api_key=API_KEY, backoff=0, timeout=2) as client:
        with pytest.raises(TransportError) as info:
            await client.realtime("4346423A", "+33612345678")
    assert type(info.value) is TransportError
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert API_KEY not in repr(info.value.__cause__.request.headers)


async def test_real_read_timeout_on_realtime_is_outcome_unknown(
    silent_server: LocalServer,
) -> None:
    async with CallrClient(api_url=silent_server.url, api_key=API_KEY, backoff=0) as client:
        started = time.monotonic()
        with pytest.raises(OutcomeUnknown) as info:
            await client.realtime("4346423A", "+33612345678", timeout=0.3)
        assert time.monotonic() - started < 1.0
    assert isinstance(info.value.__cause__, httpx.ReadTimeout)
    assert silent_server.connections == 1


async def test_real_disconnect_after_send(dropping_server: LocalServer) -> None:
    async with CallrClient(
        api_url=dropping_server.url, api_key=API_KEY, backoff=0, retries=2
    ) as client:
        with pytest.raises(OutcomeUnknown):
            await client.realtime_break(421889)
        assert dropping_server.connections == 1
        with pytest.raises(TransportError) as info:
            await client.hangup(421889)
    assert type(info.value) is TransportError
    assert dropping_server.connections == 1 + 3
