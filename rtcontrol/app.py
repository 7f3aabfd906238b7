"""``App``: the facade users build IVRs with.

It registers handlers and flows (into :class:`~rtcontrol.core.registry.Registry`),
builds the :class:`~rtcontrol.core.engine.Engine` that answers callbacks, places
outbound calls and interrupts them. It never imports a web framework: ``app.asgi()``
loads the FastAPI adapter on demand, and tests can ``await app.handle_callback(req)``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType, SimpleNamespace, TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .commands import Command, play, wait
from .core.engine import Engine
from .core.flow import Flow, FlowSpec
from .core.ports import CallControl, Clock, Reply
from .core.registry import Registry, Routes
from .errors import CommandError, ConfigurationError, OutputError, RegistrationError
from .events import EventBus
from .media import DEFAULT_VOICE, AppVoiceTTS, Target, check_voice, tts, with_voice
from .metrics import Metrics
from .protocol import RTRequest
from .settings import Settings, unknown_keyword
from .store import Store, open_store
from .validate import check_command

if TYPE_CHECKING:
    from .rpc import CallrClient

__all__ = ["DEFAULT_FALLBACK", "DEFAULT_HOLD", "App"]

app_log = logging.getLogger("rtcontrol.app")

H = TypeVar("H", bound=Callable[..., Any])
F = TypeVar("F", bound=type[Flow])

#: ``App(...)``'s own keywords (besides the settings), for suggestions.
_KEYWORDS = ("settings", "store", "client", "hold", "fallback", "clock", "voice", "lifespan")

#: Played when a handler fails; the call then hangs up. English, in :data:`DEFAULT_VOICE`
#: whatever ``App(voice=...)`` says: give ``fallback=`` in your language.
DEFAULT_FALLBACK = play(
    tts("We are sorry, something went wrong. Please call again later.", DEFAULT_VOICE)
)
#: Sent while a slow handler finishes; issued again until the handler's command is ready.
DEFAULT_HOLD = wait(5)


class App:
    """A REALTIME10 application: register handlers, then serve ``app.asgi()``.

    Function style::

        app = App()

        @app.on_inbound
        async def welcome(call):
            return read(tts("Press 1 for sales"), max_digits=1).then(choice)

        @app.step
        async def choice(call):
            return dialout("+33123456789") if call.digits == "1" else hangup()

    Class style: see :class:`~rtcontrol.flow.Flow` and :meth:`add_flow`.

    Keywords: ``settings`` (else read from ``RTCONTROL_*``) and any field of
    :class:`~rtcontrol.settings.Settings` (``App(handler_budget=2)``, winning over the
    environment); ``store``, ``client``; ``hold`` and ``fallback`` commands;
    ``voice``: the TTS voice of every ``tts(text)`` given no voice, e.g.
    ``"TTS_FR-FR_AUDREY"`` (the language is part of the name; default
    :data:`~rtcontrol.media.DEFAULT_VOICE`); ``lifespan``: your dependencies (below).

    Dependencies (a database pool, a CRM client) live in :attr:`state`, opened and
    closed by ``lifespan``, a function taking the app and returning an async context
    manager (``contextlib.asynccontextmanager``), as in FastAPI::

        @asynccontextmanager
        async def lifespan(app: App) -> AsyncIterator[None]:
            app.state.crm = await Crm.connect()
            yield
            await app.state.crm.close()

        app = App(lifespan=lifespan)      # handlers: call.app.state.crm

    It is entered by :meth:`startup` (the ASGI lifespan of ``uvicorn module:app``) or
    ``async with App(...) as app:``, and exited by :meth:`shutdown` once the calls in
    flight are answered. A mapping it yields is copied into ``state`` too. A server
    run without a lifespan enters it on the first callback.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        store: Store | None = None,
        client: CallrClient | None = None,
        hold: Command = DEFAULT_HOLD,
        fallback: Command = DEFAULT_FALLBACK,
        clock: Clock | None = None,
        voice: str | None = None,
        lifespan: Callable[[App], AbstractAsyncContextManager[Any]] | None = None,
        **overrides: Any,
    ) -> None:
        unknown = sorted(set(overrides) - set(Settings.model_fields))
        if unknown:
            raise ConfigurationError(
                "; ".join(unknown_keyword(name, "App", _KEYWORDS) for name in unknown)
            )
        if voice is not None:
            try:
                check_voice(voice, "App", "voice")
            except CommandError as exc:
                raise ConfigurationError(str(exc)) from None
        if lifespan is not None and (
            not callable(lifespan)
            or inspect.isasyncgenfunction(lifespan)
            or inspect.iscoroutinefunction(lifespan)
        ):
            raise ConfigurationError(
                f"lifespan {getattr(lifespan, '__qualname__', repr(lifespan))} must be a "
                "function taking the app and returning an async context manager: decorate "
                "your `async def lifespan(app)`, which yields once, with "
                "@contextlib.asynccontextmanager"
            )
        #: The voice put in every ``tts(text)`` given no voice; None: the default voice.
        self.voice = voice
        #: Your dependencies (``app.state.db``), reachable from handlers as ``call.app.state``.
        self.state: Any = SimpleNamespace()
        self._lifespan = lifespan
        self._lifespan_cm: AbstractAsyncContextManager[Any] | None = None
        self._lifespan_lock = asyncio.Lock()
        if settings is not None and overrides:  # the keyword arguments win
            settings = Settings.from_env({}, **{**settings.model_dump(), **overrides})
        self.settings = settings or Settings.from_env(**overrides)
        s = self.settings
        self.store = (
            store
            if store is not None
            else open_store(
                s.store_url, timeout=s.store_timeout, connect_timeout=s.store_connect_timeout
            )
        )
        self._client: Any = client
        if not isinstance(hold, Command) or hold.ends_call:
            raise ConfigurationError("hold must be a command that keeps the call up (wait, play)")
        if not isinstance(fallback, Command):
            raise ConfigurationError("fallback must be a command (e.g. play(...) or hangup())")
        for what, command in (("hold", hold), ("fallback", fallback)):
            try:
                check_command(command)
            except OutputError as exc:
                raise ConfigurationError(f"{what}: {exc}") from None
            if command.step is not None:
                raise ConfigurationError(
                    f"{what} must not be bound to a step with .then(): rtcontrol routes its "
                    "result itself (the hold is re-issued or the handler's command follows; "
                    "a hang-up follows the fallback)"
                )
        if voice is not None:
            hold, fallback = voiced(hold, voice), voiced(fallback, voice)
        self.hold = hold
        self.fallback = fallback
        self.registry = Registry()
        self.events = EventBus()
        self.metrics = Metrics()
        self.events.subscribe(self.metrics)
        from .logs import log_event

        self.events.subscribe(log_event)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._asgi: Any = None
        #: True once this process serves callbacks (an adapter was built or one was handled).
        self.serving = False
        self.engine = (Engine if voice is None else _VoicedEngine)(
            settings=self.settings,
            store=self.store,
            registry=self.registry,
            services=self,
            control=self._control,
            hold=hold,
            fallback=fallback,
            events=self.events,
            clock=clock,
            spawn=self.spawn,
        )
        if isinstance(self.engine, _VoicedEngine):
            self.engine.voice = voice or DEFAULT_VOICE

    # ------------------------------------------------------------ function handlers

    @overload
    def on_inbound(self, fn: H, /) -> H: ...
    @overload
    def on_inbound(self, app_hash: str | None = None) -> Callable[[H], H]: ...
    def on_inbound(self, app_hash: Any = None) -> Any:
        """First callback of an inbound call (optionally only for one app hash)."""
        return self._start_decorator(app_hash, outbound=False, what="on_inbound")

    @overload
    def on_outbound(self, fn: H, /) -> H: ...
    @overload
    def on_outbound(self, app_hash: str | None = None) -> Callable[[H], H]: ...
    def on_outbound(self, app_hash: Any = None) -> Any:
        """First callback of an outbound call started without a flow."""
        return self._start_decorator(app_hash, outbound=True, what="on_outbound")

    def _start_decorator(self, arg: Any, *, outbound: bool, what: str) -> Any:
        def register(fn: H, app_hash: str | None = None) -> H:
            self.registry.add_start(fn, app_hash, outbound=outbound, what=what)
            return fn

        if callable(arg):
            return register(arg)
        if arg is not None and not isinstance(arg, str):
            raise RegistrationError(f"{what} takes an app hash string or nothing")
        return lambda fn: register(fn, arg)

    @overload
    def step(self, fn: H, /) -> H: ...
    @overload
    def step(self, name: str | None = None) -> Callable[[H], H]: ...
    def step(self, name: Any = None) -> Any:
        """A step: receives the result of a command sent with ``.then(step)``.

        ``async def`` steps run on the event loop; a plain ``def`` step runs in a
        worker thread (for blocking code).
        """

        def register(fn: H, name: str | None = None) -> H:
            self.registry.add_step(fn, name)
            return fn

        if callable(name):
            return register(name)
        if name is not None and not isinstance(name, str):
            raise RegistrationError("step takes a step name string or nothing")
        return lambda fn: register(fn, name)

    def _hook(self, name: str, fn: Any) -> Any:
        def register(fn: H) -> H:
            self.registry.add_hook(name, fn)
            return fn

        return register if fn is None else register(fn)

    @overload
    def on_hangup(self, fn: H, /) -> H: ...
    @overload
    def on_hangup(self) -> Callable[[H], H]: ...
    def on_hangup(self, fn: Any = None) -> Any:
        """Runs once per call, whatever ended it, after the reply to the hang-up
        (budget: ``RTCONTROL_HANGUP_BUDGET``). For flows without their own."""
        return self._hook("on_hangup", fn)

    @overload
    def on_break(self, fn: H, /) -> H: ...
    @overload
    def on_break(self) -> Callable[[H], H]: ...
    def on_break(self, fn: Any = None) -> Any:
        """A command was interrupted without a recorded action."""
        return self._hook("on_break", fn)

    @overload
    def on_result(self, fn: H, /) -> H: ...
    @overload
    def on_result(self) -> Callable[[H], H]: ...
    def on_result(self, fn: Any = None) -> Any:
        """Results of commands sent without ``.then(step)``."""
        return self._hook("on_result", fn)

    # ------------------------------------------------------------ straight-line flows

    def call_flow(
        self,
        fn: Any = None,
        /,
        *,
        name: str | None = None,
        version: str = "1",
        retired: bool = False,
        inbound: Routes = False,
        outbound: Routes = False,
    ) -> Any:
        """Register a straight-line flow: ``async def flow(call: LiveCall)`` that awaits
        its commands (``digits = await call.read(...)``). Works bare or with arguments,
        as a decorator or called with the function.

        ``name``: the flow's name (default: the function's), for ``start_call(flow=...)``;
        ``version``: recorded with every call (1-64 characters). To ship a change that
        would replay differently, register the new function under the same ``name``
        with a new ``version``, and keep the old one with ``retired=True`` until its
        calls have ended (or branch with ``call.patched(...)``);
        ``inbound``/``outbound``: routes, as for :meth:`add_flow`.
        Raises RegistrationError for a function of the wrong shape.
        """

        def register(f: H) -> H:
            self.registry.add_script(
                f,
                name,
                version=version,
                retired=retired,
                inbound=inbound,
                outbound=outbound,
            )
            return f

        return register if fn is None else register(fn)

    @overload
    def inbound_call(self, fn: H, /) -> H: ...
    @overload
    def inbound_call(
        self, app_hash: str | None = None, *, name: str | None = None, version: str = "1"
    ) -> Callable[[H], H]: ...
    def inbound_call(
        self, app_hash: Any = None, *, name: str | None = None, version: str = "1"
    ) -> Any:
        """Decorator: a straight-line flow answering inbound calls (of every app, or of
        ``app_hash``). See :meth:`call_flow`."""
        if callable(app_hash):
            return self.call_flow(app_hash, inbound=True)
        routes: Routes = app_hash if app_hash is not None else True
        return self.call_flow(name=name, version=version, inbound=routes)

    @overload
    def outbound_call(self, fn: H, /) -> H: ...
    @overload
    def outbound_call(
        self, app_hash: str | None = None, *, name: str | None = None, version: str = "1"
    ) -> Callable[[H], H]: ...
    def outbound_call(
        self, app_hash: Any = None, *, name: str | None = None, version: str = "1"
    ) -> Any:
        """Decorator: a straight-line flow for calls placed with :meth:`start_call` (of
        every app, or of ``app_hash``). See :meth:`call_flow`."""
        if callable(app_hash):
            return self.call_flow(app_hash, outbound=True)
        routes: Routes = app_hash if app_hash is not None else True
        return self.call_flow(name=name, version=version, outbound=routes)

    # ------------------------------------------------------------ flows

    def add_flow(
        self,
        flow: Flow | type[Flow],
        *,
        name: str | None = None,
        inbound: Routes = False,
        outbound: Routes = False,
    ) -> FlowSpec:
        """Register a flow; ``inbound``/``outbound`` make it the first step for calls
        (``True`` for every app, or one app hash / several)."""
        return self.registry.add_flow(flow, name, inbound, outbound)

    def flow(
        self, *, name: str | None = None, inbound: Routes = False, outbound: Routes = False
    ) -> Callable[[F], F]:
        """Class decorator form of :meth:`add_flow`."""

        def register(cls: F) -> F:
            self.add_flow(cls, name=name, inbound=inbound, outbound=outbound)
            return cls

        return register

    def has_flow(self, name: str) -> bool:
        return self.registry.flow(name) is not None

    def flow_spec(self, name: str) -> FlowSpec:
        """The registered flow ``name``; raises RegistrationError for an unknown one."""
        spec = self.registry.flow(name)
        if spec is None:
            raise RegistrationError(f"no flow named {name!r} is registered")
        return spec

    # ------------------------------------------------------------ serving

    async def handle_callback(
        self, request: RTRequest, *, received_at: float | None = None
    ) -> Reply:
        """Answer one callback: the status and exact body of the reply.

        ``received_at``: wall time (epoch seconds) a proxy received it, when known
        (``X-Request-Start``); the handler budget then counts from there."""
        self.serving = True
        if self._lifespan is not None and self._lifespan_cm is None:
            await self._enter_lifespan()  # a server run without a lifespan
        return await self.engine.handle_callback(request, received_at=received_at)

    def safe_reply(self, request: RTRequest) -> Reply:
        """A reply built from the request alone, for when handling itself failed."""
        return self.engine.safe_reply(request)

    async def handle(self, request: RTRequest) -> bytes:
        """Answer one callback; the bytes are the JSON reply body."""
        return (await self.handle_callback(request)).body

    def asgi(self, path: str = "/callback") -> Any:
        """A standalone FastAPI app serving the callback route, /healthz and /metrics."""
        from .adapters.fastapi import create_asgi

        self.serving = True
        return create_asgi(self, path=path)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """An App is itself an ASGI app (``uvicorn module:app``), built on first use.

        Building it checks the configuration (callback credentials, workers and
        store), so a misconfigured app fails at start-up, in the lifespan.
        """
        if self._asgi is None:
            try:
                self._asgi = self.asgi()
            except ConfigurationError as exc:
                if scope["type"] != "lifespan":
                    raise
                await receive()  # lifespan.startup: refuse to start, with the reason
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
        await self._asgi(scope, receive, send)

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run ``coro`` in the background, kept alive until it ends (and for shutdown)."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self.track(task)
        return task

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a background task alive until it ends (and for graceful shutdown)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_report_failure)

    async def settle(self) -> None:
        """Wait until this process has nothing left to do for its calls: callbacks in
        flight, slow handlers behind a hold, deliveries and ``on_hangup`` runs.

        For tests and scripts (``on_hangup`` runs after the reply to the hang-up).
        """
        janitor = self.engine.hangups.janitor
        while True:
            await self.engine.wait_idle()
            pending = {t for t in self._tasks if not t.done() and t is not janitor}
            if not pending:
                return
            await asyncio.wait(pending)

    async def startup(self) -> None:
        """Check the store, start the hang-up janitor, then enter ``lifespan`` (the
        adapters' ASGI lifespan calls it). Raises StoreError when the store is
        unreachable, and whatever your lifespan raises (the janitor is stopped then)."""
        began = asyncio.get_running_loop().time()
        await self.store.ping()
        self.engine.timing.observe(asyncio.get_running_loop().time() - began)  # a first RTT
        self.engine.start_background()
        try:
            await self._enter_lifespan()
        except BaseException:
            self.engine.stop_background()
            raise

    async def shutdown(self, timeout: float = 25.0) -> None:  # noqa: ASYNC109 - public API
        """Let callbacks, slow handlers and ``on_hangup`` runs in flight finish (up to
        ``timeout`` seconds each), exit ``lifespan``, then close the API client and the
        store. Safe to call twice."""
        self.engine.stop_background()
        try:
            await asyncio.wait_for(self.engine.wait_idle(), timeout=timeout)
            pending = {t for t in self._tasks if not t.done()}
            if pending:
                await asyncio.wait(pending, timeout=timeout)
        except TimeoutError:
            app_log.warning("shutdown: callbacks still in flight after %.0fs", timeout)
        try:
            await self._exit_lifespan()
        finally:
            if self._client is not None:
                await self._client.aclose()
            await self.store.close()

    async def __aenter__(self) -> App:
        """``async with App(...) as app:`` for scripts that start or interrupt calls:
        enters ``lifespan``; leaving the block runs :meth:`shutdown` (the API client
        and the store are closed). It serves no callbacks and runs no hang-up janitor:
        servers use the ASGI lifespan. If ``lifespan`` fails, the client and the store
        are closed before its error is raised."""
        try:
            await self._enter_lifespan()
        except BaseException:
            await self.shutdown()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.shutdown()

    async def _enter_lifespan(self) -> None:
        if self._lifespan is None:
            return
        async with self._lifespan_lock:
            if self._lifespan_cm is not None:
                return
            manager = self._lifespan(self)
            if not isinstance(manager, AbstractAsyncContextManager):
                if inspect.iscoroutine(manager):
                    manager.close()
                raise ConfigurationError(
                    f"lifespan {getattr(self._lifespan, '__qualname__', self._lifespan)} "
                    f"returned {type(manager).__name__}, not an async context manager: "
                    "decorate it with @contextlib.asynccontextmanager"
                )
            value = await manager.__aenter__()
            self._lifespan_cm = manager
            if isinstance(value, Mapping):
                for key, item in value.items():
                    setattr(self.state, str(key), item)

    async def _exit_lifespan(self) -> None:
        manager, self._lifespan_cm = self._lifespan_cm, None
        if manager is not None:
            await manager.__aexit__(None, None, None)

    # ------------------------------------------------------------ the API side

    @property
    def client(self) -> CallrClient:
        """The JSON-RPC client (from ``CALLR_*`` variables unless one was given)."""
        if self._client is None:
            from .rpc import CallrClient

            self._client = CallrClient.from_env()
        client: CallrClient = self._client
        return client

    @client.setter
    def client(self, client: CallrClient) -> None:
        self._client = client

    def _control(self) -> CallControl:
        control: CallControl = self.client
        return control

    async def start_call(
        self,
        target: Target | str,
        *,
        flow: str | type[Flow] | Callable[..., Any] | None = None,
        data: dict[str, Any] | None = None,
        app_hash: str | None = None,
        cli: str = "BLOCKED",
        cdr_field: str = "",
    ) -> str:
        """Dial ``target`` through ``calls.realtime``; its first callback runs ``flow``.

        ``data`` becomes the call's initial ``call.state`` (JSON). Returns the request
        hash. The first callback waits for this call to be recorded, even when the
        platform calls back before ``calls.realtime`` answers (see
        ``RTCONTROL_OUTBOUND_BIND_WAIT``).

        Raises ConfigurationError when no app hash is known, or when the store is
        the in-process memory store and this process does not serve the callbacks
        (the workers could not see the flow and data).
        """
        from .rpc import RealtimeOptions
        from .validate import encode_json

        app_hash = app_hash or self.settings.app_hash
        if not app_hash:
            raise ConfigurationError("start_call needs app_hash= or RTCONTROL_APP_HASH")
        flow_name = self.registry.outbound_flow(flow, app_hash)
        if not self.store.shared and not self.serving:
            raise ConfigurationError(
                "start_call with the memory store only works in the process that serves the "
                "callbacks: the workers would not see this call's flow and data. Set "
                "RTCONTROL_STORE_URL to the workers' Redis, or start calls from the app itself"
            )
        state = dict(data or {})
        encode_json(state, "start_call data")  # refuse now what the store could not keep
        options = RealtimeOptions(cli=cli, cdr_field=cdr_field)
        async with self.engine.bindings.starting():
            request_hash: str = await self.client.realtime(app_hash, target, options)
            await self.engine.bindings.bind(request_hash, flow_name, state)
        return request_hash

    async def interrupt(
        self, callid: int, then: Command | str | Callable[..., Any] | None = None
    ) -> bool:
        """Stop the command a call is running and do ``then`` instead.

        ``then`` is a command, a step of the call's flow (name or function), or None
        to run the flow's ``on_break`` hook. Safe from any worker, handler, task or
        script. An interrupt asked before the previous one took effect replaces its
        action; only one ``calls.realtime_break`` is sent. From inside a handler of
        the same call, ``then`` replaces that handler's reply and no break is sent
        (returns False). Returns the platform's answer to the break (False when no
        command was running: the action still runs on the next callback of the call).
        Raises :class:`CallNotFound` or :class:`CallEnded`.
        """
        if self.voice is not None and isinstance(then, Command):
            then = voiced(then, self.voice)  # it is stored, and JSON keeps no marks
        return await self.engine.interrupt(callid, then)

    async def send_break(self, callid: int) -> bool:
        return await self.engine.send_break(callid)

    async def hangup(self, callid: int) -> bool:
        """End a call through ``calls.hangup``; its ``on_hangup`` runs on the last callback."""
        ok: bool = await self.client.hangup(callid)
        return ok


def voiced(command: Command, voice: str) -> Command:
    """``command`` with ``voice`` in each ``tts(text)`` given no voice; the very same
    object when it has none (the engine tells the fallback by identity)."""
    params = command.params
    if not any(type(value) is AppVoiceTTS for value in params.values()):
        return command
    copy = object.__new__(Command)
    copy.__dict__.update(command.__dict__)
    copy.__dict__["params"] = MappingProxyType(
        {key: with_voice(value, voice) for key, value in params.items()}
    )
    return copy


class _VoicedEngine(Engine):
    """The engine of an ``App(voice=...)``: the one check of what handlers send also
    puts the app's voice in TTS values built without one."""

    voice: str = DEFAULT_VOICE

    def outgoing(
        self,
        command: Any,
        variables: Any,
        flow: Any,
        received: dict[str, Any] | None = None,
    ) -> tuple[Command, dict[str, Any]]:
        checked, variables = super().outgoing(command, variables, flow, received)
        return voiced(checked, self.voice), variables


def _report_failure(task: asyncio.Task[Any]) -> None:
    """No background task dies unobserved."""
    if not task.cancelled() and task.exception() is not None:
        app_log.error("background task failed: %r", task.exception(), exc_info=task.exception())
