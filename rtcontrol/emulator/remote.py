"""A typed client of the emulator's control API (``/control/v1``): the one way in.

The test kit (``platform.control``), ``rtcontrol call --inbound`` and the dev page all
drive the emulator through this API; :class:`ControlClient` is its Python side::

    async with ControlClient("http://127.0.0.1:8765/control/v1") as control:
        app_hash = await control.create_app("http://127.0.0.1:8000/callback")
        await control.set_phone("+33600000001", Callee(answer="busy"))
        call = await control.place_inbound("live", app=app_hash)   # a softphone call
        await control.press(call.callid, "1")                      # DTMF, as a person
        await control.hang_up(call.callid)
        async for event in control.events(call.callid):            # until call.ended
            print(event.type, event.data)
        t = await control.transcript(call.callid)                  # a Transcript

In-process, pass ``transport=httpx.ASGITransport(app)`` with an ASGI app that serves
the control API under the base URL's path (``build_service_app(emulator)``, or
:func:`~rtcontrol.emulator.control.build_control_app` mounted at ``/control/v1``).
``httpx.ASGITransport`` buffers a whole response: over it, :meth:`ControlClient.events`
yields nothing until the stream ends (a call's stream ends with the call; the stream of
every call only when the emulator closes), so wait on ``emulator.bus`` in-process.

Errors: :class:`~rtcontrol.errors.ControlError` when the API refuses a request (its
``status``, ``code`` and ``message``), :class:`~rtcontrol.errors.ControlUnreachable`
(a subclass) when no control API answers.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, cast
from urllib.parse import quote, urlsplit

import httpx

from ..errors import ConfigurationError, ControlError, ControlUnreachable
from .bus import ControlEvent
from .callee import Callee
from .control import CONTROL_PATH
from .live import LiveCallee
from .scripts import callee_from_json, callee_to_json
from .transcript import Transcript

__all__ = [
    "AppInfo",
    "CallInfo",
    "ControlClient",
    "Heard",
    "Phonebook",
    "ServiceInfo",
]

#: Seconds a request may take (connect, send, read) before it counts as unreachable.
TIMEOUT = 30.0

Direction = Literal["inbound", "outbound", "broadcast"]
CallState = Literal["ringing", "up", "ended"]


@dataclass(frozen=True)
class AppInfo:
    """An app of the emulator: its 8-character ``hash``, ``name``, ``type``
    (``REALTIME10``...) and callback ``url`` (its password is never shown)."""

    hash: str
    name: str
    type: str
    url: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AppInfo:
        return cls(data["hash"], data["name"], data["type"], data["url"])


@dataclass(frozen=True)
class ServiceInfo:
    """``GET /control/v1/``: where the emulator serves what, and its state.

    ``rpc_url``, ``control_url`` and ``page_url`` are absolute URLs; ``api_key`` is the
    JSON-RPC key it accepts; ``reply_timeout`` the seconds an app has to answer a
    callback; ``last_event`` the ``seq`` of the newest event (pass it as ``since`` to
    :meth:`ControlClient.events` for new events only; 0 when there is none).
    """

    rpc_url: str
    api_key: str
    control_url: str
    page_url: str
    apps: tuple[AppInfo, ...]
    reply_timeout: float
    last_event: int

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ServiceInfo:
        return cls(
            rpc_url=data["rpc_url"],
            api_key=data["api_key"],
            control_url=data["control_url"],
            page_url=data["page_url"],
            apps=tuple(AppInfo.from_json(a) for a in data["apps"]),
            reply_timeout=float(data["reply_timeout"]),
            last_event=int(data["last_event"]),
        )


@dataclass(frozen=True)
class CallInfo:
    """One call as the control API shows it.

    ``state``: ``ringing`` (an outbound call ringing the softphone), ``up`` or
    ``ended``; ``from_`` and ``to`` are E.164 numbers (``from_`` is ``""`` when the
    caller id is blocked); ``request_hash`` is the ``calls.realtime`` hash of an
    outbound call (``None`` for inbound); ``live``: a person (the softphone, or
    :meth:`ControlClient.press` and friends) plays the callee; ``running``: the command
    running now; ``ended_by``: how it ended (``""`` while it runs; see
    :attr:`Transcript.ended_by`); ``duration``: virtual seconds since it started (to its
    end once it ended). ``transcript``: the record so far, from
    :meth:`ControlClient.call` only (``None`` elsewhere, and while it rings).
    """

    callid: int
    direction: Direction
    state: CallState
    app: str
    from_: str
    to: str
    request_hash: str | None
    live: bool
    running: str | None
    ended_by: str
    duration: float
    transcript: Transcript | None = field(default=None, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CallInfo:
        record = data.get("transcript")
        return cls(
            callid=int(data["callid"]),
            direction=cast(Direction, data["direction"]),
            state=cast(CallState, data["state"]),
            app=data["app"],
            from_=data["from"],
            to=data["to"],
            request_hash=data.get("request_hash"),
            live=bool(data["live"]),
            running=data.get("running"),
            ended_by=data.get("ended_by", ""),
            duration=float(data["duration"]),
            transcript=Transcript.from_json(record) if record is not None else None,
        )


@dataclass(frozen=True)
class Phonebook:
    """Who outbound calls reach: ``numbers`` (E.164 -> scripted :class:`Callee`),
    ``live`` (numbers that ring the softphone) and ``live_default`` (every other number
    rings it too); any other number reaches the emulator's default callee."""

    numbers: dict[str, Callee]
    live: tuple[str, ...]
    live_default: bool

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Phonebook:
        return cls(
            numbers={n: callee_from_json(c) for n, c in data["numbers"].items()},
            live=tuple(data["live"]),
            live_default=bool(data["live_default"]),
        )


@dataclass(frozen=True)
class Heard:
    """What became of a key or speech sent to a live callee: ``heard`` is ``False`` when
    no command was listening (it is dropped, as a phone drops keys nobody reads);
    ``running``: the command running when it arrived."""

    heard: bool
    running: str | None


def _callee_json(callee: Callee | Literal["live"]) -> dict[str, Any] | str:
    if isinstance(callee, str):
        if callee != "live":
            raise ValueError(f'a callee is a Callee or "live", got {callee!r}')
        return "live"
    if isinstance(callee, LiveCallee):
        raise ValueError(
            'a LiveCallee is made by the emulator: pass "live" and drive it with '
            "press(), speak() and hang_up()"
        )
    if not isinstance(callee, Callee):
        raise TypeError(f'a callee is a Callee or "live", got {type(callee).__name__}')
    return callee_to_json(callee)


class ControlClient:
    """The emulator's control API, from Python (an async context manager).

    ``base_url``: the API's root, e.g. ``http://127.0.0.1:8765/control/v1`` (what
    ``GET /control/v1/`` calls ``control_url``); the emulator's own address
    (``http://127.0.0.1:8765``, no path) means its ``/control/v1``; any other path is
    used as given. It must be ``http://`` or ``https://`` and hold no credentials (the
    control API takes none): :class:`~rtcontrol.errors.ConfigurationError` otherwise.
    ``transport``: e.g. ``httpx.ASGITransport(build_service_app(emulator))`` to stay
    in-process. Proxies from the environment are ignored (the emulator is local).
    ``timeout``: seconds per request (default 30; the event stream waits for events as
    long as it takes).

    Every method raises :class:`~rtcontrol.errors.ControlError` when the API refuses
    the request (``status`` 400: bad input or a CALLR error token as ``code``; 404: no
    such call or app; 409: not now, e.g. the call is not live, not ringing, or over)
    and :class:`~rtcontrol.errors.ControlUnreachable` when no control API answers.
    Numbers are E.164 strings (``+33612345678``), durations virtual seconds.
    """

    def __init__(
        self,
        base_url: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = TIMEOUT,
    ) -> None:
        self.base_url = _base_url(base_url)
        self._timeout = timeout
        self._client = httpx.AsyncClient(
            base_url=self.base_url + "/",
            transport=transport,
            trust_env=False,
            timeout=timeout,
            verify=_tls(),
        )

    def __repr__(self) -> str:
        return f"ControlClient({self.base_url!r})"

    async def __aenter__(self) -> ControlClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connections (the emulator keeps running)."""
        await self._client.aclose()

    @property
    def closed(self) -> bool:
        """True once :meth:`aclose` ran (no more requests)."""
        return self._client.is_closed

    # --- plumbing ---------------------------------------------------------------------------
    def _unreachable(self, exc: httpx.HTTPError) -> ControlUnreachable:
        reason = _no_userinfo(str(exc)) or type(exc).__name__
        where = f"the emulator's control API at {self.base_url}"
        return ControlUnreachable(0, "UNREACHABLE", f"cannot reach {where}: {reason}")

    def _decode(self, response: httpx.Response) -> Any:
        return _decode(response, _hint(self.base_url))

    async def _request(self, method: str, path: str, body: Any = None) -> Any:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        return self._decode(response)

    # --- the emulator ------------------------------------------------------------------------
    async def info(self) -> ServiceInfo:
        """``GET /``: the emulator's addresses, API key, apps and newest event number."""
        return ServiceInfo.from_json(await self._request("GET", ""))

    async def apps(self) -> list[AppInfo]:
        """``GET /apps``: every app, in creation order."""
        return [AppInfo.from_json(a) for a in await self._request("GET", "apps")]

    async def create_app(
        self, url: str, *, name: str = "rtcontrol app", login: str = "", password: str = ""
    ) -> str:
        """``POST /apps``: a REALTIME10 app whose callbacks go to ``url`` (with Basic
        ``login``/``password`` when given); returns its 8-character hash. 400 when the
        emulator refuses the URL (``code`` is the CALLR error token)."""
        body = {"url": url, "name": name, "login": login, "password": password}
        return str((await self._request("POST", "apps", body))["hash"])

    async def phonebook(self) -> Phonebook:
        """``GET /phonebook``: who each number reaches."""
        return Phonebook.from_json(await self._request("GET", "phonebook"))

    async def set_phone(self, number: str, callee: Callee | Literal["live"]) -> Phonebook:
        """``PUT /phonebook/{number}``: outbound calls (``calls.realtime``, ``dialout``,
        broadcasts) to ``number`` reach ``callee`` from now on, or ring the softphone
        (``"live"``). Returns the phonebook. 400 for a number that is not E.164 or a
        callee the emulator refuses; ``ValueError`` for a :class:`LiveCallee` object."""
        body = {"callee": _callee_json(callee)}
        return Phonebook.from_json(await self._request("PUT", _phone_path(number), body))

    async def drop_phone(self, number: str) -> Phonebook:
        """``DELETE /phonebook/{number}``: the number reaches the default callee again
        (nothing happens if it was not there). Returns the phonebook."""
        return Phonebook.from_json(await self._request("DELETE", _phone_path(number)))

    # --- calls -------------------------------------------------------------------------------
    async def place_inbound(
        self,
        callee: Callee | Literal["live"] | None = None,
        *,
        app: str | None = None,
        from_: str | None = None,
        to: str | None = None,
        cli_name: str = "",
        cdr_field: str = "",
    ) -> CallInfo:
        """``POST /calls``: a call from ``from_`` (E.164 or ``BLOCKED``; default
        ``+33612345678``) to the DID ``to`` (default ``+33123456789``) reaches app
        ``app`` (default: the only REALTIME10 app) at once; returns it (``state``
        ``up``). ``callee``: who calls (a :class:`Callee` script; ``"live"``: a person,
        driven with :meth:`press`, :meth:`speak`, :meth:`hang_up`; ``None``: the
        emulator's default callee). 400 for a bad number, an unknown app (``code``
        ``PROPERTY_VALUE_ERROR``...) or no ``app`` among several."""
        body: dict[str, Any] = {"cli_name": cli_name, "cdr_field": cdr_field}
        if app is not None:
            body["app"] = app
        if from_ is not None:
            body["from"] = from_
        if to is not None:
            body["to"] = to
        if callee is not None:
            body["callee"] = _callee_json(callee)
        return CallInfo.from_json(await self._request("POST", "calls", body))

    async def place_outbound(
        self,
        to: str,
        *,
        app: str | None = None,
        ring_timeout: int = 30,
        cli: str = "BLOCKED",
        cdr_field: str = "",
    ) -> CallInfo:
        """``POST /calls/outbound``: what ``calls.realtime`` does, from the platform's
        side: dial ``to`` (ringing up to ``ring_timeout`` seconds, 5 to 300; caller id
        ``cli``: ``BLOCKED`` or E.164); when it answers, app ``app`` gets the call.
        Returns it (``request_hash`` set; ``state`` ``ringing`` while ``to`` rings the
        softphone). 400 (a CALLR error token as ``code``) for what ``calls.realtime``
        refuses."""
        body: dict[str, Any] = {"to": to, "timeout": ring_timeout, "cli": cli}
        body["cdr_field"] = cdr_field
        if app is not None:
            body["app"] = app
        return CallInfo.from_json(await self._request("POST", "calls/outbound", body))

    async def calls(self) -> list[CallInfo]:
        """``GET /calls``: every call, broadcast and ringing call, by call id."""
        return [CallInfo.from_json(c) for c in await self._request("GET", "calls")]

    async def call(self, callid: int) -> CallInfo:
        """``GET /calls/{callid}``: the call with its transcript so far (none while it
        rings). 404 ``NO_SUCH_CALL`` for an unknown call id."""
        return CallInfo.from_json(await self._request("GET", f"calls/{int(callid)}"))

    async def transcript(self, callid: int) -> Transcript:
        """``GET /calls/{callid}/transcript``: its :class:`Transcript` so far (with
        ``said``, ``ran``, ``executed``...; while the call runs, ``duration`` is the time
        so far), equal to the emulator's own once the call ended. 404 for an unknown call
        id, 409 ``RINGING`` while it rings."""
        data = await self._request("GET", f"calls/{int(callid)}/transcript")
        return Transcript.from_json(data)

    # --- a live callee -----------------------------------------------------------------------
    async def press(self, callid: int, digits: str) -> Heard:
        """``POST /calls/{callid}/dtmf``: the live callee presses ``digits`` (``0-9*#``).
        400 for other characters; 409 ``NOT_LIVE`` (a scripted callee), ``RINGING`` or
        ``ENDED``."""
        data = await self._request("POST", f"calls/{int(callid)}/dtmf", {"digits": digits})
        return Heard(bool(data["heard"]), data.get("running"))

    async def speak(self, callid: int, seconds: float) -> Heard:
        """``POST /calls/{callid}/speech``: the live callee talks for ``seconds`` (0 to
        3600; a ``record`` records it). Errors as :meth:`press`."""
        data = await self._request("POST", f"calls/{int(callid)}/speech", {"seconds": seconds})
        return Heard(bool(data["heard"]), data.get("running"))

    async def hang_up(self, callid: int) -> bool:
        """``POST /calls/{callid}/hangup``: the callee hangs up (``ended_by ==
        "callee"``; a ringing softphone call is rejected). ``False`` when the call had
        already ended. Does not wait for the end (see :meth:`events`). Not
        ``calls.hangup``: that is the app's side (``ended_by == "api"``)."""
        data = await self._request("POST", f"calls/{int(callid)}/hangup")
        return bool(data["done"])

    async def answer(self, callid: int) -> None:
        """``POST /calls/{callid}/answer``: pick up a call ringing the softphone (it
        becomes a live call). 409 ``NOT_RINGING`` when it does not ring."""
        await self._request("POST", f"calls/{int(callid)}/answer")

    async def decline(self, callid: int, as_: Literal["busy", "rejected"] = "busy") -> None:
        """``POST /calls/{callid}/decline``: refuse a ringing softphone call, reported
        to the app as ``busy`` or ``rejected``. 409 ``NOT_RINGING`` when it does not ring."""
        await self._request("POST", f"calls/{int(callid)}/decline", {"as": as_})

    # --- events ------------------------------------------------------------------------------
    async def events(
        self, callid: int | None = None, since: int = 0
    ) -> AsyncIterator[ControlEvent]:
        """The Server-Sent Events stream, as :class:`~rtcontrol.emulator.ControlEvent`
        objects (``seq`` from 1, ``type`` such as ``command.started``, ``at`` in virtual
        seconds since the call started, ``data`` as the README's table says).

        ``callid``: that call's events (``GET /calls/{callid}/events``), which end after
        its ``call.ended``; ``None``: every call's (``GET /events``), until the emulator
        closes. ``since``: only events whose ``seq`` is larger (0: from the oldest kept;
        ``(await info()).last_event``: new ones only). The iteration ends when the
        server ends the stream. Break out of it inside ``contextlib.aclosing(...)`` to
        close the connection at once. Over ``httpx.ASGITransport`` nothing comes until
        the stream ends (the transport buffers the response)."""
        path = "events" if callid is None else f"calls/{int(callid)}/events"
        timeout = httpx.Timeout(self._timeout, read=None)
        try:
            async with self._client.stream(
                "GET", path, params={"since": since}, timeout=timeout
            ) as response:
                if response.status_code != 200 or not response.headers.get(
                    "content-type", ""
                ).startswith("text/event-stream"):
                    await response.aread()
                    self._decode(response)  # raises for an error status
                    raise ControlUnreachable(
                        response.status_code,
                        "NOT_CONTROL_API",
                        f"{_shown(response.request.url)} answered {response.status_code}, "
                        "not an event stream",
                    )
                async for event in _parse_sse(response.aiter_lines()):
                    yield event
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc


@functools.cache
def _tls() -> ssl.SSLContext:
    """httpx's default TLS context, made once: loading the CA bundle takes ~20 ms, and
    the test kit makes a client per platform (on plain http:// it is never used)."""
    return httpx.create_ssl_context()


def _phone_path(number: str) -> str:
    return "phonebook/" + quote(number, safe="+")


#: ``scheme://user:password@``: a URL's credentials, never shown.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def _no_userinfo(text: str) -> str:
    """``http://user:secret@host/`` -> ``http://host/`` wherever a URL appears."""
    return _USERINFO.sub(r"\1", text)


def _shown(url: httpx.URL | str) -> str:
    return _no_userinfo(str(url))


def _base_url(given: str) -> str:
    """The control API's root from what the user gave (see :class:`ControlClient`)."""
    example = "e.g. http://127.0.0.1:8765/control/v1"
    try:
        parts = urlsplit(given.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - validates the port (ValueError when out of range)
    except ValueError:
        ok = False
    if not ok:
        raise ConfigurationError(f"base_url must be an http:// or https:// URL ({example})")
    if "@" in parts.netloc:
        raise ConfigurationError(
            "base_url must not hold credentials: the emulator's control API takes none"
        )
    path = parts.path.rstrip("/") or CONTROL_PATH
    return f"{parts.scheme}://{parts.netloc}{path}"


def _hint(base_url: str) -> str:
    """Where the emulator serves its control API, when ``base_url`` is elsewhere."""
    parts = urlsplit(base_url)
    if parts.path == CONTROL_PATH:
        return ""
    return f" (the emulator serves it at {parts.scheme}://{parts.netloc}{CONTROL_PATH})"


_NOT_JSON = object()


def _decode(response: httpx.Response, hint: str = "") -> Any:
    """The JSON of a control API answer, or its error as an exception (``hint``: where
    the control API would be, added to "no control API at ...")."""
    status = response.status_code
    url = _shown(response.request.url)
    try:
        data = response.json()
    except ValueError:
        data = _NOT_JSON
    if response.is_success and data is not _NOT_JSON:
        return data
    error = data.get("error") if isinstance(data, dict) else None
    if status >= 400 and isinstance(error, dict):
        code = str(error.get("code") or f"HTTP_{status}")
        raise ControlError(status, code, str(error.get("message") or code))
    if status == 404:
        raise ControlUnreachable(status, "NOT_CONTROL_API", f"no control API at {url}{hint}")
    if data is _NOT_JSON:
        raise ControlUnreachable(
            status, "NOT_CONTROL_API", f"the control API at {url} answered {status}, not JSON"
        )
    raise ControlUnreachable(
        status, "NOT_CONTROL_API", f"the control API at {url} answered {status}: {data!r:.200}"
    )


async def _parse_sse(lines: AsyncIterator[str]) -> AsyncIterator[ControlEvent]:
    """Server-Sent Events: the ``data`` lines up to a blank line make one event;
    comments (keep-alives), ``id`` (the event's ``seq``) and ``retry`` lines add nothing."""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data:
                yield ControlEvent.from_json(json.loads("\n".join(data)))
                data = []
            continue
        name, _, value = line.partition(":")
        if name == "data":
            data.append(value.removeprefix(" "))
    # an event cut off before its blank line is dropped, as the SSE standard says
