"""Prometheus metrics of one App: callbacks by outcome, handler latency, breaks, calls.

Each App has its own registry, so several apps (or tests) in one process never
collide. The web adapter serves it at ``/metrics``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from .events import (
    CallbackAnswered,
    CallInterrupted,
    CallStarted,
    CallTerminated,
    CommandDelivered,
    Disposition,
    Event,
    HangupHandled,
)

__all__ = ["OUTCOMES", "Metrics"]

#: Every value of the ``outcome`` label, so dashboards see zeros rather than gaps.
OUTCOMES = tuple(d.value for d in Disposition)

#: Buckets around the platform's 5 s deadline.
_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.callbacks = Counter(
            "rtcontrol_callbacks",
            "Callbacks answered, by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.handler_seconds = Histogram(
            "rtcontrol_handler_seconds",
            "Time from callback received to reply ready (the platform allows 5 s).",
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.breaks = Counter(
            "rtcontrol_breaks",
            "calls.realtime_break requests sent (interrupts and slow-handler deliveries).",
            registry=self.registry,
        )
        self.handler_errors = Counter(
            "rtcontrol_handler_errors",
            "Handlers that raised or returned something that is not a command.",
            registry=self.registry,
        )
        self.active_calls = Gauge(
            "rtcontrol_active_calls",
            "Calls started minus calls ended, as seen by this process (sum over workers).",
            registry=self.registry,
        )
        self.hangup_errors = Counter(
            "rtcontrol_hangup_errors",
            "on_hangup runs that raised or ran out of their budget.",
            registry=self.registry,
        )
        self._outcome = {o: self.callbacks.labels(o) for o in OUTCOMES}

    def callback(self, outcome: str, seconds: float) -> None:
        self._outcome[outcome].inc()
        self.handler_seconds.observe(seconds)

    def __call__(self, event: Event) -> None:
        """An event subscriber: the engine's events drive every metric."""
        if isinstance(event, CallbackAnswered):
            self.callback(event.disposition, event.seconds)
            if event.disposition is Disposition.FALLBACK:
                self.handler_errors.inc()
        elif isinstance(event, CallStarted):
            self.active_calls.inc()
        elif isinstance(event, CallTerminated):
            if event.answered:
                self.active_calls.dec()
        elif isinstance(event, CommandDelivered):
            if event.via_break:
                self.breaks.inc()
        elif isinstance(event, CallInterrupted):
            self.breaks.inc()
        elif isinstance(event, HangupHandled) and not event.ok:
            self.hangup_errors.inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
