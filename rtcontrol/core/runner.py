"""Running one handler against the deadline.

* :func:`start` runs the handler in its own task, inside a :class:`Scope` that
  says which call it serves (so ``interrupt()`` on its own call needs no lock);
* :func:`finished_by` waits for it until the deadline without cancelling it.

Blocking code in a handler is seen by :mod:`rtcontrol.core.watchdog`, at no cost here.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from dataclasses import dataclass
from typing import Any

from .call import Call
from .flow import Handler
from .records import Action

__all__ = ["Scope", "current_scope", "finished_by", "start"]

handler_log = logging.getLogger("rtcontrol.handler")


@dataclass(slots=True)
class Scope:
    """The call a handler task serves. ``action``: an interrupt the handler asked for
    on its own call, which replaces its reply."""

    callid: int
    finished: bool = False
    action: Action | None = None
    flow: str = ""


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "rtcontrol_scope", default=None
)


def current_scope() -> Scope | None:
    """The scope of the handler running in this task, if it is still running."""
    scope = _scope.get()
    return scope if scope is not None and not scope.finished else None


def start(
    handler: Handler, call: Call, where: str, blocking_warn: float = 0.0
) -> tuple[asyncio.Future[Any], Scope]:
    """Start ``handler(call)`` in a task of its own (``asyncio.timeout`` and task groups
    inside a handler then act on the handler, never on the callback). ``where`` and
    ``blocking_warn`` are kept for the signature; blocking is seen by the watchdog."""
    scope = Scope(call.id)
    task = asyncio.ensure_future(_run(handler, call, scope))
    return task, scope


async def _run(handler: Handler, call: Call, scope: Scope) -> Any:
    _scope.set(scope)
    try:
        return await handler(call)
    finally:
        scope.finished = True


async def finished_by(task: asyncio.Future[Any], deadline: float) -> bool:
    """Wait for ``task`` until ``deadline`` (loop time) without cancelling it.

    One future and one timer: cheaper than ``wait_for(shield(task))`` on every callback.
    """
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    if remaining <= 0:
        return False
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(remaining, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()
