"""Flows: an IVR as a class whose methods are its steps (see :mod:`rtcontrol.core.flow`)."""

from __future__ import annotations

from .core.flow import Flow, FlowSpec, Handler, check_handler

__all__ = ["Flow", "FlowSpec", "Handler", "check_handler"]
