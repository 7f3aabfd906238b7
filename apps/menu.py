"""Main menu: 1 for sales, 2 for support; three tries, then goodbye.

Serve it: ``uvicorn apps.menu:app`` (settings from ``RTCONTROL_*`` variables).
"""

from typing import Any

from rtcontrol import App, Call, Command, Flow, dialout, hangup, play, read, tts

AGENTS = {"1": "+33100000001", "2": "+33100000002"}


class Menu(Flow):
    name = "menu"

    def ask(self, text: str) -> Command:
        prompt = tts(text + " Press 1 for sales, 2 for support.")
        return read(prompt, max_digits=1, attempts=1, timeout_ms=5000).then(self.choice)

    async def start(self, call: Call) -> Command:
        call.state["tries"] = 1
        return self.ask("Welcome to Example Corp.")

    async def choice(self, call: Call) -> Command:
        if call.digits in AGENTS:
            return dialout(AGENTS[call.digits]).then(self.goodbye)
        tries = call.state["tries"] = call.state.get("tries", 1) + 1
        if tries > 3:
            return play(tts("Sorry, we could not help you. Goodbye.")).then(self.goodbye)
        return self.ask("That is not a valid choice." if call.digits else "We did not hear you.")

    async def goodbye(self, call: Call) -> Command:
        return hangup()


def build(**settings: Any) -> App:
    app = App(**settings)
    app.add_flow(Menu, inbound=True, outbound=True)
    return app


app = build()
