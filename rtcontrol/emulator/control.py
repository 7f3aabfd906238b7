"""The emulator's control API: HTTP + JSON next to JSON-RPC, with a live SSE stream.

Everything under ``/control/v1``; the README's "The emulator as a service" section is
the reference. In short:

* ``GET /`` (info), ``GET|POST /apps``, ``GET /phonebook``, ``PUT|DELETE /phonebook/{n}``;
* ``POST /calls`` (inbound), ``POST /calls/outbound``, ``GET /calls``, ``GET /calls/{id}``,
  ``GET /calls/{id}/transcript``;
* a live callee: ``POST /calls/{id}/dtmf|speech|hangup``; a ringing softphone call:
  ``POST /calls/{id}/answer|decline``;
* ``GET /events`` (every call) and ``GET /calls/{id}/events`` (one call, replayed from
  its start, closed after ``call.ended``): Server-Sent Events, one JSON event each.

Errors are ``{"error": {"code": ..., "message": ...}}`` with 400 (bad input, or a
CALLR error token as ``code``), 404 (no such call or app) or 409 (not now: the call is
not live, not ringing, or over): a handler raises :class:`~rtcontrol.errors.ControlError`,
the very exception :class:`~rtcontrol.emulator.ControlClient` raises from that answer.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route

from rtcontrol.errors import ControlError
from rtcontrol.media import E164

from .apps import App, RPCFault
from .bus import ControlEvent
from .call import EmulatedCall
from .callee import Callee
from .emulator import Emulator
from .live import LiveCallee
from .rpc import RPC_PATH
from .scripts import callee_from_json, callee_to_json
from .settings import DEFAULT_API_KEY
from .transcript import Transcript

__all__ = ["CONTROL_PATH", "build_control_app", "build_service_app", "sse_lines"]

#: Where the control API is mounted on the emulator's server.
CONTROL_PATH = "/control/v1"
#: Seconds between keep-alive comments on an idle event stream.
KEEPALIVE = 15.0


def _app_json(app: App) -> dict[str, Any]:
    """An app as the control API shows it (no password)."""
    return {"hash": app.hash, "name": app.name, "type": app.type, "url": app.url}


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


# ---------------------------------------------------------------- request bodies


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class InboundCall(_Body):
    app: str | None = None
    from_: str = Field("+33612345678", alias="from")
    to: str = "+33123456789"
    cli_name: str = ""
    cdr_field: str = ""
    #: ``"live"`` (the softphone), a callee script, or null: the emulator's default callee.
    callee: Literal["live"] | dict[str, Any] | None = None


class OutboundCall(_Body):
    app: str | None = None
    to: str
    timeout: int = 30
    cli: str = "BLOCKED"
    cdr_field: str = ""


class NewApp(_Body):
    url: str
    name: str = "rtcontrol app"
    login: str = ""
    password: str = ""


class Phone(_Body):
    callee: Literal["live"] | dict[str, Any]


class Digits(_Body):
    digits: str


class Speech(_Body):
    seconds: float = Field(ge=0, le=3600)


class Decline(_Body):
    as_: Literal["busy", "rejected"] = Field("busy", alias="as")


M = TypeVar("M", bound=BaseModel)


async def _body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        data = json.loads(raw) if raw.strip() else {}
    except ValueError:
        raise ControlError(400, "INVALID_JSON", "the body is not JSON") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ControlError(400, "INVALID_PARAM", f"{where}: {first['msg']}") from None


# ---------------------------------------------------------------- the API


class Control:
    """The route handlers, bound to one emulator."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _app_hash(self, given: str | None) -> str:
        if given:
            return given
        apps = [a.hash for a in self.emu.apps.values() if a.type == "REALTIME10"]
        if len(apps) != 1:
            raise ControlError(
                400, "INVALID_PARAM", f"app: give the app hash ({len(apps)} REALTIME10 apps)"
            )
        return apps[0]

    def _callid(self, request: Request) -> int:
        text = request.path_params["callid"]
        if not text.isdigit() or int(text) not in self.emu.call_ids():
            raise ControlError(404, "NO_SUCH_CALL", f"no call {text}")
        return int(text)

    def _call(self, request: Request) -> EmulatedCall:
        callid = self._callid(request)
        if callid in self.emu.ringing:
            raise ControlError(409, "RINGING", f"call {callid} is ringing: answer it first")
        found = self.emu.find(callid)
        if not isinstance(found, EmulatedCall):
            raise ControlError(409, "NOT_A_CALL", f"{callid} is a broadcast")
        return found

    def _live(self, request: Request) -> tuple[EmulatedCall, LiveCallee]:
        call = self._call(request)
        if not isinstance(call.callee, LiveCallee):
            raise ControlError(409, "NOT_LIVE", f"call {call.callid} has a scripted callee")
        if call.ended:
            raise ControlError(409, "ENDED", f"call {call.callid} is over")
        return call, call.callee

    # --- routes ----------------------------------------------------------------------------
    async def info(self, request: Request) -> Response:
        base = str(request.base_url).rstrip("/")
        root = base.removesuffix(CONTROL_PATH)
        return JSONResponse(
            {
                "rpc_url": root + RPC_PATH,
                "api_key": DEFAULT_API_KEY,
                "control_url": root + CONTROL_PATH + "/",
                "page_url": root + "/",
                "apps": [_app_json(a) for a in self.emu.apps.values()],
                "reply_timeout": self.emu.settings.reply_timeout,
                "last_event": self.emu.bus.history[-1].seq if self.emu.bus.history else 0,
            }
        )

    async def list_apps(self, request: Request) -> Response:
        return JSONResponse([_app_json(a) for a in self.emu.apps.values()])

    async def create_app(self, request: Request) -> Response:
        body = await _body(request, NewApp)
        app = self.emu.create_app(
            body.url, name=body.name, login=body.login, password=body.password
        )
        return JSONResponse(_app_json(app), status_code=201)

    async def phonebook(self, request: Request) -> Response:
        emu = self.emu
        return JSONResponse(
            {
                "live_default": emu.live_default,
                "live": sorted(emu.live_numbers),
                "numbers": {n: callee_to_json(c) for n, c in emu.phonebook.items()},
            }
        )

    async def set_phone(self, request: Request) -> Response:
        number = request.path_params["number"]
        if not E164.fullmatch(number):
            raise ControlError(400, "INVALID_PARAM", "number: an E.164 number (+33...)")
        body = await _body(request, Phone)
        self.emu.phonebook.pop(number, None)
        self.emu.live_numbers.discard(number)
        if body.callee == "live":
            self.emu.live_numbers.add(number)
        else:
            self.emu.phonebook[number] = _callee(body.callee)
        return await self.phonebook(request)

    async def drop_phone(self, request: Request) -> Response:
        number = request.path_params["number"]
        self.emu.phonebook.pop(number, None)
        self.emu.live_numbers.discard(number)
        return await self.phonebook(request)

    async def place_inbound(self, request: Request) -> Response:
        body = await _body(request, InboundCall)
        callee: Callee | None
        if body.callee == "live":
            callee = LiveCallee()
        elif body.callee is None:
            callee = None
        else:
            callee = _callee(body.callee)
        call = self.emu.start_call(
            self._app_hash(body.app),
            callee,
            cli_number=body.from_,
            cli_name=body.cli_name,
            number=body.to,
            cdr_field=body.cdr_field,
        )
        return JSONResponse(self.emu.call_info(call.callid), status_code=201)

    async def place_outbound(self, request: Request) -> Response:
        body = await _body(request, OutboundCall)
        options = {"cli": body.cli, "cdr_field": body.cdr_field}
        target = {"number": body.to, "timeout": body.timeout}
        request_hash = self.emu.realtime(self._app_hash(body.app), target, options)
        callid = next(
            (r.callid for r in self.emu.ringing.values() if r.request_hash == request_hash),
            None,
        )
        if callid is None:
            callid = self.emu.call_for_request(request_hash).callid
        info = {"request_hash": request_hash, **self.emu.call_info(callid)}
        return JSONResponse(info, status_code=201)

    async def list_calls(self, request: Request) -> Response:
        return JSONResponse([self.emu.call_info(c) for c in self.emu.call_ids()])

    async def get_call(self, request: Request) -> Response:
        callid = self._callid(request)
        info = self.emu.call_info(callid)
        if callid not in self.emu.ringing:
            info["transcript"] = self._transcript(callid, info)
        return JSONResponse(info)

    async def transcript(self, request: Request) -> Response:
        callid = self._callid(request)
        if callid in self.emu.ringing:
            raise ControlError(409, "RINGING", f"call {callid} is ringing: no transcript yet")
        return JSONResponse(self._transcript(callid, self.emu.call_info(callid)))

    def _transcript(self, callid: int, info: dict[str, Any]) -> dict[str, Any]:
        """A call's transcript as JSON; while it runs, ``duration`` (and the rendering's
        "still running after ...") is the time so far, as in ``info``."""
        t: Transcript = self.emu.find(callid).transcript
        if info["state"] != "ended":
            t = dataclasses.replace(t, duration=float(info["duration"]))
        return t.to_json()

    async def dtmf(self, request: Request) -> Response:
        call, callee = self._live(request)
        body = await _body(request, Digits)
        try:
            heard = callee.line.press(body.digits)
        except ValueError as exc:
            raise ControlError(400, "INVALID_PARAM", f"digits: {exc}") from None
        self._note(call, f"keypad {body.digits!r}" + ("" if heard else ": nobody listens"))
        return JSONResponse({"heard": heard, "running": call.running})

    async def speech(self, request: Request) -> Response:
        call, callee = self._live(request)
        body = await _body(request, Speech)
        heard = callee.line.speak(body.seconds)
        self._note(call, f"speech {body.seconds:g}s" + ("" if heard else ": nobody listens"))
        return JSONResponse({"heard": heard, "running": call.running})

    def _note(self, call: EmulatedCall, text: str) -> None:
        at = self.emu.clock.now() - call.start
        self.emu.bus.publish("callee", call.callid, at, {"text": text, "live": True})

    async def hangup(self, request: Request) -> Response:
        callid = self._callid(request)
        if callid in self.emu.ringing:
            return JSONResponse({"done": self.emu.answer(callid, "rejected")})
        call = self._call(request)
        return JSONResponse({"done": call.request_hangup("callee") and not call.ended})

    async def answer(self, request: Request) -> Response:
        callid = self._callid(request)
        if not self.emu.answer(callid, "answer"):
            raise ControlError(409, "NOT_RINGING", f"call {callid} is not ringing")
        return JSONResponse({"done": True})

    async def decline(self, request: Request) -> Response:
        callid = self._callid(request)
        body = await _body(request, Decline)
        if not self.emu.answer(callid, body.as_):
            raise ControlError(409, "NOT_RINGING", f"call {callid} is not ringing")
        return JSONResponse({"done": True})

    async def events(self, request: Request) -> Response:
        callid = request.query_params.get("callid")
        if callid is not None and not callid.isdigit():
            raise ControlError(400, "INVALID_PARAM", "callid: an integer")
        return self._stream(request, int(callid) if callid else None, closing=False)

    async def call_events(self, request: Request) -> Response:
        return self._stream(request, self._callid(request), closing=True)

    def _stream(self, request: Request, callid: int | None, *, closing: bool) -> Response:
        since_text = request.headers.get("last-event-id") or request.query_params.get("since")
        if since_text is not None and not since_text.isdigit():
            raise ControlError(400, "INVALID_PARAM", "since: an event number")
        # One call's stream replays the call from its start; the global one from since.
        since = int(since_text) if since_text is not None else (0 if closing else None)
        ended = closing and callid is not None and self._over(callid)
        sub = self.emu.bus.subscribe(callid, since)

        async def body() -> AsyncIterator[str]:
            try:
                yield "retry: 1000\n\n"
                while True:
                    event = await sub.get(KEEPALIVE)
                    if event is None:
                        if ended or sub.closed:
                            return
                        yield ": keep-alive\n\n"
                        continue
                    yield sse_lines(event)
                    if closing and event.type == "call.ended":
                        return
            finally:
                sub.close()

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(body(), media_type="text/event-stream", headers=headers)

    def _over(self, callid: int) -> bool:
        if callid in self.emu.ringing:
            return False
        return self.emu.find(callid).ended and not any(
            e.type == "call.ended" for e in self.emu.bus.events(callid)
        )


def _callee(data: dict[str, Any]) -> Callee:
    try:
        return callee_from_json(data)
    except ValueError as exc:
        raise ControlError(400, "INVALID_CALLEE", str(exc)) from None


def sse_lines(event: ControlEvent) -> str:
    """One Server-Sent Event: ``id`` is the event's seq, ``data`` its JSON."""
    data = json.dumps(event.to_json(), ensure_ascii=False, default=str)
    return f"id: {event.seq}\ndata: {data}\n\n"


Handler = Callable[[Request], Awaitable[Response]]


def _guard(handler: Handler) -> Handler:
    async def run(request: Request) -> Response:
        try:
            return await handler(request)
        except ControlError as exc:
            return _error(exc.status, exc.code, exc.message)
        except RPCFault as exc:
            return _error(400, exc.token, str(exc))
        except KeyError as exc:
            return _error(404, "NOT_FOUND", f"unknown {exc}")

    return run


def build_control_app(emu: Emulator) -> Starlette:
    """The control API as an ASGI app (mounted at :data:`CONTROL_PATH`)."""
    c = Control(emu)
    table: list[tuple[str, Handler, list[str]]] = [
        ("/", c.info, ["GET"]),
        ("/apps", c.list_apps, ["GET"]),
        ("/apps", c.create_app, ["POST"]),
        ("/phonebook", c.phonebook, ["GET"]),
        ("/phonebook/{number}", c.set_phone, ["PUT"]),
        ("/phonebook/{number}", c.drop_phone, ["DELETE"]),
        ("/calls", c.list_calls, ["GET"]),
        ("/calls", c.place_inbound, ["POST"]),
        ("/calls/outbound", c.place_outbound, ["POST"]),
        ("/calls/{callid}", c.get_call, ["GET"]),
        ("/calls/{callid}/transcript", c.transcript, ["GET"]),
        ("/calls/{callid}/events", c.call_events, ["GET"]),
        ("/calls/{callid}/dtmf", c.dtmf, ["POST"]),
        ("/calls/{callid}/speech", c.speech, ["POST"]),
        ("/calls/{callid}/hangup", c.hangup, ["POST"]),
        ("/calls/{callid}/answer", c.answer, ["POST"]),
        ("/calls/{callid}/decline", c.decline, ["POST"]),
        ("/events", c.events, ["GET"]),
    ]
    routes: list[BaseRoute] = [Route(p, _guard(h), methods=m) for p, h, m in table]
    return Starlette(routes=routes)


def build_service_app(emu: Emulator) -> Starlette:
    """The emulator as a service: JSON-RPC (``/json-rpc/v1.1/`` and ``POST /``), the
    control API (``/control/v1/``) and the dev page (``/``), in one ASGI app."""
    from rtcontrol.devpage import page_routes

    routes: list[BaseRoute] = [
        Mount(CONTROL_PATH, app=build_control_app(emu)),
        *page_routes(),
        Mount("", app=emu.rpc_app),
    ]
    return Starlette(routes=routes)
