"""Flows, routes and hooks: what runs for which call.

The registry is filled at start-up by the ``App``'s decorators and read by the
engine. It never guesses: an unknown flow name is ``None``, not the main flow.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Iterable
from types import CodeType
from typing import Any

from ..errors import ConfigurationError, FlowError, RegistrationError
from ..protocol import RTRequest
from .call import Call, CallServices
from .flow import Flow, FlowSpec, Handler, check_flow_name, check_handler
from .straight import RUN_STEP, ScriptRunner, SessionCache

__all__ = ["MAIN", "Registry", "Routes"]

MAIN = "main"  # the flow that holds function-style handlers
Routes = bool | str | Iterable[str]


class Registry:
    """Flows by name, the inbound/outbound routing tables, and the app-wide hooks."""

    def __init__(self) -> None:
        self.flows: dict[str, FlowSpec] = {MAIN: FlowSpec(MAIN)}
        self.by_class: dict[type[Flow], str] = {}
        self.inbound: dict[str | None, str] = {}
        self.outbound: dict[str | None, str] = {}
        self.main_inbound: dict[str | None, Handler] = {}
        self.main_outbound: dict[str | None, Handler] = {}
        self.flows[MAIN].steps["start"] = self._main_start
        #: Straight-line flows by function (``start_call(flow=fn)``).
        self.by_function: dict[Any, str] = {}
        #: This worker's suspended straight-line coroutines (sized by the engine).
        self.sessions = SessionCache(10_000, 6 * 3600.0)
        self.journal_limit = 1000
        #: The App's services (interrupt, hang-up, ``state``), given by the engine.
        self.services: CallServices | None = None

    # ------------------------------------------------------------------ registration

    def add_start(self, fn: Any, app_hash: str | None, *, outbound: bool, what: str) -> None:
        handler = check_handler(fn, f"{what} handler")
        handlers = self.main_outbound if outbound else self.main_inbound
        if app_hash in handlers:
            where = f"app {app_hash}" if app_hash else "all apps"
            raise RegistrationError(f"{what} is already registered for {where}")
        handlers[app_hash] = handler
        (self.outbound if outbound else self.inbound).setdefault(app_hash, MAIN)

    def add_step(self, fn: Any, name: str | None) -> None:
        handler = check_handler(fn, "step")
        step_name = name or fn.__name__
        if not step_name.isidentifier() or step_name in self.flows[MAIN].steps:
            raise RegistrationError(f"step {step_name!r} is already registered or invalid")
        self.flows[MAIN].steps[step_name] = handler

    def add_hook(self, name: str, fn: Any) -> None:
        handler = check_handler(fn, name)
        if name in self.flows[MAIN].hooks:
            raise RegistrationError(f"{name} is already registered")
        self.flows[MAIN].hooks[name] = handler

    def add_flow(
        self, flow: Flow | type[Flow], name: str | None, inbound: Routes, outbound: Routes
    ) -> FlowSpec:
        spec = FlowSpec.from_flow(flow, name)
        if spec.name in self.flows:
            flow_cls = flow if isinstance(flow, type) else type(flow)
            raise RegistrationError(self._taken(spec.name, flow_cls, named=name is not None))
        self.flows[spec.name] = spec
        self.by_class.setdefault(flow if isinstance(flow, type) else type(flow), spec.name)
        self._route(spec.name, inbound, outbound)
        return spec

    def add_script(
        self,
        fn: Any,
        name: str | None,
        *,
        version: str,
        retired: bool,
        inbound: Routes,
        outbound: Routes,
    ) -> FlowSpec:
        """Register a straight-line flow (or one more version of it)."""
        qualname = getattr(fn, "__qualname__", repr(fn))
        if not (
            inspect.iscoroutinefunction(fn)
            or inspect.iscoroutinefunction(getattr(fn, "__func__", None))
        ):
            raise RegistrationError(
                f"straight-line flow {qualname} must be an `async def flow(call)` function"
            )
        params = [
            p
            for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if len(params) != 1:
            raise RegistrationError(
                f"straight-line flow {qualname} must take exactly one argument, the call: "
                f"`async def {getattr(fn, '__name__', 'flow')}(call)`"
            )
        if not isinstance(version, str) or not version or len(version) > 64:
            raise RegistrationError(
                f"flow version must be a 1-64 character string, not {version!r}"
            )
        flow_name: str = name or str(getattr(fn, "__name__", ""))
        check_flow_name(flow_name)
        spec = self.flows.get(flow_name)
        if spec is not None and spec.script is None:
            raise RegistrationError(
                f"a flow named {flow_name!r} is already registered ({self._owner(flow_name)}): "
                f"register {qualname} under another name with name=..."
            )
        if spec is None:
            runner = ScriptRunner(
                flow_name, self.sessions, lambda: self.journal_limit, lambda: self.services
            )
            spec = FlowSpec(flow_name, steps={RUN_STEP: runner}, script=runner)
        assert spec.script is not None
        spec.script.add(fn, version, retired=retired)
        self.flows[flow_name] = spec
        self.by_function[fn] = flow_name
        if retired and (inbound or outbound):
            raise RegistrationError("a retired flow version takes no new calls: no routes")
        self._route(spec.name, inbound, outbound)
        return spec

    def _owner(self, name: str) -> str:
        """What registered the flow ``name``, for messages."""
        if name == MAIN:
            return "the function-style handlers (@app.on_inbound, @app.step...)"
        for cls, flow_name in self.by_class.items():
            if flow_name == name:
                return f"class {cls.__qualname__}"
        for fn, flow_name in self.by_function.items():
            if flow_name == name:
                return f"straight-line flow {getattr(fn, '__qualname__', fn)}"
        return "another flow"  # pragma: no cover - every flow is registered by one of these

    def _taken(self, name: str, flow_cls: type[Flow], *, named: bool) -> str:
        """Why ``flow_cls`` cannot be registered under ``name``, and what to change."""
        owner = self._owner(name)
        head = f"a flow named {name!r} is already registered ({owner})"
        suggestion = _snake(flow_cls.__name__)
        if suggestion == name or suggestion in self.flows:
            suggestion = f"{suggestion}_2"
        cls_name = flow_cls.__qualname__
        if named:
            return f"{head}: pass another name to add_flow({flow_cls.__name__}, name=...)"
        if self.by_class.get(flow_cls) == name:
            return f"{head}: register each flow once, or the second under another name=..."
        if name == MAIN:
            return (
                f"{head}: 'main' is reserved for them; set `name = \"{suggestion}\"` on {cls_name}"
            )
        definer = next((c for c in flow_cls.__mro__ if c.__dict__.get("name")), None)
        if definer is not None and definer is not flow_cls:
            return (
                f"{head}: {cls_name} inherits `name = {name!r}` from {definer.__qualname__}, "
                "and each flow needs its own name (it is written in every command_id). Set "
                f'`name = "{suggestion}"` on {cls_name}, or pass '
                f"add_flow({flow_cls.__name__}, name=...)"
            )
        why = "sets that name" if definer is flow_cls else "is named after its class"
        return (
            f"{head}: {cls_name} {why}; set another `name = ...` on {cls_name}, or pass "
            f"add_flow({flow_cls.__name__}, name=...)"
        )

    def _route(self, name: str, inbound: Routes, outbound: Routes) -> None:
        for routes, table in ((inbound, self.inbound), (outbound, self.outbound)):
            for app_hash in route_keys(routes):
                current = table.get(app_hash)
                if current is not None and current not in (MAIN, name):
                    where = f"app {app_hash}" if app_hash else "all apps"
                    raise RegistrationError(f"flow {current!r} already answers {where}")
                table[app_hash] = name

    # ------------------------------------------------------------------ lookup

    def flow(self, name: str) -> FlowSpec | None:
        return self.flows.get(name)

    def hook(self, flow: FlowSpec, name: str) -> Handler | None:
        """A flow's hook, else the app-wide one registered with the decorators.

        ``on_result`` is never missing: without one, a handler that fails with a
        :class:`FlowError` saying that a command was sent without ``.then(step)``."""
        hook = flow.hooks.get(name) or self.flows[MAIN].hooks.get(name)
        if hook is None and name == "on_result":
            return _no_then
        return hook

    def first_flow(self, req: RTRequest) -> str:
        """The flow of a call's first callback, from the routing tables alone."""
        table = self.outbound if req.is_outbound else self.inbound
        return table.get(req.app) or table.get(None) or MAIN

    def outbound_flow(self, flow: str | type[Flow] | Any | None, app_hash: str) -> str:
        """The flow ``start_call(flow=...)`` names, checked now rather than at the first POST."""
        if flow is None:
            name = self.outbound.get(app_hash) or self.outbound.get(None)
            if name is None:
                raise ConfigurationError(
                    "start_call: no flow given and no outbound flow registered "
                    "(use flow=..., add_flow(..., outbound=True) or @app.on_outbound)"
                )
            return name
        if callable(flow) and not isinstance(flow, type | str):
            registered_fn = self.by_function.get(flow)
            if registered_fn is None:
                raise RegistrationError(
                    f"flow {getattr(flow, '__name__', flow)!r} is not registered: "
                    "register it with @app.inbound_call, @app.outbound_call or app.call_flow()"
                )
            return registered_fn
        if isinstance(flow, type):
            registered = self.by_class.get(flow)
            if registered is None:
                raise RegistrationError(f"flow {flow.__name__} is not registered: add_flow() it")
            return registered
        check_flow_name(flow)
        if flow not in self.flows:
            raise RegistrationError(f"no flow named {flow!r} is registered")
        return flow

    def handler_codes(self) -> dict[CodeType, str]:
        """The code object of every registered handler -> ``"flow.step"`` (for the
        watchdog, which finds handlers on a blocked stack)."""
        codes: dict[CodeType, str] = {}
        for flow in self.flows.values():
            for table in (flow.steps, flow.hooks):
                for name, handler in table.items():
                    code = _code_of(handler)
                    if code is not None:
                        codes.setdefault(code, f"{flow.name}.{name}")
            if flow.script is not None:
                for fn in flow.script.functions:
                    code = _code_of(fn)
                    if code is not None:
                        codes.setdefault(code, flow.name)
        for start in (*self.main_inbound.values(), *self.main_outbound.values()):
            code = _code_of(start)
            if code is not None:
                codes.setdefault(code, f"{MAIN}.{getattr(start, '__name__', 'start')}")
        return codes

    async def _main_start(self, call: Call) -> Any:
        handlers = self.main_outbound if call.is_outbound else self.main_inbound
        handler = handlers.get(call.app_hash) or handlers.get(None)
        if handler is None:  # routed here as a last resort: nothing can answer
            raise LookupError(f"no {'outbound' if call.is_outbound else 'inbound'} handler")
        return await handler(call)


async def _no_then(call: Call) -> Any:
    """The result of a command sent without ``.then(step)``, and no ``on_result``."""
    command = call.command or "command"
    example = f"{command}(...)" if call.command else "read(...)"
    raise FlowError(
        f"flow {call.flow}: the result of a {command} came back, but that {command} was sent "
        "without .then(step) and no on_result hook is registered. Send it to the step that "
        f"reads its result: `return {example}.then(self.next_step)` (`.then(next_step)` in "
        "function style); or register `@app.on_result` (`async def on_result(self, call)` "
        "in a Flow) to receive such results"
    )


def _snake(name: str) -> str:
    """``VipMenu`` -> ``vip_menu``."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower() or "flow"


def _code_of(handler: Any) -> CodeType | None:
    fn = getattr(handler, "__func__", handler)  # bound methods of Flow instances
    fn = getattr(fn, "__wrapped__", fn)  # plain `def` steps wrapped to run in a thread
    code = getattr(fn, "__code__", None)
    return code if isinstance(code, CodeType) else None


def route_keys(routes: Routes) -> list[str | None]:
    if routes is True:
        return [None]
    if routes is False:
        return []
    if isinstance(routes, str):
        return [routes]
    return list(routes)


def step_name(then: Any) -> str:
    """The step name of ``then`` (a name or a step function), or RegistrationError."""
    name = then if isinstance(then, str) else getattr(then, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise RegistrationError("interrupt(then=...) takes a command, a step name or a step")
    return name


StepLike = str | Callable[..., Any]
