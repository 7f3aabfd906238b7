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
CALLR error token as ``code``), 404 (no such call or app, or no such route: ``NOT_FOUND``),
405 (``METHOD_NOT_ALLOWED``) or 409 (not now: the call is not live, not ringing, or
over). ``code`` is for programs; ``message`` is one sentence for people, naming the
field at fault and what it must be (never echoing what was sent, but for a well-formed
app hash or call id). A handler raises :class:`~rtcontrol.errors.ControlError`, the very
exception :class:`~rtcontrol.emulator.ControlClient` raises from that answer.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
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
from .wire import decode_json

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

    #: The body as the README documents it (said when a body is not a JSON object).
    shape: ClassVar[str] = "{}"


class InboundCall(_Body):
    shape = '{"app"?, "from"?, "to"?, "cli_name"?, "cdr_field"?, "callee"?}'

    app: str | None = None
    from_: str = Field("+33612345678", alias="from")
    to: str = "+33123456789"
    cli_name: str = ""
    cdr_field: str = ""
    #: ``"live"`` (the softphone), a callee script, or null: the emulator's default callee.
    callee: Literal["live"] | dict[str, Any] | None = None


class OutboundCall(_Body):
    shape = '{"to", "app"?, "timeout"?, "cli"?, "cdr_field"?}'

    app: str | None = None
    to: str
    timeout: int = 30
    cli: str = "BLOCKED"
    cdr_field: str = ""


class NewApp(_Body):
    shape = '{"url", "name"?, "login"?, "password"?}'

    url: str
    name: str = "rtcontrol app"
    login: str = ""
    password: str = ""


class Phone(_Body):
    shape = '{"callee": "live"} or {"callee": {a callee script}}'

    callee: Literal["live"] | dict[str, Any]


class Digits(_Body):
    shape = '{"digits": "12#"}'

    digits: str = Field(pattern=r"^[0-9*#]{1,64}$")


class Speech(_Body):
    shape = '{"seconds": 3}'

    seconds: float = Field(ge=0, le=3600)


class Decline(_Body):
    shape = '{"as"?: "busy" or "rejected"}'

    as_: Literal["busy", "rejected"] = Field("busy", alias="as")


#: What a field must be, for its 400 (instead of pydantic's wording).
_FIELD_HINTS = {
    "app": "an app hash (8 capital letters and digits)",
    "from": 'an E.164 number or "BLOCKED"',
    "to": "an E.164 number (+33123456789)",
    "timeout": "whole seconds (5 to 300)",
    "callee": '"live" or a callee script (a JSON object)',
    "digits": "1 to 64 keys: 0-9, * and #",
    "seconds": "a number of seconds, 0 to 3600",
    "as": '"busy" or "rejected"',
}
#: A key worth naming back in an error (what a client typed is named only if it looks so).
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,31}")
#: An app hash, as CALLR and the emulator make them.
_HASH = re.compile(r"[A-Z0-9]{8}")
#: How E.164 numbers are described in errors.
E164_RULE = "+ then 2 to 15 digits, no leading 0: +33123456789"

M = TypeVar("M", bound=_Body)


def _fields(model: type[_Body]) -> str:
    return ", ".join(f.alias or name for name, f in model.model_fields.items())


#: Largest request body the control API reads, in bytes (a callee script is a few KB).
MAX_BODY = 64 * 1024


def _number(text: str | None, refusal: ControlError) -> int | None:
    """A non-negative integer from a path, query or header (ASCII digits, at most 20),
    or None when absent; anything else gets ``refusal`` (which never echoes it)."""
    if text is None:
        return None
    if not (text.isascii() and text.isdigit() and len(text) <= 20):
        raise refusal
    return int(text)


async def _body(request: Request, model: type[M]) -> M:
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY:
        raise ControlError(413, "TOO_LARGE", f"the body is over {MAX_BODY} bytes")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY:
            raise ControlError(413, "TOO_LARGE", f"the body is over {MAX_BODY} bytes")
    try:
        data = decode_json(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise ControlError(
            400,
            "INVALID_JSON",
            f"the body is not strict JSON (UTF-8, no NaN or Infinity): it must be {model.shape}",
        ) from None
    if not isinstance(data, dict):
        raise ControlError(400, "INVALID_PARAM", f"the body must be a JSON object: {model.shape}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ControlError(400, "INVALID_PARAM", _invalid(model, exc)) from None


def _invalid(model: type[_Body], exc: ValidationError) -> str:
    """One sentence for a body pydantic refused: an unknown key first (the likeliest
    mistake: a misspelt name), then a missing one, then a bad value."""
    errors = exc.errors()
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    if extra:
        key = str(extra[0]["loc"][0])
        named = repr(key) if _NAME.fullmatch(key) else "a key"
        return f"{named} is not a field of this body: it takes {_fields(model)}"
    first = next((e for e in errors if e["type"] == "missing"), errors[0])
    where = ".".join(str(p) for p in first["loc"]) or "body"
    top = str(first["loc"][0]) if first["loc"] else ""
    if first["type"] == "missing":
        return f"{where}: required ({model.shape})"
    if top in _FIELD_HINTS:
        return f"{top}: must be {_FIELD_HINTS[top]}"
    return f"{where}: {first['msg']}"


# ---------------------------------------------------------------- the API


class Control:
    """The route handlers, bound to one emulator."""

    def __init__(self, emu: Emulator) -> None:
        self.emu = emu

    def _app_hash(self, given: str | None) -> str:
        if given:
            if not _HASH.fullmatch(given):
                message = "app: not an app hash (8 capital letters and digits)"
                raise ControlError(400, "PROPERTY_VALUE_ERROR", message)
            return given
        apps = [a.hash for a in self.emu.apps.values() if a.type == "REALTIME10"]
        if len(apps) != 1:
            raise ControlError(
                400, "INVALID_PARAM", f"app: give the app hash ({len(apps)} REALTIME10 apps)"
            )
        return apps[0]

    def _callid(self, request: Request) -> int:
        callid = _number(
            request.path_params["callid"],
            ControlError(404, "NO_SUCH_CALL", "no such call: a call id is a number"),
        )
        assert callid is not None
        if callid not in self.emu.call_ids():
            raise ControlError(404, "NO_SUCH_CALL", f"no call {callid}")
        return callid

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
        try:
            app = self.emu.create_app(
                body.url, name=body.name, login=body.login, password=body.password
            )
        except RPCFault as fault:
            raise self._refused(fault) from None
        return JSONResponse(_app_json(app), status_code=201)

    def _refused(self, fault: RPCFault, app_hash: str = "", **names: str) -> ControlError:
        """The emulator's CALLR refusal as a sentence naming the control API's field
        (``names``: the emulator's field -> the body's, with what it must be); the
        ``code`` stays the CALLR token."""
        field = fault.field or ""
        if fault.token == "BAD_APP_TYPE" or field == "app":
            message = self._app_problem(app_hash)
        elif field in names:
            message = names[field]
        elif field == "params.url":
            message = "url: must be an http:// or https:// URL"
        elif field == "name":
            message = "name: must be 1 to 128 characters, not only spaces"
        elif field.startswith("params."):
            message = f"{field.removeprefix('params.')}: must be a string"
        else:
            message = f"the emulator refused the request ({fault.message})"
        return ControlError(400, fault.token, message)

    def _app_problem(self, app_hash: str) -> str:
        app = self.emu.apps.get(app_hash)
        if app is None:
            return f"app: no REALTIME10 app with hash {app_hash}"
        if app.type != "REALTIME10":
            return f"app: {app_hash} is a {app.type} app, not REALTIME10"
        return f"app: app {app_hash} has no callback URL"

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
            raise ControlError(400, "INVALID_PARAM", f"number: not an E.164 number ({E164_RULE})")
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
        app_hash = self._app_hash(body.app)
        try:
            call = self.emu.start_call(
                app_hash,
                callee,
                cli_number=body.from_,
                cli_name=body.cli_name,
                number=body.to,
                cdr_field=body.cdr_field,
            )
        except RPCFault as fault:
            raise self._refused(
                fault,
                app_hash,
                number=f"to: not an E.164 number ({E164_RULE})",
                cli_number=f'from: not an E.164 number ({E164_RULE}) nor "BLOCKED"',
            ) from None
        return JSONResponse(self.emu.call_info(call.callid), status_code=201)

    async def place_outbound(self, request: Request) -> Response:
        body = await _body(request, OutboundCall)
        options = {"cli": body.cli, "cdr_field": body.cdr_field}
        target = {"number": body.to, "timeout": body.timeout}
        app_hash = self._app_hash(body.app)
        bad_target = (
            f"to: not an E.164 number ({E164_RULE})"
            if not E164.fullmatch(body.to)
            else "timeout: must be whole seconds, 5 to 300"
        )
        try:
            request_hash = self.emu.realtime(app_hash, target, options)
        except RPCFault as fault:
            raise self._refused(
                fault,
                app_hash,
                target=bad_target,
                **{
                    "options.cli": f'cli: must be "BLOCKED" or an E.164 number ({E164_RULE})',
                    "options.cdr_field": "cdr_field: must be up to 32 letters and digits",
                },
            ) from None
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
        callid = _number(
            request.query_params.get("callid") or None,
            ControlError(400, "INVALID_PARAM", "callid: a call id (ASCII digits)"),
        )
        return self._stream(request, callid, closing=False)

    async def call_events(self, request: Request) -> Response:
        return self._stream(request, self._callid(request), closing=True)

    def _stream(self, request: Request, callid: int | None, *, closing: bool) -> Response:
        since_text = request.headers.get("last-event-id") or request.query_params.get("since")
        found = _number(
            since_text,
            ControlError(400, "INVALID_PARAM", "since (or Last-Event-ID): an event number"),
        )
        # One call's stream replays the call from its start; the global one from since.
        since = found if found is not None else (0 if closing else None)
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


async def _http_error(request: Request, exc: Exception) -> Response:
    """No route there, or not with that method: the API's JSON error, not plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return _error(404, "NOT_FOUND", "no such route in the control API (see GET /control/v1/)")
    if status == 405:
        allow = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        methods = sorted({m.strip() for m in allow.split(",")} - {"HEAD", ""})
        response = _error(
            405, "METHOD_NOT_ALLOWED", f"this route takes {', '.join(methods) or 'no method'}"
        )
        response.headers["Allow"] = allow
        return response
    return _error(status, f"HTTP_{status}", "the control API could not answer")


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
    by_path: dict[str, dict[str, Handler]] = {}
    for path, handler, methods in table:
        by_path.setdefault(path, {}).update(dict.fromkeys(methods, handler))
    routes: list[BaseRoute] = [
        Route(path, _guard(_by_method(handlers)), methods=list(handlers))
        for path, handlers in by_path.items()
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


def _by_method(handlers: dict[str, Handler]) -> Handler:
    """One route per path (so a 405 names every method the path takes)."""
    if len(handlers) == 1:
        return next(iter(handlers.values()))

    async def run(request: Request) -> Response:
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return run


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
