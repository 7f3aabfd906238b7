"""The app the chaos soak's workers serve (``tests/deploy/test_chaos.py``).

Served by real uvicorn processes: ``uvicorn chaos_app:app --app-dir tests/deploy``,
settings from ``RTCONTROL_*`` variables like ``apps.menu``. One linear flow, so a
step's name is also its position in the call (every step runs once per call):

=========  ==========================================================  ================
step       does                                                        answers
=========  ==========================================================  ================
start      nothing                                                     read 4 digits
account    keeps the digits in ``call.state``                          play
lookup     ~1.5 s of work (``CHAOS_LOOKUP_SECONDS``)                   read 1 digit
choice     "2": past the handler budget (``CHAOS_SLOW_SECONDS``, the   play, naming the
           caller is put on hold); any other digit: at once            account
goodbye    nothing                                                     hangup
=========  ==========================================================  ================

Every step execution and every ``on_hangup`` execution appends one JSON line to the
file named by ``CHAOS_SINK`` (one ``write`` of one line on an ``O_APPEND`` descriptor,
so the workers' lines never mix): the worker's pid, the call id, the step,
``call.idempotency_key`` (``None`` while the engine does not provide it) and the
``command_id`` the callback reported. The soak reads it to find steps run twice and
hang-ups handled zero or several times.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from rtcontrol import App, Call, Command, Flow, hangup, play, read, tts

__all__ = ["MENU_SLOW", "SINK_ENV", "ChaosFlow", "app", "done_text"]

SINK_ENV = "CHAOS_SINK"
#: The menu digit that makes ``choice`` slower than the handler budget.
MENU_SLOW = "2"
LOOKUP_SECONDS = float(os.environ.get("CHAOS_LOOKUP_SECONDS", "1.5"))
#: Past the 4 s handler budget: the caller hears the hold, then the command is
#: delivered (``calls.realtime_break``) when the handler is done.
SLOW_SECONDS = float(os.environ.get("CHAOS_SLOW_SECONDS", "5.0"))

_sink_fd: int | None = None


def _sink() -> int | None:
    global _sink_fd
    if _sink_fd is None and os.environ.get(SINK_ENV):
        _sink_fd = os.open(os.environ[SINK_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    return _sink_fd


def record(event: str, call: Call, **extra: Any) -> None:
    """One JSON line per execution; a single small write, atomic with O_APPEND."""
    fd = _sink()
    if fd is None:
        return
    line: dict[str, Any] = {
        "ev": event,
        "t": time.time(),
        "pid": os.getpid(),
        "callid": call.id,
        "step": call.step,
        "key": getattr(call, "idempotency_key", None),
        "cid": call.request.command_id,
        "status": str(call.status),
    }
    line.update(extra)
    os.write(fd, json.dumps(line, separators=(",", ":")).encode() + b"\n")


def done_text(account: str) -> str:
    """What the last prompt says: the account kept in ``call.state`` by ``account``."""
    return f"Account {account}: your request is done."


def _trail(call: Call, step: str) -> None:
    trail = call.state.setdefault("trail", [])
    if isinstance(trail, list):
        trail.append(step)


class ChaosFlow(Flow):
    name = "chaos"

    async def start(self, call: Call) -> Command:
        record("step", call)
        _trail(call, "start")
        prompt = tts("Welcome. Please enter your four digit account number.")
        return read(prompt, max_digits=4, attempts=1, timeout_ms=5000).then(self.account)

    async def account(self, call: Call) -> Command:
        record("step", call, digits=call.digits)
        _trail(call, "account")
        call.state["account"] = call.digits or "none"
        return play(tts("Thank you. Please hold while we look up your account.")).then(self.lookup)

    async def lookup(self, call: Call) -> Command:
        record("step", call)
        _trail(call, "lookup")
        await asyncio.sleep(LOOKUP_SECONDS)
        prompt = tts("Press 1 for your balance, 2 for a full statement.")
        return read(prompt, max_digits=1, attempts=1, timeout_ms=5000).then(self.choice)

    async def choice(self, call: Call) -> Command:
        record("step", call, digits=call.digits)
        _trail(call, "choice")
        if call.digits == MENU_SLOW:
            await asyncio.sleep(SLOW_SECONDS)
        return play(tts(done_text(str(call.state.get("account", "unknown"))))).then(self.goodbye)

    async def goodbye(self, call: Call) -> Command:
        record("step", call)
        _trail(call, "goodbye")
        return hangup()

    async def on_hangup(self, call: Call) -> None:
        record("hangup", call, trail=call.state.get("trail"))


app = App()
app.add_flow(ChaosFlow, inbound=True)
