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
    CONTROL_PATH,
    DEFAULT_API_KEY,
    RPC_PATH,
    Callee,
    ControlClient,
    Emulator,
    EmulatorSettings,
    LocalServer,
    ScaledClock,
    Transcript,
)
from ..emulator.control import build_control_app, build_service_app
from ..events import CallbackAnswered, Event
from ..media import Target
from .handle import CallHandle, Steps
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

    ``over``: ``"asgi"`` (in-process, the default) or ``"http"`` (uvicorn serves the app,
    and the emulator as a service: JSON-RPC and the control API on one loopback server,
    exactly as ``rtcontrol emulator`` does). The app's JSON-RPC client is pointed at the
    emulator, so ``app.start_call``, ``app.interrupt`` and ``app.hangup`` work.
    ``speed``: virtual seconds per real second. ``settings``: the emulator's behaviour
    (default: ``EmulatorSettings`` with ``max_call_duration=MAX_CALL_SECONDS``).
    ``phonebook``: E.164 number -> callee that outbound calls and ``dialout`` reach;
    other numbers reach ``default_callee`` (answers after 2 s, stays silent, never
    hangs up).

    The platform drives the emulator through its control API (``/control/v1``), as
    ``rtcontrol call --inbound`` and the dev page do: :attr:`control` is that API's
    :class:`~rtcontrol.emulator.ControlClient` (in-process over ``httpx.ASGITransport``
    for ``"asgi"``, over loopback HTTP for ``"http"``). It creates the REALTIME10 app,
    fills the phonebook, places inbound calls and reads each final transcript
    (``GET /calls/{id}/transcript``) through it. Waits while a call runs
    (:meth:`CallHandle.wait_for <rtcontrol.testing.CallHandle.wait_for>`) watch the
    emulator's in-process event bus, the one the API's event stream reads (an
    ``httpx.ASGITransport`` cannot stream). A test acts as the caller with it::

        from rtcontrol import App, read, tts
        from rtcontrol.testing import EmulatedPlatform

        app = App()

        @app.on_inbound
        async def welcome(call):
            return read(tts("Your PIN?"), max_digits=4).then(done)

        @app.step
        async def done(call):
            return read(tts(f"You typed {call.digits}."), max_digits=1)

        async def test_a_person_types_the_pin() -> None:
            async with EmulatedPlatform(app, strict=True) as platform:
                handle = await platform.start("live")    # a person, not a script
                await handle.wait_for("read")
                await platform.control.press(handle.callid, "1234")
                await handle.wait_for("read", nth=2)
                await platform.control.hang_up(handle.callid)
                t = await handle.ended()
            assert t.said == ["Your PIN?", "You typed 1234."]
            assert t.ended_by == "callee"

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
        self._control: ControlClient | None = None
        self._client: Any = None
        #: Per call id: (step, run number) of each callback answered, from its first.
        self._steps: dict[int, Steps] = {}
        self._watch = Watch(self._owns)
        self._unsubscribe: Callable[[], None] | None = None
        self.app_hash = ""

    @property
    def emulator(self) -> Emulator:
        """The :class:`~rtcontrol.emulator.Emulator` (its calls, apps and settings)."""
        if self._emulator is None:
            raise RuntimeError("use `async with EmulatedPlatform(app) as platform:` first")
        return self._emulator

    @property
    def control(self) -> ControlClient:
        """The emulator's control API (:class:`~rtcontrol.emulator.ControlClient`): act
        as a live callee (``press``, ``speak``, ``hang_up``), list calls, read
        transcripts, change the phonebook. Open while the platform is."""
        if self._control is None:
            raise RuntimeError("use `async with EmulatedPlatform(app) as platform:` first")
        return self._control

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
        kwargs: dict[str, Any] = {"clock": clock, "default_callee": self._default_callee}
        logging.getLogger(HANDLER_LOGGER).addHandler(self._watch)
        self._unsubscribe = app.events.subscribe(self._on_event)
        if self.over == "asgi":
            emu = Emulator(settings, transport=httpx.ASGITransport(app), **kwargs)
            app_url = APP_HOST + CALLBACK_PATH
            client = CallrClient(
                api_url=RPC_HOST + RPC_PATH,
                api_key=DEFAULT_API_KEY,
                transport=httpx.ASGITransport(emu.rpc_app),
            )
            control = ControlClient(
                RPC_HOST + CONTROL_PATH,
                transport=httpx.ASGITransport(build_control_app(emu), root_path=CONTROL_PATH),
            )
            await app.store.ping()
        else:
            emu = Emulator(settings, **kwargs)
            app_server = LocalServer(app)
            service = LocalServer(build_service_app(emu))  # JSON-RPC + control API
            for server in (app_server, service):
                await server.start()
                self._servers.append(server)
            app_url = app_server.url + CALLBACK_PATH
            client = CallrClient(api_url=service.url + RPC_PATH, api_key=DEFAULT_API_KEY)
            control = ControlClient(service.url + CONTROL_PATH)
        self._emulator = emu
        self._control = control
        self._client = client
        app.client = client
        app.serving = True  # the emulator calls this very process back
        self.app_hash = await control.create_app(app_url, login=login, password=password)
        for number, callee in (self._phonebook or {}).items():
            await control.set_phone(number, callee)
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
            if self._control is not None:
                await self._control.aclose()
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

    # --- strict mode, steps --------------------------------------------------------------------
    def _on_event(self, event: Event) -> None:
        self._watch.on_event(event)
        if isinstance(event, CallbackAnswered) and self._emulator is not None:
            try:
                call = self._emulator.call(event.callid)
            except KeyError:
                return
            # Emitted before the reply leaves: the command this step answered with is
            # the next one the call runs, i.e. run number len(executed) + 1.
            steps = self._steps.setdefault(event.callid, [])
            steps.append((event.step, len(call.transcript.executed) + 1))

    def _handle(self, callid: int) -> CallHandle:
        """The handle of a call just placed: its steps were recorded from its first
        callback (over HTTP the call may run before its placing returns)."""
        self._started(callid)
        return CallHandle(
            self.emulator.call(callid),
            app=self.app,
            emulator=self.emulator,
            check=self._check,
            control=self.control,
            steps=self._steps.setdefault(callid, []),
        )

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
        callee: Callee | Literal["live"] | None = None,
        *,
        cli_number: str = "+33612345678",
        number: str = "+33123456789",
        app_hash: str | None = None,
    ) -> CallResult:
        """Place an inbound call from ``callee`` (default: ``default_callee``; ``"live"``:
        a person, driven through :attr:`control`) to the DID ``number``; return its
        :class:`~rtcontrol.testing.CallResult` when it ends.

        Raises :class:`~rtcontrol.testing.HandlerFailed` in strict mode, and
        :class:`~rtcontrol.errors.ControlError` (400) when the emulator refuses the
        call (a number that is not E.164, an unknown ``app_hash``)."""
        handle = await self.start(callee, cli_number=cli_number, number=number, app_hash=app_hash)
        return await handle.ended()

    async def start(
        self,
        callee: Callee | Literal["live"] | None = None,
        *,
        cli_number: str = "+33612345678",
        number: str = "+33123456789",
        app_hash: str | None = None,
    ) -> CallHandle:
        """Place an inbound call like :meth:`call` (``POST /control/v1/calls``), and
        return at once its :class:`~rtcontrol.testing.CallHandle` (wait for commands,
        interrupt, hang up)."""
        placed = await self.control.place_inbound(
            callee, app=app_hash or self.app_hash, from_=cli_number, to=number
        )
        return self._handle(placed.callid)

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
        ``app.start_call``; ``ring_timeout`` in seconds). ``callee`` goes in the
        phonebook through the control API (``PUT /control/v1/phonebook/{number}``)."""
        if callee is not None:
            await self.control.set_phone(number, callee)
        request_hash = await self.app.start_call(
            Target(number=number, timeout=ring_timeout),
            flow=flow,
            data=data,
            app_hash=self.app_hash,
        )
        return self._handle(self.emulator.call_for_request(request_hash).callid)
