"""Test kit: your App and the emulator wired together, in a few lines.

::

    from rtcontrol import App, hangup, play, read, tts
    from rtcontrol.emulator import Callee, Press
    from rtcontrol.testing import EmulatedPlatform

    app = App()

    @app.on_inbound
    async def welcome(call):
        return read(tts("Press 1 for opening hours"), max_digits=1).then(choice)

    @app.step
    async def choice(call):
        if call.digits == "1":
            return play(tts("We are open from 9 to 5.")).then(goodbye)
        return hangup()

    @app.step
    async def goodbye(call):
        return hangup()

    async def test_opening_hours() -> None:
        async with EmulatedPlatform(app, strict=True) as platform:
            t = await platform.call(Callee(actions=[Press("1")]))
        assert t.executed == ["read", "play", "hangup"]
        assert t.said == ["Press 1 for opening hours", "We are open from 9 to 5."]
        assert t.hangup_count == 1

What is here:

* :class:`EmulatedPlatform` (:mod:`.platform`): runs in-process by default
  (``over="asgi"``), or over real HTTP on loopback (``over="http"``: uvicorn serves the
  app and the emulator's JSON-RPC endpoint, exactly as in production). The app's
  JSON-RPC client is pointed at the emulator, so ``start_call``, ``interrupt`` and
  ``hangup`` work. Every call ends by ``MAX_CALL_SECONDS`` (600 virtual seconds).
* :class:`CallResult` (:mod:`.results`): the transcript plus ``said`` (TTS texts heard)
  and ``ran`` (the commands run, as objects).
* :class:`CallHandle` (:mod:`.handle`): a call in progress, for tests that act during it.
* strict mode (:mod:`.strict`): a handler failure fails the test with its traceback.
* the pytest plugin (:mod:`.plugin`, loaded automatically): the ``callr_platform``
  fixture (strict by default), and ``async def`` tests that use it run without any
  asyncio plugin.
"""

from __future__ import annotations

import secrets
from typing import Any

from .handle import CallHandle
from .platform import CALLBACK_PATH, MAX_CALL_SECONDS, EmulatedPlatform
from .results import CallResult, ran, said
from .strict import HandlerFailed, HandlerFailure

__all__ = [
    "CALLBACK_PATH",
    "MAX_CALL_SECONDS",
    "CallHandle",
    "CallResult",
    "EmulatedPlatform",
    "HandlerFailed",
    "HandlerFailure",
    "callback_body",
    "ran",
    "random_credentials",
    "said",
]


def random_credentials() -> dict[str, str]:
    """Callback credentials for a throw-away app (tests, demos):
    ``{"callback_login": "callr", "callback_password": <24 random characters>}``."""
    return {"callback_login": "callr", "callback_password": secrets.token_urlsafe(18)}


def callback_body(**fields: Any) -> dict[str, Any]:
    """All 14 fields of an RT.Request as the platform sends them: by default the first
    callback of an inbound call; ``fields`` override or add keys. For driving an app
    directly (``App.handle(RTRequest.model_validate(callback_body(...)))``) or over HTTP."""
    body: dict[str, Any] = {
        "app": "4346423A",
        "callid": 421889,
        "request_hash": None,
        "cli_name": "",
        "cli_number": "+33612345678",
        "date_started": "2026-11-28 10:00:00",
        "number": "+33123456789",
        "command": "",
        "command_id": 0,
        "command_result": "",
        "command_error": "",
        "call_status": "INCOMING_CALL",
        "cdr_field": "",
        "variables": {},
    }
    body.update(fields)
    return body
