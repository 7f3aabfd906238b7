"""Cancellations the framework makes itself, and the tasks it never cancels.

A handler or a straight-line flow may use ``asyncio.timeout`` or a task group: those
cancel the task running it, and the cancellation belongs to the code that asked for
it. The framework gives up on the same tasks when nobody waits for them any longer
(a call ended behind a hold, a slow handler past ``RTCONTROL_BACKGROUND_TIMEOUT``, a
hold that could not be recorded). :func:`abandon` is how it does so:

* a step handler's task is cancelled;
* a task driving a straight-line flow (:func:`drives_flow`) is left running: the flow
  goes on in the very task its ``asyncio.timeout`` and task groups are bound to, so
  what it started (a ``once()``) completes, and its next await meets the end of the
  call (``CallHungUp``) or a dropped copy's fate. Every cancellation such a task sees
  is the flow's own, and is thrown into the flow, as a task would.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

__all__ = ["abandon", "drives_flow"]

_FLOWS: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def drives_flow() -> None:
    """The running task drives a straight-line flow: the framework never cancels it."""
    task = asyncio.current_task()
    if task is not None:
        _FLOWS.add(task)


def abandon(task: asyncio.Future[Any]) -> bool:
    """Stop waiting for ``task``: cancel it, unless it drives a straight-line flow
    (whose outcome is then retrieved, never logged as lost). Returns whether it was
    cancelled."""
    if task.done():
        return False
    if task in _FLOWS:
        task.add_done_callback(_retrieve)
        return False
    return task.cancel()


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # nobody waits for it: its error was logged where it arose
