from __future__ import annotations

from typing import Any

from ..kit import (  # noqa: F401
    FakeControl,
    Recorder,
    SpyStore,
    body,
    call_key,
    first,
    is_fallback,
    logged,
    report,
    step_of,
    within,
)

CALL = 77_001


def media(reply: Any) -> str:
    return str(body(reply)["params"].get("media_id", "")).rsplit("|", 1)[-1]


def command(reply: Any) -> str:
    return str(body(reply)["command"])
