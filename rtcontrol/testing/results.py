"""What a call did, as a test reads it: the words the caller heard and the commands run.

::

    from rtcontrol import App, hangup, play, read, tts
    from rtcontrol.emulator import Callee, Press
    from rtcontrol.testing import EmulatedPlatform

    app = App()

    @app.on_inbound
    async def welcome(call):
        return read(tts("Press 1 for news"), max_digits=1).then(choice)

    @app.step
    async def choice(call):
        return play(tts("No news today.")).then(goodbye) if call.digits == "1" else hangup()

    @app.step
    async def goodbye(call):
        return hangup()

    async def test_news() -> None:
        async with EmulatedPlatform(app, strict=True) as platform:
            t = await platform.call(Callee(actions=[Press("1")]))
        assert t.said == ["Press 1 for news", "No news today."]
        assert t.ran == [read(tts("Press 1 for news"), max_digits=1),
                         play(tts("No news today.")), hangup()]
        assert t.executed == ["read", "play", "hangup"]   # the names, as before
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..commands import Command, from_wire
from ..emulator import Transcript

__all__ = ["SPOKEN", "CallResult", "ran", "said"]

#: The commands whose ``media_id`` the caller hears, in :func:`said`.
SPOKEN = frozenset({"play", "read", "play_talk_detect"})


def ran(transcript: Transcript) -> list[Command]:
    """The commands the platform ran, in order, as :class:`~rtcontrol.Command` objects.

    Same length and order as ``transcript.executed`` (``hangup`` included; replies the
    platform refused are not there). Each is rebuilt from its reply with
    :func:`rtcontrol.commands.from_wire`, so it equals the builder's command; its
    ``step`` is always ``None`` (compare with ``read(...)``, not ``read(...).then(x)``).
    Works on a live transcript too (the commands run so far).
    """
    commands: list[Command] = []
    reply: dict[str, Any] | None = None
    for event in transcript.events:
        if event.kind == "reply" and not event.ignored:
            reply = event.data if isinstance(event.data, dict) else None
        elif event.kind == "platform" and event.text.startswith("run ") and reply is not None:
            if reply.get("command") == event.data:
                commands.append(from_wire(reply.get("command"), reply.get("params") or {}))
            reply = None
    return commands


def said(transcript: Transcript) -> list[str]:
    """The text of every TTS prompt the caller heard, in order.

    The ``media_id`` of each ``play``, ``read`` and ``play_talk_detect`` that ran (the
    fallback's apology included), when it is a ``TTS|voice|text`` string: ``text``
    only. Recorded media (numeric ids) are not text and are skipped: see :func:`ran`.
    """
    texts: list[str] = []
    for command in ran(transcript):
        media = command.params.get("media_id") if command.name in SPOKEN else None
        if isinstance(media, str) and media.startswith("TTS|"):
            texts.append(media.split("|", 2)[2])
    return texts


@dataclasses.dataclass
class CallResult(Transcript):
    """A call's :class:`~rtcontrol.emulator.Transcript` (every field and property of
    it: ``executed``, ``requests``, ``render()``...) plus :attr:`said` and :attr:`ran`.

    What :meth:`EmulatedPlatform.call <rtcontrol.testing.EmulatedPlatform.call>` and
    :meth:`CallHandle.ended <rtcontrol.testing.CallHandle.ended>` return.
    """

    @classmethod
    def of(cls, transcript: Transcript) -> CallResult:
        """Wrap ``transcript`` (the events list is shared, not copied)."""
        if isinstance(transcript, CallResult):
            return transcript
        values = {
            f.name: getattr(transcript, f.name) for f in dataclasses.fields(transcript) if f.init
        }
        return cls(**values)

    @property
    def said(self) -> list[str]:
        """TTS texts the caller heard, in order: see :func:`said`."""
        return said(self)

    @property
    def ran(self) -> list[Command]:
        """The commands run, as objects: see :func:`ran`."""
        return ran(self)
