"""``App``: handlers and flows, routing, outbound calls and interrupts.

The App is the core; it never imports FastAPI. ``app.asgi()`` builds the web
adapter (``rtcontrol.web``) on demand, and tests can call ``await app.handle(req)``
directly.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from . import records as rec
from .commands import Command, hangup, play, wait
from .dispatch import Dispatcher, command_to_json
from .errors import CallEnded, CallNotFound, ConfigurationError, RegistrationError
from .flow import Flow, FlowSpec, Handler, check_flow_name, check_handler
from .logs import app_log
from .media import Target, tts
from .metrics import Metrics
from .protocol import RTRequest
from .settings import Settings
from .store import Store, open_store

if TYPE_CHECKING:
    from fastapi import FastAPI

    from .rpc import CallrClient

__all__ = ["DEFAULT_FALLBACK", "DEFAULT_HOLD", "App"]

H = TypeVar("H", bound=Callable[..., Any])
F = TypeVar("F", bound=type[Flow])

#: Played when a handler fails; the call then hangs up.
DEFAULT_FALLBACK = play(tts("We are sorry, something went wrong. Please call again later."))
#: Sent while a slow handler finishes; issued again until the handler's command is ready.
DEFAULT_HOLD = wait(5)
MAIN = "main"  # the flow that holds function-style handlers
Routes = bool | str | Iterable[str]


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
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        store: Store | None = None,
        client: CallrClient | None = None,
        hold: Command = DEFAULT_HOLD,
        fallback: Command = DEFAULT_FALLBACK,
        **overrides: Any,
    ) -> None:
        self.settings = settings or Settings.from_env(**overrides)
        self.store = store if store is not None else open_store(self.settings.store_url)
        self._client = client
        if not isinstance(hold, Command) or hold.ends_call:
            raise ConfigurationError("hold must be a command that keeps the call up (wait, play)")
        if not isinstance(fallback, Command):
            raise ConfigurationError("fallback must be a command (e.g. play(...) or hangup())")
        self.hold = hold
        self.fallback = fallback
        self.bye = hangup()
        self.metrics = Metrics()
        self._flows: dict[str, FlowSpec] = {MAIN: FlowSpec(MAIN)}
        self._by_class: dict[type[Flow], str] = {}
        self._inbound: dict[str | None, str] = {}
        self._outbound: dict[str | None, str] = {}
        self._main_inbound: dict[str | None, Handler] = {}
        self._main_outbound: dict[str | None, Handler] = {}
        self._flows[MAIN].steps["start"] = self._main_start
        self._tasks: set[asyncio.Task[Any]] = set()
        self._binding = asyncio.Condition()
        self._starting = 0
        self._asgi: FastAPI | None = None
        self.dispatcher = Dispatcher(self)

    # ------------------------------------------------------------ function handlers

    @overload
    def on_inbound(self, fn: H, /) -> H: ...
    @overload
    def on_inbound(self, app_hash: str | None = None) -> Callable[[H], H]: ...
    def on_inbound(self, app_hash: Any = None) -> Any:
        """First callback of an inbound call (optionally only for one app hash)."""
        return self._start_decorator(app_hash, self._main_inbound, self._inbound, "on_inbound")

    @overload
    def on_outbound(self, fn: H, /) -> H: ...
    @overload
    def on_outbound(self, app_hash: str | None = None) -> Callable[[H], H]: ...
    def on_outbound(self, app_hash: Any = None) -> Any:
        """First callback of an outbound call started without a flow."""
        return self._start_decorator(app_hash, self._main_outbound, self._outbound, "on_outbound")

    def _start_decorator(
        self,
        arg: Any,
        handlers: dict[str | None, Handler],
        routes: dict[str | None, str],
        what: str,
    ) -> Any:
        def register(fn: H, app_hash: str | None = None) -> H:
            check_handler(fn, f"{what} handler")
            if app_hash in handlers:
                where = f"app {app_hash}" if app_hash else "all apps"
                raise RegistrationError(f"{what} is already registered for {where}")
            handlers[app_hash] = fn
            routes.setdefault(app_hash, MAIN)
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
        """A step: receives the result of a command sent with ``.then(step)``."""

        def register(fn: H, name: str | None = None) -> H:
            check_handler(fn, "step")
            step_name = name or fn.__name__
            if not step_name.isidentifier() or step_name in self._flows[MAIN].steps:
                raise RegistrationError(f"step {step_name!r} is already registered or invalid")
            self._flows[MAIN].steps[step_name] = fn
            return fn

        if callable(name):
            return register(name)
        if name is not None and not isinstance(name, str):
            raise RegistrationError("step takes a step name string or nothing")
        return lambda fn: register(fn, name)

    def _hook(self, name: str, fn: Any) -> Any:
        def register(fn: H) -> H:
            check_handler(fn, name)
            if name in self._flows[MAIN].hooks:
                raise RegistrationError(f"{name} is already registered")
            self._flows[MAIN].hooks[name] = fn
            return fn

        return register if fn is None else register(fn)

    @overload
    def on_hangup(self, fn: H, /) -> H: ...
    @overload
    def on_hangup(self) -> Callable[[H], H]: ...
    def on_hangup(self, fn: Any = None) -> Any:
        """Runs exactly once per call, whatever ended it (for flows without their own)."""
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

    async def _main_start(self, call: Any) -> Any:
        handlers = self._main_outbound if call.is_outbound else self._main_inbound
        handler = handlers.get(call.app_hash) or handlers.get(None)
        if handler is None:  # routed here as a last resort: nothing can answer
            raise LookupError(f"no {'outbound' if call.is_outbound else 'inbound'} handler")
        return await handler(call)

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
        spec = FlowSpec.from_flow(flow, name)
        if spec.name in self._flows:
            raise RegistrationError(f"a flow named {spec.name!r} is already registered")
        self._flows[spec.name] = spec
        self._by_class.setdefault(flow if isinstance(flow, type) else type(flow), spec.name)
        for routes, table in ((inbound, self._inbound), (outbound, self._outbound)):
            for app_hash in _route_keys(routes):
                current = table.get(app_hash)
                if current is not None and current != MAIN:
                    where = f"app {app_hash}" if app_hash else "all apps"
                    raise RegistrationError(f"flow {current!r} already answers {where}")
                table[app_hash] = spec.name
        return spec

    def flow(
        self, *, name: str | None = None, inbound: Routes = False, outbound: Routes = False
    ) -> Callable[[F], F]:
        """Class decorator form of :meth:`add_flow`."""

        def register(cls: F) -> F:
            self.add_flow(cls, name=name, inbound=inbound, outbound=outbound)
            return cls

        return register

    def has_flow(self, name: str) -> bool:
        return name in self._flows

    def flow_spec(self, name: str) -> FlowSpec:
        spec = self._flows.get(name)
        return spec if spec is not None else self._flows[MAIN]

    def hook(self, flow: FlowSpec, name: str) -> Handler | None:
        """A flow's hook, else the app-wide one registered with the decorators."""
        return flow.hooks.get(name) or self._flows[MAIN].hooks.get(name)

    async def route_first(self, req: RTRequest) -> tuple[str, dict[str, Any]]:
        """Flow and initial state for a call's first callback."""
        if req.request_hash is not None:
            binding = await self._binding_for(req.request_hash)
            if binding is not None:
                return str(binding["flow"]), dict(binding.get("data") or {})
            table = self._outbound
        else:
            table = self._inbound
        flow = table.get(req.app) or table.get(None) or MAIN
        return flow, {}

    async def _binding_for(self, request_hash: str) -> dict[str, Any] | None:
        key = rec.request_key(request_hash)
        loop = asyncio.get_running_loop()
        # Only a start_call still waiting for calls.realtime can bind this hash later:
        # on this worker (counted) or, with a shared store, on another one.
        may_wait = self.store.shared or self._starting > 0
        give_up = loop.time() + (self.settings.outbound_bind_wait if may_wait else 0.0)
        while True:
            binding = await self.store.get(key)
            if binding is not None or loop.time() >= give_up:
                if binding is not None:
                    await self.store.delete(key)
                return binding if isinstance(binding, dict) else None
            async with self._binding:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._binding.wait(), timeout=min(0.05, give_up - loop.time())
                    )

    # ------------------------------------------------------------ serving

    async def handle(self, request: RTRequest) -> bytes:
        """Answer one callback; the bytes are the JSON reply body."""
        return await self.dispatcher.handle(request)

    def asgi(self, path: str = "/callback") -> FastAPI:
        """A standalone FastAPI app serving the callback route, /healthz and /metrics."""
        from .web import create_asgi

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

    def track(self, task: asyncio.Task[Any]) -> None:
        """Keep a background task alive until it ends (and for graceful shutdown)."""
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def shutdown(self, timeout: float = 25.0) -> None:  # noqa: ASYNC109 - public API
        """Let callbacks and slow handlers in flight finish, then close the store."""
        try:
            await asyncio.wait_for(self.dispatcher.wait_idle(), timeout=timeout)
            if self._tasks:
                await asyncio.wait(set(self._tasks), timeout=timeout)
        except TimeoutError:
            app_log.warning("shutdown: callbacks still in flight after %.0fs", timeout)
        if self._client is not None:
            await self._client.aclose()
        await self.store.close()

    # ------------------------------------------------------------ the API side

    @property
    def client(self) -> CallrClient:
        """The JSON-RPC client (from ``CALLR_*`` variables unless one was given)."""
        if self._client is None:
            from .rpc import CallrClient

            self._client = CallrClient.from_env()
        return self._client

    @client.setter
    def client(self, client: CallrClient) -> None:
        self._client = client

    async def start_call(
        self,
        target: Target | str,
        *,
        flow: str | type[Flow] | None = None,
        data: dict[str, Any] | None = None,
        app_hash: str | None = None,
        cli: str = "BLOCKED",
        cdr_field: str = "",
    ) -> str:
        """Dial ``target`` through ``calls.realtime``; its first callback runs ``flow``.

        ``data`` becomes the call's initial ``call.state``. Returns the request hash.
        """
        from .rpc import RealtimeOptions

        app_hash = app_hash or self.settings.app_hash
        if not app_hash:
            raise ConfigurationError("start_call needs app_hash= or RTCONTROL_APP_HASH")
        flow_name = self._flow_name(flow, app_hash)
        options = RealtimeOptions(cli=cli, cdr_field=cdr_field)
        self._starting += 1
        try:
            request_hash: str = await self.client.realtime(app_hash, target, options)
            await self.store.set(
                rec.request_key(request_hash),
                {"flow": flow_name, "data": data or {}},
                ttl=self.settings.call_ttl,
            )
        finally:
            self._starting -= 1
        async with self._binding:
            self._binding.notify_all()
        return request_hash

    def _flow_name(self, flow: str | type[Flow] | None, app_hash: str) -> str:
        if flow is None:
            name = self._outbound.get(app_hash) or self._outbound.get(None)
            if name is None:
                raise ConfigurationError(
                    "start_call: no flow given and no outbound flow registered "
                    "(use flow=..., add_flow(..., outbound=True) or @app.on_outbound)"
                )
            return name
        if isinstance(flow, type):
            registered = self._by_class.get(flow)
            if registered is None:
                raise RegistrationError(f"flow {flow.__name__} is not registered: add_flow() it")
            return registered
        check_flow_name(flow)
        if flow not in self._flows:
            raise RegistrationError(f"no flow named {flow!r} is registered")
        return flow

    async def interrupt(
        self, callid: int, then: Command | str | Callable[..., Any] | None = None
    ) -> bool:
        """Stop the command a call is running and do ``then`` instead.

        ``then`` is a command, a step of the call's flow (name or function), or None
        to run the flow's ``on_break`` hook. Safe from any worker, handler, task or
        script. An interrupt asked before the previous one took effect replaces its
        action; only one ``calls.realtime_break`` is sent. Returns the platform's answer
        to the break (False when no command was running: the action still runs on the
        next callback of the call). Raises :class:`CallNotFound` or :class:`CallEnded`.
        """
        action = _action(then)
        s = self.settings
        lkey, ckey = rec.lock_key(callid), rec.call_key(callid)
        async with self.store.lock(lkey, lease=s.break_timeout + 5.0, wait=s.handler_budget + 2):
            raw = await self.store.get(ckey)
            if raw is None:
                raise CallNotFound(f"call {callid} is not known to the store", callid=callid)
            record = rec.CallRecord.from_json(raw)
            if record.ended:
                raise CallEnded(f"call {callid} has ended", callid=callid)
            step = action.get("step") or (then.step if isinstance(then, Command) else None)
            if step is not None:
                flow = self.flow_spec(record.flow)
                if flow.step(step) is None:
                    raise RegistrationError(f"flow {flow.name} has no step {step!r}")
            replaced = record.interrupt is not None and record.interrupt["target"] == record.current
            record.interrupt = {"target": record.current, "then": action}
            await self.store.set(ckey, record.to_json(), ttl=s.call_ttl)
            if replaced:
                app_log.info("callid=%s: interrupt replaced a pending one", callid)
                return True
            return await self.send_break(callid)

    async def send_break(self, callid: int) -> bool:
        self.metrics.breaks.inc()
        ok: bool = await self.client.realtime_break(callid, timeout=self.settings.break_timeout)
        return ok

    async def hangup(self, callid: int) -> bool:
        """End a call through ``calls.hangup``; its ``on_hangup`` runs on the last callback."""
        ok: bool = await self.client.hangup(callid)
        return ok


def _route_keys(routes: Routes) -> list[str | None]:
    if routes is True:
        return [None]
    if routes is False:
        return []
    if isinstance(routes, str):
        return [routes]
    return list(routes)


def _action(then: Command | str | Callable[..., Any] | None) -> dict[str, Any]:
    if then is None:
        return {"kind": "break"}
    if isinstance(then, Command):
        return {"kind": "command", "command": command_to_json(then)}
    name = then if isinstance(then, str) else getattr(then, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise RegistrationError("interrupt(then=...) takes a command, a step name or a step")
    return {"kind": "step", "step": name}
