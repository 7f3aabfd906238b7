"""Voicemail: a greeting, a recording, a playback, then 1 keep, 2 record again, 3 cancel.

Shows ``record`` (stopped by ``#``, by silence or by ``max_duration``), ``play_record``
of the file it returned, a confirmation menu that re-asks on invalid keys and silence,
and a sink for the kept messages.

A message is kept only when the caller confirms it with 1. Hanging up at any moment
before that (while recording, during the playback or at the menu) keeps nothing, and so
do three wrong or missing answers at the menu: the caller stays in control of what is
left behind. The platform does not report a recording's length, so ``duration`` is the
time the app measured between sending ``record`` and receiving its result.

Kept messages go to a :class:`Mailbox`: a list in memory, plus one JSON line per
message appended to the file named by ``VOICEMAIL_MESSAGES`` when it is set.

Serve it: ``VOICEMAIL_MESSAGES=messages.jsonl uvicorn apps.voicemail:app`` (framework
settings from ``RTCONTROL_*`` variables; the callback credentials are required).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from apps.sink import JsonLines
from rtcontrol import App, Call, Command, Flow, hangup, play, play_record, read, record, tts

#: Longest message, and the silence (seconds) that ends one.
MAX_DURATION, SILENCE = 120, 5
#: Wrong or missing answers at the confirmation menu before the message is dropped.
MAX_TRIES = 3
MENU = "To keep your message, press 1. To record it again, press 2. To cancel, press 3."


class Mailbox(JsonLines):
    """Kept messages (``VOICEMAIL_MESSAGES``: a JSON-lines file)."""

    ENV = "VOICEMAIL_MESSAGES"

    @property
    def messages(self) -> list[dict[str, Any]]:
        return self.records


class Voicemail(Flow):
    name = "voicemail"

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    def confirm(self, before: str = "") -> Command:
        prompt = tts(f"{before} {MENU}".strip())
        return read(prompt, max_digits=1, attempts=1, timeout_ms=5000).then(self.choice)

    async def start(self, call: Call) -> Command:
        greeting = tts(
            "You have reached Example Corp. Please leave your message after the tone, "
            "and press the hash key when you are done."
        )
        return play(greeting).then(self.take)

    async def take(self, call: Call) -> Command:
        call.state.update(started=time.time(), tries=0)
        return record(max_duration=MAX_DURATION, silence=SILENCE).then(self.recorded)

    async def recorded(self, call: Call) -> Command:
        if call.recording is None:  # the platform could not record
            return play(tts("Sorry, we could not record your message. Goodbye.")).then(self.bye)
        call.state["file"] = call.recording
        call.state["duration"] = round(time.time() - call.state["started"], 1)
        return play_record(call.recording).then(self.review)

    async def review(self, call: Call) -> Command:
        return self.confirm()

    async def choice(self, call: Call) -> Command:
        if call.digits == "1":
            await self.mailbox.add(
                {
                    "callid": call.id,
                    "caller": call.cli_number,
                    "mailbox": call.number,
                    "file": call.state["file"],
                    "duration": call.state["duration"],
                    "at": datetime.now(UTC).isoformat(timespec="seconds"),
                }
            )
            return play(tts("Your message has been saved. Goodbye.")).then(self.bye)
        if call.digits == "2":
            return play(tts("Please record your message after the tone.")).then(self.take)
        if call.digits == "3":
            return play(tts("Your message has been deleted. Goodbye.")).then(self.bye)
        call.state["tries"] += 1
        if call.state["tries"] >= MAX_TRIES:
            return play(tts("Your message was not saved. Goodbye.")).then(self.bye)
        again = "That is not a valid choice." if call.digits else "We did not hear you."
        return self.confirm(again)

    async def bye(self, call: Call) -> Command:
        return hangup()


def build(*, mailbox: Mailbox | None = None, **settings: Any) -> App:
    app = App(**settings)
    app.add_flow(Voicemail(mailbox if mailbox is not None else Mailbox.from_env()), inbound=True)
    return app


app = build()
