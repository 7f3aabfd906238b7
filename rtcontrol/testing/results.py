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

from ..commands import Command
from ..emulator import Transcript
from ..emulator.transcript import SPOKEN

__all__ = ["SPOKEN", "CallResult", "ran", "said"]


def ran(transcript: Transcript) -> list[Command]:
    """The commands the platform ran, in order, as :class:`~rtcontrol.Command` objects:
    ``transcript.ran`` (see :attr:`Transcript.ran <rtcontrol.emulator.Transcript.ran>`).
    Works on a live transcript too (the commands run so far)."""
    return transcript.ran


def said(transcript: Transcript) -> list[str]:
    """The text of every TTS prompt the caller heard, in order: ``transcript.said``
    (see :attr:`Transcript.said <rtcontrol.emulator.Transcript.said>`)."""
    return transcript.said


@dataclasses.dataclass
class CallResult(Transcript):
    """A call's :class:`~rtcontrol.emulator.Transcript`, with every field and property of
    it (``said``, ``ran``, ``executed``, ``requests``, ``render()``...): what
    :meth:`EmulatedPlatform.call <rtcontrol.testing.EmulatedPlatform.call>` and
    :meth:`CallHandle.ended <rtcontrol.testing.CallHandle.ended>` return. ``said`` and
    ``ran`` are the transcript's own, so a transcript from
    :meth:`ControlClient.transcript <rtcontrol.emulator.ControlClient.transcript>` has
    them too.
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
