"""Cancellations the framework makes itself, told apart from a handler's own.

A handler or a straight-line flow may use ``asyncio.timeout`` or a task group: those
cancel the task running it, and the cancellation belongs to the code that asked for
it. The framework cancels the same tasks when nobody waits for them any longer (a
call ended behind a hold, a slow handler past ``RTCONTROL_BACKGROUND_TIMEOUT``, an
ending flow past its budget). :func:`abandon` marks those; :func:`abandoned` tells a
flow's driver which kind it caught: it hands an abandoned flow over to the
background, and throws any other cancellation into the flow, as a task would.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any

__all__ = ["abandon", "abandoned"]

_ABANDONED: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def abandon(task: asyncio.Future[Any]) -> bool:
    """Cancel ``task`` on the framework's behalf; returns what ``task.cancel()`` did."""
    if task.done():
        return False
    _ABANDONED.add(task)
    return task.cancel()


def abandoned() -> bool:
    """Was the running task cancelled by :func:`abandon`?"""
    task = asyncio.current_task()
    return task is not None and task in _ABANDONED
