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
from collections.abc import Coroutine, Generator
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
) -> tuple[asyncio.Future[Any], Scope]:
    """Start ``handler(call)``; ``where`` names it in logs.

    The handler's first slice runs at once (as an eager task would): most handlers
    return their command without awaiting anything, and then no task is created at
    all (the result comes back as a done future). A handler that awaits goes on in
    a task of its own, in the same context.
    """
    scope = Scope(call.id)
    context = contextvars.copy_context()
    context.run(_scope.set, scope)
    loop = asyncio.get_running_loop()
    limit = 0.0 if getattr(handler, "__rtcontrol_sync__", False) else blocking_warn
    coro = handler(call)
    if not isinstance(coro, Coroutine):  # pragma: no cover - check_handler makes coroutines
        raise TypeError(f"handler {where} did not return a coroutine")
    began = time.perf_counter()
    try:
        yielded = context.run(coro.send, None)
    except StopIteration as stop:
        scope.finished = True
        _check_slice(time.perf_counter() - began, limit, call.id, where)
        done: asyncio.Future[Any] = loop.create_future()
        done.set_result(stop.value)
        return done, scope
    except Exception as exc:
        scope.finished = True
        _check_slice(time.perf_counter() - began, limit, call.id, where)
        failed: asyncio.Future[Any] = loop.create_future()
        failed.set_exception(exc)
        return failed, scope
    first = time.perf_counter() - began
    watched = _Watched(coro, call.id, where, limit, yielded, first)
    task = loop.create_task(_continue(watched, scope), context=context)
    return task, scope


async def _continue(watched: _Watched, scope: Scope) -> Any:
    try:
        return await watched
    finally:
        scope.finished = True


def _check_slice(seconds: float, limit: float, callid: int, where: str) -> None:
    if limit > 0 and seconds > limit:
        handler_log.warning(
            "callid=%s: handler %s blocked the event loop for %.2fs without awaiting; "
            "every call on this worker waited. Run blocking code with "
            "`await call.run_sync(fn, ...)` or make the step a plain `def` (it then "
            "runs in a worker thread)",
            callid,
            where,
            seconds,
        )


class _Watched:
    """Goes on with a coroutine whose first slice already ran (it yielded ``first``),
    timing each slice it runs between two suspensions."""

    __slots__ = ("_callid", "_coro", "_first", "_limit", "_where", "_worst")

    def __init__(
        self,
        coro: Coroutine[Any, Any, Any],
        callid: int,
        where: str,
        limit: float,
        first: Any,
        worst: float,
    ) -> None:
        self._coro = coro
        self._callid = callid
        self._where = where
        self._limit = limit
        self._first = first
        self._worst = worst

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self._coro
        worst = self._worst
        clock = time.perf_counter
        send: Any = None
        throw: BaseException | None = None
        try:
            try:
                send = yield self._first
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:
                throw = exc
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
            _check_slice(worst, self._limit, self._callid, self._where)


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
