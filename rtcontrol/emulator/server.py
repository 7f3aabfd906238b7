"""Running things over real HTTP on loopback: the emulator's JSON-RPC server, or a test app.

:class:`LocalServer` runs uvicorn inside the current event loop on a port it binds first
(``port=0`` picks a free one, so tests never collide), and stops it on exit. A bind
that fails (port in use, unknown host) raises its ``OSError`` with the socket closed.
:func:`serve` is what a CLI calls to run the emulator until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator

import uvicorn
from starlette.types import ASGIApp

from .emulator import Emulator
from .rpc import RPC_PATH

__all__ = ["RPC_PATH", "LocalServer", "serve"]


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without signal handlers: the host process (pytest, a CLI) owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class LocalServer:
    """Serve ``app`` on ``host:port`` with uvicorn, as an async context manager.

    ::

        async with LocalServer(my_app) as server:
            emu.create_app(server.url + "/callr")
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        log_level: str = "warning",
        handle_signals: bool = False,
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self._log_level = log_level
        self._signals = handle_signals
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` (the bound port once started)."""
        return f"http://{self.host}:{self.port}"

    async def start(self) -> None:
        # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are
        # TCP, and without it every small reply waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.host, self.port))
            self.port = sock.getsockname()[1]
        except BaseException:  # OSError (port in use, unknown host) and anything else
            sock.close()
            raise
        config = uvicorn.Config(
            self.app,
            log_level=self._log_level,
            log_config=None,
            access_log=False,
            lifespan="auto",
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config) if self._signals else _EmbeddedServer(config)
        self._server = server
        self._task = asyncio.create_task(_serve(server, sock))
        while not server.started:
            if self._task.done():
                sock.close()
                self._task.result()
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        task, self._server, self._task = self._task, None, None
        await task

    async def wait(self) -> None:
        """Block until the server stops (Ctrl-C when ``handle_signals``).

        Cancelling the waiter does not cancel uvicorn: :meth:`stop` shuts it down cleanly.
        """
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> LocalServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
    """uvicorn exits the process when an app's start-up fails; here that is an error."""
    try:
        await server.serve(sockets=[sock])
    except SystemExit as exc:
        sock.close()
        raise RuntimeError(f"the app failed to start (uvicorn exit code {exc.code})") from None


async def serve(
    emulator: Emulator | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 8765,
    log_level: str = "info",
    on_ready: Callable[[LocalServer], object] | None = None,
) -> None:
    """Run the emulator's JSON-RPC server until interrupted, then hang up every call.

    The endpoint is ``http://host:port/json-rpc/v1.1/`` (``port=0``: any free port;
    ``on_ready`` receives the started server, whose ``url`` tells which). Apps and calls
    can also be driven through ``emulator``'s Python methods while it runs.
    """
    emu = emulator or Emulator()
    server = LocalServer(
        emu.rpc_app, host=host, port=port, log_level=log_level, handle_signals=True
    )
    async with emu:
        await server.start()
        if on_ready is not None:
            on_ready(server)
        try:
            await server.wait()
        finally:
            await server.stop()
