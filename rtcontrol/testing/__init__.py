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

from .handle import CallHandle
from .helpers import callback_body, random_credentials
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
