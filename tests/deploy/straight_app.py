"""``apps.menu_straight`` for the straight-line deployment tests, counting its flow's starts.

Served by real uvicorn processes: ``uvicorn straight_app:app --app-dir tests/deploy``
(settings from ``RTCONTROL_*`` variables, like ``apps.menu_straight``). The app is the
one ``apps.menu_straight.build()`` makes, with its flow function wrapped to count how
many times each call's coroutine was started in this process: once for a call this
worker runs from its first callback, once more for every replay from the journal.
``GET /starts`` answers ``{"pid": ..., "starts": {"<callid>": n}}``; every other
request goes to the rtcontrol app (lifespan included).
"""

from __future__ import annotations

import functools
import json
import os
from collections import Counter
from typing import Any

import apps.menu_straight as menu_straight
from rtcontrol import LiveCall

STARTS: Counter[int] = Counter()
_menu = menu_straight.menu


@functools.wraps(_menu)
async def counted(call: LiveCall) -> None:
    STARTS[call.id] += 1
    await _menu(call)


menu_straight.menu = counted  # what build() registers (the flow keeps its name, "menu")
try:
    rtc = menu_straight.build()
finally:
    menu_straight.menu = _menu


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "http" and scope["path"] == "/starts":
        body = json.dumps({"pid": os.getpid(), "starts": {str(k): v for k, v in STARTS.items()}})
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
        return
    await rtc(scope, receive, send)
