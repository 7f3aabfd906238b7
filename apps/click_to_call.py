"""Click-to-call: a web page asks us to connect A and B; we call A, then dial B for them.

Shows outbound calls: ``app.start_call(a, flow="click_to_call", data={"a": a, "b": b})``
makes the call's first callback run this flow with that data as ``call.state``. When A
answers they hear a short message and ``dialout`` rings B. If B does not answer
(``DialFailed``), A is told so and the call ends; if A does not answer, the call's only
callback carries BUSY, NOANSWER... and ``on_hangup`` records the failure.

Every attempt ends in an :class:`Outcomes` sink (a list in memory, plus one JSON line
per call appended to the file named by ``CLICK_TO_CALL_LOG`` when it is set) with its
``result``: ``connected``, ``a_unreachable``, ``b_unreachable`` or ``abandoned`` (A hung
up before B answered).

Start a call with ``await app.connect(a, b)`` or over HTTP, with the callback's Basic
credentials::

    curl -u callr:$RTCONTROL_CALLBACK_PASSWORD -H 'Content-Type: application/json' \\
        -d '{"a": "+33612345678", "b": "+33698765432"}' http://localhost:8000/click-to-call

Serve it: ``uvicorn apps.click_to_call:app`` (framework settings from ``RTCONTROL_*``
variables: the callback credentials and ``RTCONTROL_APP_HASH``, the REALTIME10 app that
places the calls; the API client needs ``CALLR_API_KEY`` or ``CALLR_LOGIN`` and
``CALLR_PASSWORD``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, StringConstraints

from apps.sink import JsonLines
from rtcontrol import (
    ApiError,
    App,
    Call,
    Command,
    ConfigurationError,
    DialFailed,
    Flow,
    Target,
    dialout,
    hangup,
    play,
    tts,
)
from rtcontrol.web import require_callback_auth

#: Seconds A's phone, then B's, may ring.
A_RING, B_RING = 30, 30


class Outcomes(JsonLines):
    """How each click-to-call ended (``CLICK_TO_CALL_LOG``: a JSON-lines file)."""

    ENV = "CLICK_TO_CALL_LOG"


class ClickToCall(Flow):
    name = "click_to_call"

    def __init__(self, outcomes: Outcomes) -> None:
        self.outcomes = outcomes

    async def start(self, call: Call) -> Command:
        if "b" not in call.state:  # an inbound call: this app only places calls
            return play(tts("This number does not take calls. Goodbye.")).then(self.bye)
        text = "Hello, this is Example Corp. We are connecting your call, please hold."
        return play(tts(text)).then(self.dial)

    async def dial(self, call: Call) -> Command:
        b = Target(number=call.state["b"], timeout=B_RING)
        return dialout(b, cli=call.state["a"]).then(self.not_connected)

    async def not_connected(self, call: Call) -> Command:
        # A bridged call ends when A or B hangs up: only a failed dial comes back here.
        outcome = call.outcome
        call.state["b_status"] = outcome.status if isinstance(outcome, DialFailed) else "FAILED"
        busy = call.state["b_status"] == "BUSY"
        text = "The line is busy." if busy else "Your correspondent did not answer."
        return play(tts(text + " Please try again later. Goodbye.")).then(self.bye)

    async def bye(self, call: Call) -> Command:
        return hangup()

    async def on_hangup(self, call: Call) -> None:
        state = call.state
        if "b" not in state:
            return
        status = str(call.status)
        if status != "HANGUP":  # A never answered: the only callback says BUSY, NOANSWER...
            result = "a_unreachable"
        elif "b_status" in state:
            result = "b_unreachable"
        elif call.command == "dialout" and call.result == "ANSWER":  # the bridge ended
            result = "connected"
        else:
            result = "abandoned"
        record = {"callid": call.id, "a": state["a"], "b": state["b"], "status": status}
        await self.outcomes.add({**record, "result": result, "b_status": state.get("b_status")})


E164 = Annotated[str, StringConstraints(pattern=r"^\+[1-9][0-9]{1,14}$")]


class ClickRequest(BaseModel):
    a: E164
    b: E164


class ClickToCallApp(App):
    """The App, plus the web side: :meth:`connect` and ``POST /click-to-call``."""

    def __init__(self, *, outcomes: Outcomes | None = None, **settings: Any) -> None:
        super().__init__(**settings)
        self.outcomes = outcomes if outcomes is not None else Outcomes.from_env()
        self.add_flow(ClickToCall(self.outcomes), inbound=True)

    async def connect(self, a: str, b: str) -> str:
        """Call ``a``, then put them through to ``b``; returns the call's request hash."""
        target = Target(number=a, timeout=A_RING)
        Target(number=b)  # check B now rather than when A has answered
        return await self.start_call(target, flow=ClickToCall, data={"a": a, "b": b})

    def asgi(self, path: str = "/callback") -> FastAPI:
        api = super().asgi(path)  # refuses to build without callback credentials
        auth = [Depends(require_callback_auth(self))]

        @api.post("/click-to-call", status_code=202, dependencies=auth, summary="Call A, then B")
        async def click_to_call(body: ClickRequest) -> dict[str, str]:
            try:
                request_hash = await self.connect(body.a, body.b)
            except ConfigurationError as exc:
                raise HTTPException(503, str(exc)) from None
            except ApiError as exc:
                raise HTTPException(502, f"the CALLR API failed: {exc}") from None
            return {"request_hash": request_hash}

        return api


def build(**settings: Any) -> ClickToCallApp:
    return ClickToCallApp(**settings)


app = build()
