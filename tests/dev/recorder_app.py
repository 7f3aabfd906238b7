"""A small app for the page's record buttons: it records the caller, then says the name
of the file the platform returned (so the page shows that the app got the result), and
hangs up. Served by ``rtcontrol dev recorder_app:app`` with ``tests/dev`` on the path.

``silence=20`` (the longest): the recording never ends before the page's buttons are
used, however slow the machine; the tests end it with ``#``.
"""

from __future__ import annotations

from rtcontrol import App, Call, Command, Flow, hangup, play, record, tts


class Recorder(Flow):
    name = "recorder"

    async def start(self, call: Call) -> Command:
        return record(max_duration=120, silence=20).then(self.recorded)

    async def recorded(self, call: Call) -> Command:
        return play(tts(f"Recorded {call.recording}.")).then(self.bye)

    async def bye(self, call: Call) -> Command:
        return hangup()


app = App()
app.add_flow(Recorder, inbound=True, outbound=True)
