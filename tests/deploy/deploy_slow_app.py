"""An app whose inbound handler takes ``SLOW_APP_SECONDS`` (default 1 s): for shutdown tests.

Served by a real uvicorn process: ``uvicorn deploy_slow_app:app --app-dir tests/deploy``
(settings from ``RTCONTROL_*`` variables, like ``apps.menu``).
"""

from __future__ import annotations

import asyncio
import os

from rtcontrol import App, Call, Command, play, tts

app = App()


@app.on_inbound
async def welcome(call: Call) -> Command:
    await asyncio.sleep(float(os.environ.get("SLOW_APP_SECONDS", "1.0")))
    return play(tts(f"Thank you for waiting, caller {call.id}."))
