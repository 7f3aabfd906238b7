"""Call queue with hold music: callers wait in line until an agent becomes free.

Shows ``app.interrupt``: callers hear hold music in a loop (a ``play`` whose step plays
it again); when an agent becomes free, the longest-waiting caller's music is stopped
through ``calls.realtime_break`` and the caller is dialled through to the agent.

The line lives in the store (``app.store``), as one key updated atomically with
``store.update``: the waiting callers in order and the agents who are free. Any worker
can answer any caller or agent, so it works with several workers on Redis. Callers who
hang up leave the line (``on_hangup``); a caller whose agent does not answer goes back
to the front of it.

An agent becomes free through ``await app.agent_free("+33100000001")`` or over HTTP,
with the callback's Basic credentials::

    curl -u callr:$RTCONTROL_CALLBACK_PASSWORD -X POST \\
        http://localhost:8000/agents/+33100000001/free

Serve it: ``uvicorn apps.queue:app`` (framework settings from ``RTCONTROL_*`` variables,
the callback credentials are required and ``RTCONTROL_STORE_URL=redis://...`` for several
workers; ``calls.realtime_break`` needs ``CALLR_API_KEY`` or ``CALLR_LOGIN`` and
``CALLR_PASSWORD``). ``QUEUE_HOLD_MUSIC`` is the media id of the hold music (default: a
spoken message).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import ValidationError

from rtcontrol import (
    ApiError,
    App,
    Call,
    CallEnded,
    CallNotFound,
    Command,
    Flow,
    Target,
    dialout,
    play,
    tts,
)
from rtcontrol.media import Media
from rtcontrol.web import require_callback_auth

#: The store key of the line: {"waiting": [{"callid", "caller", "since"}...], "agents": [...]}
LINE = "apps.queue:line"
#: Seconds an agent's phone rings before the caller goes back to the front of the line.
AGENT_RING = 20
log = logging.getLogger(__name__)
DEFAULT_MUSIC = tts("Thank you for holding. An agent will be with you shortly.")

Line = dict[str, list[Any]]


async def change_line(app: App, change: Callable[[Line], Any]) -> Any:
    """Apply ``change`` to the line atomically, for every worker; return what it returned.

    ``store.update`` may run its function more than once (optimistic retries): the
    result kept is the last run's, the one that was written.
    """
    result: list[Any] = [None]

    def apply(value: Line | None) -> Line | None:
        line = value if value is not None else {"waiting": [], "agents": []}
        result[0] = change(line)
        return line if line["waiting"] or line["agents"] else None

    await app.store.update(LINE, apply, ttl=app.settings.call_ttl)
    return result[0]


class Queue(Flow):
    name = "queue"

    def __init__(self, music: Media = DEFAULT_MUSIC) -> None:
        self.music = music

    async def start(self, call: Call) -> Command:
        return play(tts("Welcome to Example Corp.")).then(self.join)

    async def join(self, call: Call) -> Command:
        entry = {"callid": call.id, "caller": call.cli_number, "since": time.time()}

        def take_agent_or_wait(line: Line) -> str | int:
            if line["agents"]:
                return str(line["agents"].pop(0))
            line["waiting"].append(entry)
            return len(line["waiting"])

        got = await change_line(call.app, take_agent_or_wait)
        if isinstance(got, str):
            return connect(got)
        return play(tts(f"All our agents are busy. You are number {got} in line.")).then(self.hold)

    async def hold(self, call: Call) -> Command:
        return play(self.music).then(self.hold)  # until agent_free() interrupts it

    async def after_agent(self, call: Call) -> Command:
        # A bridged call ends when either side hangs up, so what comes back here is a
        # dial that failed (DialFailed: NOANSWER, BUSY...): back to the front of the line.
        entry = {"callid": call.id, "caller": call.cli_number, "since": time.time()}
        await change_line(call.app, lambda line: line["waiting"].insert(0, entry))
        text = "Sorry, the agent could not take your call. You are first in line."
        return play(tts(text)).then(self.hold)

    async def on_hangup(self, call: Call) -> None:
        def leave(line: Line) -> None:
            line["waiting"] = [e for e in line["waiting"] if e["callid"] != call.id]

        await change_line(call.app, leave)


def connect(agent: str) -> Command:
    whisper = tts("A caller from the queue.")
    target = Target(number=agent, timeout=AGENT_RING)
    return dialout(target, whisper=whisper).then(Queue.after_agent)


class QueueApp(App):
    """The App, plus the agents' side: :meth:`agent_free` and ``POST /agents/{number}/free``."""

    def __init__(self, *, music: Media = DEFAULT_MUSIC, **settings: Any) -> None:
        super().__init__(**settings)
        self.add_flow(Queue(music), inbound=True)

    async def waiting(self) -> list[int]:
        """Callids of the callers in line, the longest-waiting first."""
        line = await self.store.get(LINE)
        return [e["callid"] for e in line["waiting"]] if line else []

    async def agent_free(self, number: str) -> int | None:
        """Agent ``number`` is free: put the longest-waiting caller through to them.

        Returns that caller's callid, or None when nobody waits: the agent is then kept
        free and the next caller to join the line is put through at once.
        """
        number = Target(number=number).number  # an E.164 number, or ValidationError

        def next_caller(line: Line) -> int | None:
            if line["waiting"]:
                return int(line["waiting"].pop(0)["callid"])
            if number not in line["agents"]:
                line["agents"].append(number)
            return None

        while (callid := await change_line(self, next_caller)) is not None:
            try:
                await self.interrupt(callid, then=connect(number))
            except (CallEnded, CallNotFound):
                continue  # that caller hung up meanwhile: try the next one
            except ApiError as exc:  # the interrupt is recorded: it runs when the music ends
                log.warning("callid=%s: realtime_break failed (%s); connecting later", callid, exc)
            return int(callid)
        return None

    def asgi(self, path: str = "/callback") -> FastAPI:
        api = super().asgi(path)  # refuses to build without callback credentials
        auth = [Depends(require_callback_auth(self))]

        @api.post("/agents/{number}/free", dependencies=auth, summary="An agent is free")
        async def agent_free(number: str) -> dict[str, Any]:
            try:
                callid = await self.agent_free(number)
            except ValidationError:
                raise HTTPException(422, "the agent must be an E.164 number") from None
            return {"agent": number, "caller": callid}

        return api


def build(**settings: Any) -> QueueApp:
    music = os.environ.get("QUEUE_HOLD_MUSIC")
    settings.setdefault("music", int(music) if music else DEFAULT_MUSIC)
    return QueueApp(**settings)


app = build()
