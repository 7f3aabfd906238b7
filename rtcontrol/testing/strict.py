"""Strict mode: a handler that fails fails the test, with the handler's traceback.

In production a handler that raises, returns something that is not a command, or
leaves a step nobody can run gets the caller the fallback (an apology, then a
hang-up) and one ERROR line on the ``rtcontrol.handler`` logger. In a test that is
almost always a bug, so a strict :class:`~rtcontrol.testing.EmulatedPlatform` (the
``callr_platform`` fixture's default) raises :class:`HandlerFailed` instead:

* at the end of the call, from ``platform.call(...)``, ``platform.start_call(...)``
  or ``handle.ended()`` (and from ``handle.wait_for(...)`` when the call ended early);
* when the platform closes, for what was not reported yet (an ``on_hangup`` that
  failed after the call's last callback, a call started with ``app.start_call``).

Watched: every ERROR record of ``rtcontrol.handler`` (handler exceptions with their
traceback; straight-line flow errors such as ``DeterminismError``, one line) and every
callback answered with the fallback (``Disposition.FALLBACK``), for the calls of this
platform's emulator. A test that means to reach the fallback says so::

    from rtcontrol import App, read, tts
    from rtcontrol.emulator import Callee, Press
    from rtcontrol.testing import EmulatedPlatform

    app = App()

    @app.on_inbound
    async def welcome(call):
        return read(tts("Your PIN?"), max_digits=4).then(check)

    @app.step
    async def check(call):
        raise ValueError("no PIN database")

    async def test_the_caller_hears_the_apology() -> None:
        async with EmulatedPlatform(app, strict=True) as platform:
            with platform.expect_fallback() as failures:
                t = await platform.call(Callee(actions=[Press("1234")]))
        assert "ValueError: no PIN database" in failures[0].traceback
        assert failures[0].step == "check"
        assert t.said[-1].startswith("We are sorry")
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..emulator import Transcript
from ..events import CallbackAnswered, Disposition, Event

__all__ = ["HandlerFailed", "HandlerFailure"]

#: The logger whose ERROR records are handler failures (see :mod:`rtcontrol.logs`).
HANDLER_LOGGER = "rtcontrol.handler"
_CALLID = re.compile(r"callid=(\d+):")


@dataclass
class HandlerFailure:
    """One handler failure on one call.

    ``message``: the ``rtcontrol.handler`` log line (``"callid=421889: handler
    main.check raised; answering with the fallback"``), or ``"answered with the
    fallback"`` when the fallback came without one. ``traceback``: the handler's
    formatted traceback, ``""`` when the line has none (flow errors such as
    ``DeterminismError`` and non-commands say it all). ``step``: the step whose
    callback got the fallback (``None`` when no fallback was sent, e.g. ``on_hangup``).
    """

    callid: int
    message: str
    traceback: str = ""
    step: str | None = None

    def __str__(self) -> str:
        where = f"call {self.callid}" + (f", step {self.step!r}" if self.step else "")
        text = f"{where}: {self.message}"
        return f"{text}\n{self.traceback.rstrip()}" if self.traceback else text


class HandlerFailed(AssertionError):
    """A handler failed during a strict test (an ``AssertionError``, so pytest shows it
    as a test failure). ``failures``: what failed, in order; ``transcript``: the call's
    transcript when one call is concerned, else ``None``."""

    def __init__(self, failures: list[HandlerFailure], transcript: Transcript | None = None):
        self.failures = list(failures)
        self.transcript = transcript
        calls = sorted({f.callid for f in failures})
        head = (
            f"a handler failed on call {calls[0]} (strict mode: the caller heard the fallback)"
            if len(calls) == 1
            else f"handlers failed on calls {', '.join(map(str, calls))} (strict mode)"
        )
        parts = [head, *(str(f) for f in failures)]
        if transcript is not None:
            parts.append(transcript.render())
        parts.append(
            "A test that means to reach the fallback: `with platform.expect_fallback():` "
            "around the call, or EmulatedPlatform(..., strict=False)."
        )
        super().__init__("\n\n".join(parts))


@dataclass
class Expectation:
    """The failures an ``expect_fallback()`` block absorbed (a list, filled as they come)."""

    failures: list[HandlerFailure] = field(default_factory=list)


class Watch(logging.Handler):
    """Collects the handler failures of the calls ``owns(callid)`` accepts."""

    def __init__(self, owns: Callable[[int], bool]) -> None:
        super().__init__(logging.ERROR)
        self._owns = owns
        self.pending: list[HandlerFailure] = []
        self.claims: dict[int, Expectation] = {}
        self.active: Expectation | None = None

    # --- sources ---------------------------------------------------------------------------
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        found = _CALLID.match(message)
        if found is None or not self._owns(int(found.group(1))):
            return
        trace = ""
        if record.exc_info:
            trace = logging.Formatter().formatException(record.exc_info)
        self._add(HandlerFailure(int(found.group(1)), message, trace))

    def on_event(self, event: Event) -> None:
        if not isinstance(event, CallbackAnswered) or event.disposition != Disposition.FALLBACK:
            return
        if not self._owns(event.callid):
            return
        for failure in reversed(self._all(event.callid)):
            if failure.step is None:  # the line that explains this fallback
                failure.step = event.step
                return
        self._add(HandlerFailure(event.callid, "answered with the fallback", step=event.step))

    # --- bookkeeping -------------------------------------------------------------------------
    def _all(self, callid: int) -> list[HandlerFailure]:
        """Every failure recorded for ``callid``, expected or not."""
        expectation = self.claims.get(callid) or self.active
        lists = [self.pending] + ([expectation.failures] if expectation else [])
        return [f for failures in lists for f in failures if f.callid == callid]

    def _add(self, failure: HandlerFailure) -> None:
        expectation = self.claims.get(failure.callid) or self.active
        (expectation.failures if expectation else self.pending).append(failure)

    def started(self, callid: int) -> None:
        """A call started: inside an ``expect_fallback()`` block, its failures are expected."""
        if self.active is not None:
            self.claims[callid] = self.active

    def take(self, callid: int | None = None) -> list[HandlerFailure]:
        """Remove and return the unexpected failures (of one call, or all)."""
        taken = [f for f in self.pending if callid is None or f.callid == callid]
        self.pending = [f for f in self.pending if not (callid is None or f.callid == callid)]
        return taken

    @contextlib.contextmanager
    def expect(self) -> Iterator[list[HandlerFailure]]:
        if self.active is not None:
            raise RuntimeError("expect_fallback() blocks do not nest")
        expectation = self.active = Expectation()
        try:
            yield expectation.failures
        finally:
            self.active = None
        if not expectation.failures:
            raise AssertionError(
                "expected a handler failure or the fallback inside expect_fallback(), "
                "but every callback was answered normally"
            )
