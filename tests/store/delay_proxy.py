"""A TCP proxy on loopback that delays every chunk, for "slow store" tests.

``async with DelayProxy("127.0.0.1", redis_port, delay=0.3) as proxy: proxy.url``

Each chunk read from one side is written to the other ``delay`` seconds later, in
order, in each direction (``up_delay``: client to server, ``down_delay``: server to
client). The delays can be changed at any time and apply to chunks read from then on.
``accepted`` counts the connections clients opened, so a test can tell a warm
connection from a new one; ``wait_delivered(n)`` waits until ``n`` chunks reached the
server (the request is there, whatever happens to the answer). ``cut()`` breaks every
open connection, and while ``refusing`` is set new ones are closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

__all__ = ["DelayProxy"]


class DelayProxy:
    def __init__(self, host: str, port: int, *, delay: float = 0.0) -> None:
        self.target = (host, port)
        self.up_delay = delay
        self.down_delay = delay
        self._closing = False
        self.accepted = 0
        self.refusing = False
        self.delivered = 0  # chunks written to the server
        self._delivered = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    @property
    def delay(self) -> float:
        return max(self.up_delay, self.down_delay)

    @delay.setter
    def delay(self, seconds: float) -> None:
        """The same delay both ways (a round trip then costs twice as much)."""
        self.up_delay = self.down_delay = seconds

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        self._closing = True
        if self._server is not None:
            self._server.close()
        writers = list(self._writers)
        for writer in writers:
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    def cut(self) -> None:
        """Close every open connection, both sides (a network failure)."""
        for writer in list(self._writers):
            writer.close()

    async def wait_delivered(self, count: int) -> None:
        """Until ``count`` chunks in all have been written to the server."""
        async with self._delivered:
            await self._delivered.wait_for(lambda: self.delivered >= count)

    async def __aenter__(self) -> DelayProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ plumbing

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.refusing or self._closing:
            client_w.close()
            return
        self._writers.add(client_w)
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            client_w.close()
            self._writers.discard(client_w)
            return
        if self._closing:  # closed while this connection was being opened
            server_w.close()
            client_w.close()
            self._writers.discard(client_w)
            return
        self._writers.add(server_w)
        self._spawn(self._pump(client_r, server_w, upstream=True, peer=client_w))
        self._spawn(self._pump(server_r, client_w, upstream=False, peer=server_w))

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        upstream: bool,
        peer: asyncio.StreamWriter,
    ) -> None:
        """Read chunks, stamp each with its due time, write each when due, in order."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def read() -> None:
            with contextlib.suppress(ConnectionError):
                while chunk := await reader.read(65536):
                    delay = self.up_delay if upstream else self.down_delay
                    queue.put_nowait((loop.time() + delay, chunk))
            queue.put_nowait(None)

        reading = loop.create_task(read())
        try:
            with contextlib.suppress(ConnectionError):
                while (item := await queue.get()) is not None:
                    due, chunk = item
                    await asyncio.sleep(max(0.0, due - loop.time()))
                    writer.write(chunk)
                    await writer.drain()
                    if upstream:
                        async with self._delivered:
                            self.delivered += 1
                            self._delivered.notify_all()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading
            # One side closed: close both, as a real connection would end.
            for w in (writer, peer):
                w.close()
                self._writers.discard(w)
