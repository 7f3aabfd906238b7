"""``EmulatedPlatform``: one App, one emulator, one REALTIME10 app between them.

::

    from rtcontrol import App, dialout, read, tts
    from rtcontrol.emulator import Callee, Press
    from rtcontrol.testing import EmulatedPlatform

    app = App()

    @app.on_inbound
    async def welcome(call):
        return read(tts("Press 1 for sales"), max_digits=1).then(route)

    @app.step
    async def route(call):
        return dialout("+33100000001")

    async def test_the_agent_hangs_up_first() -> None:
        agent = Callee(hangup_after=30)            # answers after 2 s, talks for 30 s
        async with EmulatedPlatform(app, phonebook={"+33100000001": agent}) as platform:
            t = await platform.call(Callee(actions=[Press("1")]))
        assert t.executed == ["read", "dialout"]
        assert t.ended_by == "bridge"

    async def test_a_silent_agent_meets_the_kit_limit() -> None:
        # The default callee answers and never hangs up: the call ends at the
        # kit's maximum call length (MAX_CALL_SECONDS virtual seconds).
        async with EmulatedPlatform(app, speed=2000) as platform:
            t = await platform.call(Callee(actions=[Press("1")]))
        assert t.ended_by == "max_duration"
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable
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
from .handle import CallHandle
from .helpers import random_credentials
from .results import CallResult
from .strict import HANDLER_LOGGER, HandlerFailed, HandlerFailure, Watch

if TYPE_CHECKING:
    from ..app import App
    from ..flow import Flow

__all__ = ["CALLBACK_PATH", "MAX_CALL_SECONDS", "EmulatedPlatform"]

CALLBACK_PATH = "/callback"
APP_HOST = "http://rtcontrol.test"
RPC_HOST = "http://callr.test"
#: The kit's maximum call length, in virtual seconds (``EmulatorSettings.max_call_duration``
#: when ``settings`` is not given): at the default speed (50) it is 12 real seconds, well
#: inside a pytest timeout. A call that reaches it ends with ``ended_by == "max_duration"``.
MAX_CALL_SECONDS = 600.0
#: Call ids each platform may use: the nth platform of a process starts at
#: ``first_callid + n * CALLIDS_PER_PLATFORM``. An App used by several platforms in turn
#: (a module-level ``app``) remembers the calls it saw, and handler errors are logged by
#: call id: no two platforms may give a call the same id.
CALLIDS_PER_PLATFORM = 100_000
_PLATFORMS = itertools.count()


class EmulatedPlatform:
    """One App, one emulator, one REALTIME10 app between them (an async context manager).

    ``over``: ``"asgi"`` (in-process, the default) or ``"http"`` (uvicorn serves the app
    and the emulator's JSON-RPC endpoint on loopback, exactly as in production). The
    app's JSON-RPC client is pointed at the emulator, so ``app.start_call``,
    ``app.interrupt`` and ``app.hangup`` work. ``speed``: virtual seconds per real
    second. ``settings``: the emulator's behaviour (default: ``EmulatorSettings`` with
    ``max_call_duration=MAX_CALL_SECONDS``). ``phonebook``: E.164 number -> callee that
    outbound calls and ``dialout`` reach; other numbers reach ``default_callee`` (answers
    after 2 s, stays silent, never hangs up).

    An App without callback credentials (and without ``allow_no_auth``) gets throw-away
    ones for the platform's life, as :func:`~rtcontrol.testing.random_credentials` makes.

    ``strict``: a handler failure (exception, non-command, fallback) raises
    :class:`~rtcontrol.testing.HandlerFailed` at the end of its call, or when the
    platform closes; see :mod:`rtcontrol.testing.strict`. Off by default here, on by
    default in the ``callr_platform`` fixture.
    """

    def __init__(
        self,
        app: App,
        *,
        over: Literal["asgi", "http"] = "asgi",
        speed: float = 50.0,
        settings: EmulatorSettings | None = None,
        phonebook: dict[str, Callee] | None = None,
        default_callee: Callee | None = None,
        strict: bool = False,
    ) -> None:
        self.app = app
        self.over = over
        self.strict = strict
        self._speed = speed
        self._settings = settings or EmulatorSettings(max_call_duration=MAX_CALL_SECONDS)
        self._phonebook = phonebook
        self._default_callee = default_callee
        self._servers: list[LocalServer] = []
        self._emulator: Emulator | None = None
        self._client: Any = None
        self._watch = Watch(self._owns)
        self._unsubscribe: Callable[[], None] | None = None
        self.app_hash = ""

    @property
    def emulator(self) -> Emulator:
        """The :class:`~rtcontrol.emulator.Emulator` (its calls, apps and settings)."""
        if self._emulator is None:
            raise RuntimeError("use `async with EmulatedPlatform(app) as platform:` first")
        return self._emulator

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> EmulatedPlatform:
        try:
            await self._open()
        except BaseException:
            await self._close()
            raise
        return self

    async def _open(self) -> None:
        from ..adapters.endpoint import auth_for
        from ..rpc import CallrClient

        app = self.app
        s = app.settings
        if not (s.callback_login or s.callback_password or s.allow_no_auth):
            app.settings = s.model_copy(update=random_credentials())
        auth_for(app)  # half-configured credentials: the ConfigurationError production raises
        login = app.settings.callback_login or ""
        password = app.settings.callback_password or ""
        clock = ScaledClock(self._speed)
        settings = self._settings
        if "first_callid" not in settings.model_fields_set:  # unless the test chose
            shift = next(_PLATFORMS) % 10_000 * CALLIDS_PER_PLATFORM
            settings = settings.model_copy(update={"first_callid": settings.first_callid + shift})
        kwargs: dict[str, Any] = {
            "clock": clock,
            "phonebook": self._phonebook,
            "default_callee": self._default_callee,
        }
        logging.getLogger(HANDLER_LOGGER).addHandler(self._watch)
        self._unsubscribe = app.events.subscribe(self._watch.on_event)
        if self.over == "asgi":
            emu = Emulator(settings, transport=httpx.ASGITransport(app), **kwargs)
            app_url = APP_HOST + CALLBACK_PATH
            client = CallrClient(
                api_url=RPC_HOST + RPC_PATH,
                api_key=DEFAULT_API_KEY,
                transport=httpx.ASGITransport(emu.rpc_app),
            )
            await app.store.ping()
        else:
            emu = Emulator(settings, **kwargs)
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

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._close()
        failures = self._watch.take()
        if not (self.strict and failures):
            return
        error = HandlerFailed(failures)
        if exc is None:
            raise error
        exc.add_note(f"\nAlso, when the platform closed:\n{error}")

    async def _close(self) -> None:
        try:
            if self._emulator is not None:
                await self._emulator.aclose()
            # Lifespan shutdown closes the app's client and store.
            await asyncio.gather(*(server.stop() for server in self._servers))
            self._servers.clear()
            if self.over == "asgi":
                await self.app.shutdown(timeout=5.0)
        finally:
            logging.getLogger(HANDLER_LOGGER).removeHandler(self._watch)
            if self._unsubscribe is not None:
                self._unsubscribe()
                self._unsubscribe = None

    # --- strict mode -------------------------------------------------------------------------
    def _owns(self, callid: int) -> bool:
        if self._emulator is None:
            return False
        try:
            self._emulator.call(callid)
        except KeyError:
            return False
        return True

    def _started(self, callid: int) -> None:
        self._watch.started(callid)

    def _check(self, callid: int, transcript: Transcript) -> None:
        """Raise :class:`HandlerFailed` for the unexpected failures of ``callid`` (strict)."""
        failures = self._watch.take(callid)
        if self.strict and failures:
            raise HandlerFailed(failures, transcript)

    def expect_fallback(self) -> contextlib.AbstractContextManager[list[HandlerFailure]]:
        """A block whose calls are meant to fail: their handler failures do not raise.

        ``with platform.expect_fallback() as failures:`` yields the list of the
        :class:`~rtcontrol.testing.HandlerFailure` seen for the calls started inside the
        block (and any failure logged while it is open); it fills as they happen. Raises
        ``AssertionError`` at the end of the block if none happened. Blocks do not nest.
        """
        return self._watch.expect()

    # --- calls -------------------------------------------------------------------------------
    async def call(
        self,
        callee: Callee | None = None,
        *,
        cli_number: str = "+33612345678",
        number: str = "+33123456789",
        app_hash: str | None = None,
    ) -> CallResult:
        """Place an inbound call from ``callee`` (default: ``default_callee``) to the DID
        ``number``; return its :class:`~rtcontrol.testing.CallResult` when it ends.

        Raises :class:`~rtcontrol.testing.HandlerFailed` in strict mode."""
        handle = await self.start(callee, cli_number=cli_number, number=number, app_hash=app_hash)
        return await handle.ended()

    async def start(
        self,
        callee: Callee | None = None,
        *,
        cli_number: str = "+33612345678",
        number: str = "+33123456789",
        app_hash: str | None = None,
    ) -> CallHandle:
        """Place an inbound call like :meth:`call`, and return at once its
        :class:`~rtcontrol.testing.CallHandle` (wait for commands, interrupt, hang up)."""
        call = self.emulator.start_call(
            app_hash or self.app_hash,
            callee,
            cli_number=cli_number,
            number=number,
        )
        self._started(call.callid)
        return CallHandle(call, app=self.app, emulator=self.emulator, check=self._check)

    async def start_call(
        self,
        number: str = "+33699999999",
        callee: Callee | None = None,
        *,
        flow: str | type[Flow] | None = None,
        data: dict[str, Any] | None = None,
        ring_timeout: int = 30,
    ) -> CallResult:
        """Start an outbound call with ``app.start_call`` and return its
        :class:`~rtcontrol.testing.CallResult` when it ends. ``callee`` (if given) is
        added to the phonebook under ``number``.

        Raises :class:`~rtcontrol.testing.HandlerFailed` in strict mode."""
        handle = await self.start_outbound(
            number, callee, flow=flow, data=data, ring_timeout=ring_timeout
        )
        return await handle.ended()

    async def start_outbound(
        self,
        number: str = "+33699999999",
        callee: Callee | None = None,
        *,
        flow: str | type[Flow] | None = None,
        data: dict[str, Any] | None = None,
        ring_timeout: int = 30,
    ) -> CallHandle:
        """Start an outbound call like :meth:`start_call`, and return at once its
        :class:`~rtcontrol.testing.CallHandle` (``flow`` and ``data`` as in
        ``app.start_call``; ``ring_timeout`` in seconds)."""
        if callee is not None:
            self.emulator.phonebook[number] = callee
        request_hash = await self.app.start_call(
            Target(number=number, timeout=ring_timeout),
            flow=flow,
            data=data,
            app_hash=self.app_hash,
        )
        call = self.emulator.call_for_request(request_hash)
        self._started(call.callid)
        return CallHandle(call, app=self.app, emulator=self.emulator, check=self._check)
