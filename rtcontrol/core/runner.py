"""Running one handler against the deadline, watching for blocking code.

* :func:`start` runs the handler in its own task, inside a :class:`Scope` that
  says which call it serves (so ``interrupt()`` on its own call needs no lock);
* :func:`finished_by` waits for it until the deadline without cancelling it;
* a handler that keeps the event loop busy for more than ``blocking_warn``
  seconds between two awaits is logged once per run, with how long it blocked
  (the fix: ``await call.run_sync(fn, ...)``, or a plain ``def`` step, which runs
  in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Coroutine, Generator
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


_scope: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "rtcontrol_scope", default=None
)


def current_scope() -> Scope | None:
    """The scope of the handler running in this task, if it is still running."""
    scope = _scope.get()
    return scope if scope is not None and not scope.finished else None


def start(
    handler: Handler, call: Call, where: str, blocking_warn: float
) -> tuple[asyncio.Task[Any], Scope]:
    """Start ``handler(call)`` in a task of its own; ``where`` names it in logs."""
    scope = Scope(call.id)
    task = asyncio.ensure_future(_run(handler, call, scope, where, blocking_warn))
    return task, scope


async def _run(handler: Handler, call: Call, scope: Scope, where: str, blocking_warn: float) -> Any:
    _scope.set(scope)
    try:
        if blocking_warn > 0 and not getattr(handler, "__rtcontrol_sync__", False):
            return await _Watched(handler(call), call.id, where, blocking_warn)
        return await handler(call)
    finally:
        scope.finished = True


class _Watched:
    """Awaits a coroutine, timing each slice it runs between two suspensions."""

    __slots__ = ("_callid", "_coro", "_limit", "_where")

    def __init__(self, coro: Awaitable[Any], callid: int, where: str, limit: float) -> None:
        self._coro = coro
        self._callid = callid
        self._where = where
        self._limit = limit

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        if not isinstance(coro, Coroutine):  # an awaitable object: nothing to time
            return (yield from coro.__await__())
        send: Any = None
        throw: BaseException | None = None
        worst = 0.0
        clock = time.perf_counter
        try:
            while True:
                began = clock()
                try:
                    future = coro.send(send) if throw is None else coro.throw(throw)
                except StopIteration as stop:
                    worst = max(worst, clock() - began)
                    return stop.value
                worst = max(worst, clock() - began)
                send, throw = None, None
                try:
                    send = yield future
                except GeneratorExit:
                    coro.close()
                    raise
                except BaseException as exc:
                    throw = exc
        finally:
            if worst > self._limit:
                handler_log.warning(
                    "callid=%s: handler %s blocked the event loop for %.2fs without awaiting; "
                    "every call on this worker waited. Run blocking code with "
                    "`await call.run_sync(fn, ...)` or make the step a plain `def` (it then "
                    "runs in a worker thread)",
                    self._callid,
                    self._where,
                    worst,
                )


async def finished_by(task: asyncio.Task[Any], deadline: float) -> bool:
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
