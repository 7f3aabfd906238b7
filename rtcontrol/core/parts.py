"""What the engine's helpers (slow-handler delivery, hang-ups) use of the engine.

A Protocol, so ``delivery`` and ``hangups`` never import ``engine`` (no import
cycle, type-only imports included); the :class:`~rtcontrol.core.engine.Engine`
provides it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from ..commands import Command
from ..events import Disposition, EventBus
from ..protocol import RTRequest
from ..settings import Settings
from ..store import Store
from .call import CallServices
from .flow import FlowSpec
from .outbound import Bindings
from .ports import Clock, Reply
from .registry import Registry
from .transaction import CallLocks, Timing

__all__ = ["Decision", "EngineParts"]


@dataclass(slots=True)
class Decision:
    """What a callback gets, and what to do once the record is durable."""

    body: bytes
    disposition: Disposition
    step: str
    #: The record to write, encoded; None: write nothing (only unlock).
    text: str | None = None
    status: int = 200
    #: Run once the record is durable (a slow handler's delivery, on_hangup).
    after: Callable[[], None] | None = None
    #: Run when the record could not be written (the work ``after`` would have followed).
    cancel: Callable[[], None] | None = None
    #: Keys to delete once the record is durable (an outbound binding, now recorded).
    cleanup: tuple[str, ...] = ()


class EngineParts(Protocol):
    settings: Settings
    store: Store
    registry: Registry
    services: CallServices
    events: EventBus
    clock: Clock
    timing: Timing
    locks: CallLocks
    bindings: Bindings
    fallback: Command
    spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]

    def outgoing(
        self, command: Any, variables: Any, flow: FlowSpec | None
    ) -> tuple[Command, dict[str, Any]]: ...

    async def send_break(self, callid: int) -> bool: ...

    async def handle_callback(self, request: RTRequest) -> Reply: ...
