"""An app that answers inbound calls only (no outbound handler): ``rtcontrol dev`` must
not suggest ``rtcontrol call NUMBER`` for it."""

from __future__ import annotations

from rtcontrol import App, LiveCall, tts

app = App()


@app.inbound_call
async def hello(call: LiveCall) -> None:
    await call.play(tts("Hello."))
