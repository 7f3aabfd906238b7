"""Test kit: your App and the emulator wired together, in a few lines.

::

    from rtcontrol.emulator import Callee, Press
    from rtcontrol.testing import EmulatedPlatform

    async def test_menu() -> None:
        async with EmulatedPlatform(build()) as platform:
            t = await platform.call(Callee(actions=[Press("1")]))
        assert t.executed == ["read", "dialout", "hangup"]

``EmulatedPlatform`` runs in-process by default (``over="asgi"``), or over real
HTTP on loopback (``over="http"``: uvicorn serves the app and the emulator's
JSON-RPC endpoint, exactly as in production). The app's JSON-RPC client is
pointed at the emulator, so ``start_call``, ``interrupt`` and ``hangup`` work.
The pytest plugin (``rtcontrol.testing.plugin``, loaded automatically) offers
the ``callr_platform`` fixture, a factory of these.
"""

from __future__ import annotations

import asyncio
import secrets
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal

import httpx

from ..emulator import (
    DEFAULT_API_KEY,
    RPC_PATH,
    Callee,
    Emulator,
    EmulatorSettings,
    LocalServer,
    ScaledClock,
    Transcript,
)
from ..media import Target

if TYPE_CHECKING:
    from ..app import App
    from ..flow import Flow

__all__ = ["CALLBACK_PATH", "EmulatedPlatform", "callback_body", "random_credentials"]

CALLBACK_PATH = "/callback"
APP_HOST = "http://rtcontrol.test"
RPC_HOST = "http://callr.test"


class EmulatedPlatform:
    """One App, one emulator, one REALTIME10 app between them."""

    def __init__(
        self,
        app: App,
        *,
        over: Literal["asgi", "http"] = "asgi",
        speed: float = 50.0,
        settings: EmulatorSettings | None = None,
        phonebook: dict[str, Callee] | None = None,
        default_callee: Callee | None = None,
    ) -> None:
        self.app = app
        self.over = over
        self._speed = speed
        self._settings = settings
        self._phonebook = phonebook
        self._default_callee = default_callee
        self._servers: list[LocalServer] = []
        self._emulator: Emulator | None = None
        self._client: Any = None
        self.app_hash = ""

    @property
    def emulator(self) -> Emulator:
        if self._emulator is None:
            raise RuntimeError("use `async with EmulatedPlatform(app) as platform:` first")
        return self._emulator

    async def __aenter__(self) -> EmulatedPlatform:
        from ..rpc import CallrClient

        app = self.app
        login = app.settings.callback_login or ""
        password = app.settings.callback_password or ""
        clock = ScaledClock(self._speed)
        kwargs: dict[str, Any] = {
            "clock": clock,
            "phonebook": self._phonebook,
            "default_callee": self._default_callee,
        }
        if self.over == "asgi":
            emu = Emulator(self._settings, transport=httpx.ASGITransport(app), **kwargs)
            app_url = APP_HOST + CALLBACK_PATH
            client = CallrClient(
                api_url=RPC_HOST + RPC_PATH,
                api_key=DEFAULT_API_KEY,
                transport=httpx.ASGITransport(emu.rpc_app),
            )
            await app.store.ping()
        else:
            emu = Emulator(self._settings, **kwargs)
            app_server = LocalServer(app)
            rpc_server = LocalServer(emu.rpc_app)
            for server in (app_server, rpc_server):
                await server.start()
                self._servers.append(server)
            app_url = app_server.url + CALLBACK_PATH
            client = CallrClient(api_url=rpc_server.url + RPC_PATH, api_key=DEFAULT_API_KEY)
        self._emulator = emu
        self._client = client
        app.client = client
        app.serving = True  # the emulator calls this very process back
        self.app_hash = emu.create_app(app_url, login=login, password=password).hash
        if not app.settings.app_hash:  # so start_call works without passing app_hash
            app.settings = app.settings.model_copy(update={"app_hash": self.app_hash})
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._emulator is not None:
            await self._emulator.aclose()
        # Lifespan shutdown closes the app's client and store.
        await asyncio.gather(*(server.stop() for server in self._servers))
        self._servers.clear()
        if self.over == "asgi":
            await self.app.shutdown(timeout=5.0)

    async def call(
        self,
        callee: Callee | None = None,
        *,
        cli_number: str = "+33612345678",
        number: str = "+33123456789",
        app_hash: str | None = None,
    ) -> Transcript:
        """Place an inbound call from ``callee`` and return its transcript when it ends."""
        return await self.emulator.place_call(
            app_hash or self.app_hash, callee, cli_number=cli_number, number=number
        )

    async def start_call(
        self,
        number: str = "+33699999999",
        callee: Callee | None = None,
        *,
        flow: str | type[Flow] | None = None,
        data: dict[str, Any] | None = None,
        ring_timeout: int = 30,
    ) -> Transcript:
        """Start an outbound call with ``app.start_call`` and return its transcript."""
        if callee is not None:
            self.emulator.phonebook[number] = callee
        request_hash = await self.app.start_call(
            Target(number=number, timeout=ring_timeout),
            flow=flow,
            data=data,
            app_hash=self.app_hash,
        )
        return await self.emulator.wait_request(request_hash)


def random_credentials() -> dict[str, str]:
    """Callback credentials for a throw-away app (tests, demos)."""
    return {"callback_login": "callr", "callback_password": secrets.token_urlsafe(18)}


def callback_body(**fields: Any) -> dict[str, Any]:
    """All 14 fields of an RT.Request as the platform sends them: by default the first
    callback of an inbound call; ``fields`` override or add keys. For driving an app
    directly (``App.handle(RTRequest.model_validate(callback_body(...)))``) or over HTTP."""
    body: dict[str, Any] = {
        "app": "4346423A",
        "callid": 421889,
        "request_hash": None,
        "cli_name": "",
        "cli_number": "+33612345678",
        "date_started": "2026-11-28 10:00:00",
        "number": "+33123456789",
        "command": "",
        "command_id": 0,
        "command_result": "",
        "command_error": "",
        "call_status": "INCOMING_CALL",
        "cdr_field": "",
        "variables": {},
    }
    body.update(fields)
    return body
