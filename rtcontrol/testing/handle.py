"""A call a test acts on while it runs: wait for a command, interrupt, hang up, then end.

::

    from rtcontrol import App, play, tts, wait
    from rtcontrol.emulator import Callee
    from rtcontrol.testing import EmulatedPlatform

    app = App()

    @app.on_inbound
    async def welcome(call):
        return wait(30).then(queue)

    @app.step
    async def queue(call):
        return wait(30).then(queue)          # on hold until something happens

    async def test_an_agent_frees_up() -> None:
        async with EmulatedPlatform(app) as platform:
            handle = await platform.start(Callee())
            await handle.wait_for("wait")            # the caller is on hold
            await handle.interrupt(then=play(tts("An agent is free.")).then(queue))
            await handle.wait_for("wait", nth=2)     # back on hold after the message
            await handle.hangup()                    # calls.hangup
            t = await handle.ended()
        assert t.executed == ["wait", "play", "wait"]
        assert t.said == ["An agent is free."]
        assert t.ended_by == "api"
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..commands import Command
from ..emulator import Transcript
from ..errors import CallEnded
from ..events import CallbackAnswered, Event
from .results import CallResult, ran

if TYPE_CHECKING:
    from ..app import App
    from ..emulator import ControlClient, Emulator
    from ..emulator.call import EmulatedCall

__all__ = ["CallHandle"]

#: Per callback answered: the step's name and the run number of the command it answered
#: with (1 for the first command the call runs).
Steps = list[tuple[str, int]]


class CallHandle:
    """One running call of an :class:`~rtcontrol.testing.EmulatedPlatform`.

    Made by ``await platform.start(...)`` (inbound) or ``await platform.start_outbound(...)``
    (through ``app.start_call``). Every wait is bounded by the call's own end: a call
    that ends first raises instead of waiting forever (and the platform's maximum call
    length, 600 virtual seconds by default, ends every call).

    Waits while the call runs (:meth:`wait_for`, :meth:`ended`) watch the emulator's
    in-process event bus, the one the control API's event stream reads;
    :meth:`ended` then reads the final transcript through the control API
    (``GET /control/v1/calls/{id}/transcript``) when the platform gave ``control``
    and is still open.
    ``steps``: the platform's record of the call's answered callbacks (from its
    first); without it the handle records those answered after it was made.
    """

    def __init__(
        self,
        call: EmulatedCall,
        *,
        app: App,
        emulator: Emulator,
        check: Callable[[int, Transcript], None],
        control: ControlClient | None = None,
        steps: Steps | None = None,
    ) -> None:
        self._app = app
        self._emulator = emulator
        self._control = control
        self._check = check  # strict mode: raises HandlerFailed for the call's failures
        #: The emulator's own handle of the call (:class:`~rtcontrol.emulator.call.EmulatedCall`).
        self.call = call
        #: Per callback answered: its step, and the run number of the command it answered with.
        self._steps: Steps = [] if steps is None else steps
        self._unsubscribe: Callable[[], None] | None = (
            app.events.subscribe(self._on) if steps is None else None
        )

    def _on(self, event: Event) -> None:
        # Emitted before the reply leaves: the command this step answered with is the
        # next one the call runs, i.e. run number len(executed) + 1.
        if isinstance(event, CallbackAnswered) and event.callid == self.callid:
            self._steps.append((event.step, len(self.transcript.executed) + 1))

    @property
    def callid(self) -> int:
        """The platform's call id (what ``calls.hangup`` and ``app.interrupt`` take)."""
        return self.call.callid

    @property
    def transcript(self) -> Transcript:
        """The live transcript: it grows while the call runs."""
        return self.call.transcript

    @property
    def running(self) -> str | None:
        """The name of the command running now; ``None`` while the app is being asked."""
        return self.call.running

    async def wait_for(
        self, command: str | None = None, *, nth: int = 1, step: str | None = None
    ) -> Command:
        """Wait until a command starts running; return it (``step`` is ``None``, as in
        :func:`~rtcontrol.testing.ran`).

        ``wait_for("play")``: the first ``play``; ``wait_for("play", nth=2)``: the second;
        ``wait_for(nth=3)``: the third command of any name; ``wait_for(step="choice")``:
        the command that step ``choice`` answered with (``nth``: its nth answer). A
        command that already ran counts: the wait returns at once.

        Raises :class:`~rtcontrol.testing.HandlerFailed` (strict mode) or
        :class:`~rtcontrol.errors.CallEnded` (with the transcript) when the call ends first.
        """
        if nth < 1:
            raise ValueError("nth counts from 1")
        if command is not None and step is not None:
            raise ValueError("wait for a command name or a step, not both")
        position: list[int] = []

        def started(t: Transcript) -> bool:
            executed = t.executed
            if step is not None:
                runs = [n for s, n in self._steps if s == step]
                if len(runs) >= nth and len(executed) >= runs[nth - 1]:
                    position.append(runs[nth - 1] - 1)
                    return True
                return False
            seen = [i for i, name in enumerate(executed) if command in (None, name)]
            if len(seen) >= nth:
                position.append(seen[nth - 1])
                return True
            return False

        try:
            await self.call.wait_until(started)
        except CallEnded:
            self._check(self.callid, self.transcript)
            what = f"step {step!r}" if step else repr(command or "any command")
            raise CallEnded(
                f"call {self.callid} ended before {what} ran {nth} time(s)\n\n"
                + self.transcript.render(),
                callid=self.callid,
            ) from None
        return ran(self.transcript)[position[0]]

    async def interrupt(self, then: Command | str | Callable[..., Any] | None = None) -> bool:
        """``app.interrupt(callid, then)``: break the running command and run ``then``
        (a command, a step name or function; ``None``: the flow's ``on_break``).
        Returns the platform's answer to the break."""
        return await self._app.interrupt(self.callid, then)

    async def hangup(self) -> bool:
        """Hang the call up as ``calls.hangup`` does (the app gets its HANGUP callback);
        ``False`` when it had already ended. Does not wait: see :meth:`ended`."""
        return self._emulator.hangup_call(self.callid)

    async def ended(self) -> CallResult:
        """Wait for the call to end; return its :class:`~rtcontrol.testing.CallResult`.

        Raises :class:`~rtcontrol.testing.HandlerFailed` in strict mode."""
        transcript = await self.call.wait()
        if self._control is not None and not self._control.closed:
            # the record as the control API serves it (once the platform closed, and
            # its API with it, the emulator's own: the same record)
            transcript = await self._control.transcript(self.callid)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._check(self.callid, transcript)
        return CallResult.of(transcript)
