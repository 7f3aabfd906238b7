"""Flows: an IVR as a class whose async methods are its steps.

A step is ``async def name(self, call) -> Command``. The first callback of a call
runs ``start``; a command returned as ``read(...).then(self.choice)`` sends its
result to ``choice``. Optional hooks: ``on_hangup`` (run once per call, whatever
ended it), ``on_break`` (a command was interrupted without a recorded action) and
``on_result`` (results of commands sent without ``.then``).

Steps are looked up by name on the instance, so inheritance works as usual: a
subclass overrides one step and keeps the others.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .commands import Command
from .context import Call
from .errors import RegistrationError

__all__ = ["Flow", "FlowSpec", "Handler", "check_handler"]

Handler = Callable[[Call], Awaitable[Any]]

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
    """Refuse at registration a handler that could not run, saying what to change."""
    name = getattr(fn, "__qualname__", repr(fn))
    if not callable(fn):
        raise RegistrationError(f"{what} {name} is not callable; pass an `async def` function")
    shape = "(self, call)" if bound else "(call)"
    if not inspect.iscoroutinefunction(fn):
        raise RegistrationError(
            f"{what} {name} must be a coroutine function: write `async def {_short(fn)}{shape}`"
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
    return fn  # type: ignore[no-any-return]


def _short(fn: Any) -> str:
    return str(getattr(fn, "__name__", "handler"))


@dataclass
class FlowSpec:
    """A flow ready to dispatch: its steps and hooks by name, checked once."""

    name: str
    steps: dict[str, Handler] = field(default_factory=dict)
    hooks: dict[str, Handler] = field(default_factory=dict)

    def step(self, name: str) -> Handler | None:
        return self.steps.get(name)

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
            if not inspect.iscoroutinefunction(raw):
                if attr == START or attr in HOOKS:
                    check_handler(raw, "hook" if attr in HOOKS else "step", bound=True)
                continue  # a plain helper method, not a step
            what = "hook" if attr in HOOKS else "step"  # the name shown is Class.method
            check_handler(getattr(instance, attr), what, bound=True)
            target = spec.hooks if attr in HOOKS else spec.steps
            target[attr] = getattr(instance, attr)
        return spec


def check_flow_name(name: str) -> None:
    if not isinstance(name, str) or not _FLOW_NAME.fullmatch(name) or ":" in name:
        raise RegistrationError(
            f"flow name {name!r} must be 1-64 letters, digits, '_', '.' or '-', "
            "starting with a letter"
        )
