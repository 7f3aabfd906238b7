"""Flows: an IVR as a class whose methods are its steps.

A step is ``async def name(self, call) -> Command``. A plain ``def name(self, call)``
step is allowed too: it runs in a worker thread (as FastAPI runs sync endpoints), so
blocking code in it never stalls other calls. The first callback of a call
runs ``start``; a command returned as ``read(...).then(self.choice)`` sends its
result to ``choice``. Optional hooks: ``on_hangup`` (run once per call, whatever
ended it), ``on_break`` (a command was interrupted without a recorded action) and
``on_result`` (results of commands sent without ``.then``).

Steps are looked up by name on the instance, so inheritance works as usual: a
subclass overrides one step and keeps the others.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from ..commands import Command
from ..errors import RegistrationError
from ..prompts import ASK_STEP, ask_step
from .call import Call

if TYPE_CHECKING:
    from .straight import ScriptRunner

__all__ = [
    "AnyHandler",
    "Flow",
    "FlowSpec",
    "Handler",
    "check_flow_name",
    "check_handler",
    "in_thread",
]

Handler = Callable[[Call], Awaitable[Any]]
#: What users may register: ``async def step(call)`` or a plain ``def step(call)``.
AnyHandler = Callable[[Call], Any]

START = "start"
HOOKS = ("on_hangup", "on_break", "on_result")
_FLOW_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")


class Flow:
    """Base class of class-based IVRs. See the module docstring."""

    #: Name used in ``command_id`` and routing; defaults to the class name.
    name: ClassVar[str] = ""

    async def start(self, call: Call) -> Command:
        """First callback of a call routed to this flow. Override it."""
        raise NotImplementedError(
            f"{type(self).__name__} must define `async def start(self, call)`"
        )


def check_handler(fn: Any, what: str, *, bound: bool = False) -> Handler:
    """Refuse at registration a handler that could not run, saying what to change.

    Returns the handler as a coroutine function: a plain ``def`` is wrapped to run
    in a worker thread, so a blocking step never stalls the event loop.
    """
    name = getattr(fn, "__qualname__", repr(fn))
    if not callable(fn) or isinstance(fn, type):
        raise RegistrationError(f"{what} {name} is not callable; pass an `async def` function")
    shape = "(self, call)" if bound else "(call)"
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise RegistrationError(
            f"{what} {name} is a generator: write `async def {_short(fn)}{shape}` that "
            "returns a command"
        )
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover - builtins without signatures
        raise RegistrationError(f"{what} {name}: cannot read its signature") from None
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    required_kw = [p for p in params if p.kind is p.KEYWORD_ONLY and p.default is p.empty]
    if len(positional) != 1 or required_kw:
        raise RegistrationError(
            f"{what} {name} must take exactly one argument, the call: "
            f"`async def {_short(fn)}{shape}`"
        )
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        type(fn).__call__  # an object with `async def __call__`
    ):
        return fn  # type: ignore[no-any-return]
    return in_thread(fn)


def in_thread(fn: Callable[[Call], Any]) -> Handler:
    """A coroutine function running the plain function ``fn`` in a worker thread."""

    @functools.wraps(fn)
    async def run(call: Call) -> Any:
        return await asyncio.to_thread(fn, call)

    run.__rtcontrol_sync__ = True  # type: ignore[attr-defined]
    return run


def _short(fn: Any) -> str:
    return str(getattr(fn, "__name__", "handler"))


@dataclass
class FlowSpec:
    """A flow ready to dispatch: its steps and hooks by name, checked once."""

    name: str
    steps: dict[str, Handler] = field(default_factory=dict)
    hooks: dict[str, Handler] = field(default_factory=dict)
    #: A straight-line flow's runner (its one step, ``run``); None for step flows.
    script: ScriptRunner | None = None
    #: The built-in ``@ask`` step of step flows (:func:`rtcontrol.prompts.ask`), made once.
    _ask: Handler | None = field(default=None, init=False, repr=False, compare=False)

    def step(self, name: str) -> Handler | None:
        """The step ``name``, or None. Step flows also have the built-in ``@ask`` (the
        tries of :func:`rtcontrol.prompts.ask`), which is not in :attr:`steps`."""
        handler = self.steps.get(name)
        if handler is None and name == ASK_STEP and self.script is None:
            if self._ask is None:
                self._ask = ask_step(self.name, self.steps.get)
            handler = self._ask
        return handler

    @classmethod
    def from_flow(cls, flow: Flow | type[Flow], name: str | None = None) -> FlowSpec:
        instance = flow() if isinstance(flow, type) else flow
        if not isinstance(instance, Flow):
            raise RegistrationError(f"{flow!r} is not a Flow subclass or instance")
        flow_cls = type(instance)
        flow_name = name or flow_cls.name or flow_cls.__name__
        check_flow_name(flow_name)
        if flow_cls.start is Flow.start:
            raise RegistrationError(
                f"flow {flow_name} has no start step: add `async def start(self, call)`"
            )
        spec = cls(flow_name)
        for attr in dir(flow_cls):
            if attr.startswith("_") or attr == "name":
                continue
            raw = inspect.getattr_static(flow_cls, attr)
            if isinstance(raw, staticmethod | classmethod | property):
                continue
            if not inspect.isfunction(raw):
                continue
            what = "hook" if attr in HOOKS else "step"  # the name shown is Class.method
            if not inspect.iscoroutinefunction(raw) and not _takes_call(raw):
                if attr == START or attr in HOOKS:
                    check_handler(raw, what, bound=True)
                continue  # a plain helper method (not shaped like a step)
            handler = check_handler(getattr(instance, attr), what, bound=True)
            target = spec.hooks if attr in HOOKS else spec.steps
            target[attr] = handler
        return spec


def _takes_call(fn: Any) -> bool:
    """A plain method shaped like a step: ``def name(self, call)`` (the parameter must be
    named ``call``; any other plain method is a helper)."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # pragma: no cover
        return False
    required = [p for p in params if p.default is p.empty and p.kind is not p.VAR_KEYWORD]
    return (
        len(required) == 2
        and required[1].name == "call"
        and all(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) for p in required)
    )


def check_flow_name(name: str) -> None:
    if not isinstance(name, str) or not _FLOW_NAME.fullmatch(name) or ":" in name:
        raise RegistrationError(
            f"flow name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter"
        )
