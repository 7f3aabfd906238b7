"""Blocking code detection, at no cost per callback (fault kind K11).

A handler that calls ``time.sleep``, ``requests`` or a blocking driver keeps the
event loop busy: every other call on the worker waits, and no deadline timer can
fire. The watchdog sees it from the outside:

* the loop stamps a heartbeat every ``interval`` (one timer, whatever the traffic);
* a daemon thread checks the stamp; when the loop has been silent for more than
  ``threshold`` seconds, it looks at the loop thread's current stack
  (``sys._current_frames``) for a registered handler's frame, and queues a report
  on the loop: as soon as the handler lets go, the loop logs one warning per stall
  naming the handler, its call id and how long the loop was blocked (to within
  ``interval``), with the fix (``await call.run_sync(fn, ...)`` or a plain ``def``
  step).

Nothing wraps the handlers, so the hot path pays nothing.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
from collections.abc import Callable
from types import CodeType, FrameType
from typing import Any

__all__ = ["Watchdog"]

handler_log = logging.getLogger("rtcontrol.handler")


class Watchdog:
    def __init__(
        self,
        threshold: float,
        handlers: Callable[[], dict[CodeType, str]],
        *,
        interval: float | None = None,
    ) -> None:
        self.threshold = threshold
        self.interval = interval if interval is not None else min(threshold / 4, 0.05)
        self._handlers = handlers
        self._beat = time.monotonic()
        self._alive = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._timer: asyncio.TimerHandle | None = None
        #: Stall reports so far (for tests and metrics).
        self.reports = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start watching ``loop`` (call from the loop's thread)."""
        if self.running or self.threshold <= 0:
            return
        self._loop = loop
        self._loop_thread = threading.get_ident()
        self._stop.clear()
        self._beat = time.monotonic()
        self._timer = loop.call_later(self.interval, self._tick)
        self._thread = threading.Thread(target=self._watch, name="rtcontrol-watchdog", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._timer is not None:
            self._timer.cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=1.0)
        self._thread = None

    def _tick(self) -> None:
        self._beat = time.monotonic()
        if not self._stop.is_set() and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(self.interval, self._tick)

    def _watch(self) -> None:
        reported = 0.0  # the beat of the stall already reported
        while not self._stop.wait(self.interval):
            loop = self._loop
            if loop is None or loop.is_closed():
                return
            # the loop was last seen alive at its heartbeat or at the last report it ran
            beat = max(self._beat, self._alive)
            if beat == reported or time.monotonic() - beat < self.threshold:
                continue
            found = self._find_handler(sys._current_frames().get(self._loop_thread))
            if found is None:
                continue  # blocked, but not inside a handler: nothing to name
            reported = beat
            try:  # queued now, run by the loop as soon as the handler lets go of it
                loop.call_soon_threadsafe(self._report, beat, *found)
            except RuntimeError:  # the loop closed meanwhile
                return

    def _report(self, beat: float, where: str, callid: Any) -> None:
        self._alive = time.monotonic()
        self.reports += 1
        handler_log.warning(
            "callid=%s: handler %s blocked the event loop for %.2fs without awaiting; "
            "every call on this worker waited. Run blocking code with "
            "`await call.run_sync(fn, ...)` or make the step a plain `def` (it then "
            "runs in a worker thread)",
            callid,
            where,
            self._alive - beat,
        )

    def _find_handler(self, frame: FrameType | None) -> tuple[str, Any] | None:
        handlers = self._handlers()
        while frame is not None:
            where = handlers.get(frame.f_code)
            if where is not None:
                call = frame.f_locals.get("call")
                return where, getattr(call, "id", "?")
            frame = frame.f_back
        return None
