"""Main menu, straight-line style: the twin of ``apps/menu.py``.

1 for sales, 2 for support; three tries, then goodbye. The whole call is one
``async`` function: each ``await`` sends a command and returns its result, and any
worker can answer any callback (the call's journal is replayed when needed).

Serve it: ``uvicorn apps.menu_straight:app`` (settings from ``RTCONTROL_*`` variables).
"""

from typing import Any

from rtcontrol import App, LiveCall, tts

AGENTS = {"1": "+33100000001", "2": "+33100000002"}
CHOICES = " Press 1 for sales, 2 for support."


async def menu(call: LiveCall) -> None:
    """Ask up to three times, then put the caller through or say goodbye."""
    intro = "Welcome to Example Corp."
    for _ in range(3):
        digits = await call.read(tts(intro + CHOICES), max_digits=1, attempts=1, timeout_ms=5000)
        if digits in AGENTS:
            await call.dialout(AGENTS[digits])
            return  # the call hangs up once the bridge ends
        intro = "That is not a valid choice." if digits else "We did not hear you."
    await call.play(tts("Sorry, we could not help you. Goodbye."))


def build(**settings: Any) -> App:
    app = App(**settings)
    app.call_flow(menu, inbound=True, outbound=True)
    return app


app = build()
