"""``Call``: what a handler sees of the call it is answering (see :mod:`rtcontrol.core.call`)."""

from __future__ import annotations

from .core.call import Call

__all__ = ["Call"]
