"""The emulated platform: apps, calls, phonebook, and the API as Python methods.

Each public method behaves exactly like the JSON-RPC method it mirrors (same checks, same
:class:`~rtcontrol.emulator.apps.RPCFault` tokens), so a test may drive the emulator
directly or through :attr:`Emulator.rpc_app` and see the same platform.

::

    async with Emulator(transport=httpx.ASGITransport(my_app), clock=ScaledClock(50)) as emu:
        app = emu.create_app("http://app/callr")
        transcript = await emu.place_call(app.hash, Callee(actions=[Press("1")]))
        assert transcript.commands == ["read", "play", "hangup"]
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

import httpx
from starlette.types import ASGIApp

from rtcontrol.errors import CommandError
from rtcontrol.media import E164, Media, check_media

from .apps import (
    App,
    HashGenerator,
    RPCFault,
    check_callid,
    check_name,
    check_options,
    check_target,
    format_datetime,
)
from .broadcast import Broadcast
from .bus import EventBus, EventType
from .call import EmulatedCall
from .callee import Callee
from .clock import Clock, ScaledClock
from .feed import CallFeed
from .live import LiveCallee
from .rooms import Rooms
from .runtime import Leg
from .settings import EmulatorSettings
from .transcript import Transcript

__all__ = ["Emulator"]

_INTERNAL_ERROR = "Oops, Internal Error. ¯\\_(ツ)_/¯"

#: How a ringing softphone call ends its ringing.
Decision = Literal["answer", "busy", "rejected", "noanswer", "cancel", "shutdown"]


class Emulator:
    """A local CALLR platform that calls your app over HTTP.

    ``transport`` (e.g. ``httpx.ASGITransport(app)``) carries every webhook POST in-process;
    ``mounts`` maps URL prefixes to transports when several apps run; with neither, POSTs go
    over real HTTP to each app's URL. ``phonebook`` maps E.164 numbers to the callees that
    ``calls.realtime``, ``dialout`` and ``broadcast_1`` reach; other numbers reach
    ``default_callee`` (answers after 2 s, stays silent).
    """

    def __init__(
        self,
        settings: EmulatorSettings | None = None,
        *,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        mounts: Mapping[str, httpx.AsyncBaseTransport] | None = None,
        phonebook: Mapping[str, Callee] | None = None,
        default_callee: Callee | None = None,
    ) -> None:
        self.settings = settings or EmulatorSettings()
        self.clock: Clock = clock or ScaledClock(1.0)
        self.phonebook: dict[str, Callee] = dict(phonebook or {})
        self.default_callee = default_callee or Callee()
        self.apps: dict[str, App] = {}
        self.rooms = Rooms()
        #: Recording file name -> length in seconds (``record`` results, for ``play_record``).
        self.recordings: dict[str, float] = {}
        self.legs: dict[int, Leg] = {}
        self._calls: dict[int, EmulatedCall | Broadcast] = {}
        self._requests: dict[str, EmulatedCall | Broadcast] = {}
        self._hashes = HashGenerator(self.settings.seed)
        self._callid = self.settings.first_callid
        self._transport = transport
        self._mounts = dict(mounts or {})
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._rpc_app: ASGIApp | None = None
        #: Every call's events, live (the control API streams it).
        self.bus = EventBus()
        #: Numbers whose outbound calls ring a live phone (the softphone) and wait for a
        #: person to answer (``live_default``: every number not in the phonebook).
        self.live_numbers: set[str] = set()
        self.live_default = False
        self._dialing: dict[int, EmulatedCall] = {}

    @property
    def ringing(self) -> dict[int, EmulatedCall]:
        """Outbound calls ringing the softphone now, before anyone answers, declines or
        cancels (each is a call already: it rings through its :class:`LiveCallee`)."""
        for callid in [c for c, call in self._dialing.items() if not call.ringing]:
            del self._dialing[callid]
        return dict(self._dialing)

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Emulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Hang up every live call (each still gets its HANGUP POST), then close."""
        for call in list(self._calls.values()):
            if not call.ended:
                call.request_hangup("shutdown")
        tasks = set(self._tasks)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2 * self.settings.reply_timeout + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        self.bus.close()  # the event streams end (an SSE client sees its response end)

    @property
    def client(self) -> httpx.AsyncClient:
        """The HTTP client of webhook POSTs (created on first use)."""
        if self._client is None:
            self._client = httpx.AsyncClient(
                transport=self._transport,
                mounts=self._mounts or None,
                trust_env=False,
                timeout=httpx.Timeout(None),
            )
        return self._client

    @property
    def rpc_app(self) -> ASGIApp:
        """The JSON-RPC 2.0 server as an ASGI app (serve it, or use ``httpx.ASGITransport``)."""
        if self._rpc_app is None:
            from .rpc import build_rpc_app

            self._rpc_app = build_rpc_app(self)
        return self._rpc_app

    # --- services for commands ---------------------------------------------------------------
    def lookup(self, number: str) -> Callee:
        return self.phonebook.get(number, self.default_callee)

    def next_callid(self) -> int:
        callid, self._callid = self._callid, self._callid + 1
        return callid

    def hangup_callid(self, callid: int, *, reason: str) -> bool | None:
        call = self._calls.get(callid)
        if call is not None:
            return call.request_hangup(reason)
        leg = self.legs.get(callid)
        if leg is not None:
            return leg.hang_up() or self.settings.hangup_ended_call
        return None

    def _launch(self, call: EmulatedCall | Broadcast) -> None:
        self._calls[call.callid] = call
        line = None
        if isinstance(call, EmulatedCall) and isinstance(call.callee, LiveCallee):
            line = call.callee.line
        CallFeed(self.bus, call.transcript, reply_timeout=self.settings.reply_timeout, line=line)
        kind: EventType = "call.ringing" if call.callid in self._dialing else "call.started"
        self.bus.publish(kind, call.callid, 0.0, self.call_info(call.callid))
        task = asyncio.get_running_loop().create_task(call.run(), name=f"call {call.callid}")
        self._spawned(task)
        task.add_done_callback(lambda _: self._ended(call))

    def _spawned(self, task: asyncio.Task[None]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ended(self, call: EmulatedCall | Broadcast) -> None:
        self._dialing.pop(call.callid, None)
        t = call.transcript
        self.bus.publish(
            "call.ended",
            call.callid,
            t.duration,
            {
                "ended_by": t.ended_by,
                "duration": t.duration,
                "posts": len(t.requests),
                "hangup_count": t.hangup_count,
                "errors": t.errors,
                "final_status": t.final_status,
            },
        )

    # --- the softphone: live callees --------------------------------------------------------
    def is_live(self, number: str) -> bool:
        """Whether an outbound call to ``number`` rings the softphone."""
        return number in self.live_numbers or (self.live_default and number not in self.phonebook)

    def answer(self, callid: int, how: Decision = "answer") -> bool:
        """End the ringing of a softphone call: ``answer``, ``busy`` or ``rejected`` (the
        person), ``cancel`` (``calls.hangup``). False when the call is not ringing (any more).
        """
        call = self._dialing.get(callid)
        if call is None or not call.ringing:
            return False
        if how == "cancel":
            return call.request_hangup("api")
        if how == "shutdown":
            return call.request_hangup("shutdown")
        assert isinstance(call.callee, LiveCallee)
        return call.callee.line.pick_up(how)

    def _dial_live(self, app: App, number: str, opts: Mapping[str, Any], timeout: float) -> str:
        request_hash = self._hashes()
        call = EmulatedCall(
            self,
            self.client,
            app=app,
            callid=self.next_callid(),
            direction="outbound",
            callee=LiveCallee(),
            number=number,
            cli_number="" if opts["cli"] == "BLOCKED" else opts["cli"],
            cdr_field=opts["cdr_field"],
            request_hash=request_hash,
            ring_timeout=timeout,
            on_answer=self._answered,
        )
        self._requests[request_hash] = call
        self._dialing[call.callid] = call
        self._launch(call)
        return request_hash

    def _answered(self, call: EmulatedCall) -> None:
        """A softphone call is answered: ``call.started``, before its first POST."""
        self._dialing.pop(call.callid, None)
        self.bus.publish("call.started", call.callid, 0.0, self.call_info(call.callid))

    # --- apps.* --------------------------------------------------------------------------------
    def _app(self, app_hash: Any) -> App:
        if not isinstance(app_hash, str):
            raise RPCFault("INVALID_PARAM_FORMAT", "app")
        app = self.apps.get(app_hash)
        if app is None:
            raise RPCFault("PROPERTY_VALUE_ERROR", "app")
        return app

    def apps_create(self, app_type: Any, name: Any, params: Any = None) -> dict[str, Any]:
        """``apps.create``: returns the App object."""
        if not isinstance(app_type, str):
            raise RPCFault("INVALID_PARAM_FORMAT", "type")
        if app_type not in self.settings.app_types:
            raise RPCFault("INTERNAL_ERROR", message=_INTERNAL_ERROR)
        now = format_datetime(self.clock.wall())
        app = App(self._hashes(), check_name(name), app_type, date_creation=now, date_update=now)
        app.update(params)
        self.apps[app.hash] = app
        return app.to_wire()

    def apps_edit(self, app_hash: Any, name: Any = None, params: Any = None) -> dict[str, Any]:
        """``apps.edit``: ``None`` leaves the name or the params unchanged.

        All-or-nothing; live calls use the new URL and credentials from their next POST.
        """
        app = self._app(app_hash)
        draft = copy.copy(app)
        if name is not None:
            draft.name = check_name(name)
        draft.update(params)
        draft.date_update = format_datetime(self.clock.wall())
        for field in dataclasses.fields(App):
            setattr(app, field.name, getattr(draft, field.name))
        return app.to_wire()

    def apps_get_list(self, details: Any = False) -> list[dict[str, Any]]:
        """``apps.get_list``: every app (the boolean's meaning is unknown; it is checked only)."""
        if not isinstance(details, bool):
            raise RPCFault("INVALID_PARAM_FORMAT", "details")
        return [app.to_wire() for app in self.apps.values()]

    def create_app(
        self,
        url: str = "",
        *,
        name: str = "rtcontrol app",
        login: str = "",
        password: str = "",
        app_type: str = "REALTIME10",
    ) -> App:
        """Create an app the Python way; see :meth:`apps_create` for the wire semantics."""
        params = {"url": url, "login": login, "password": password}
        return self.apps[self.apps_create(app_type, name, params)["hash"]]

    # --- calls.* -------------------------------------------------------------------------------
    def _live_app(self, app_hash: Any) -> App:
        app = self._app(app_hash)
        if app.type != "REALTIME10":
            raise RPCFault("BAD_APP_TYPE")
        if not app.url:
            raise RPCFault("PROPERTY_VALUE_ERROR", "app")
        return app

    def realtime(self, app: Any, target: Any, options: Any = None) -> str:
        """``calls.realtime``: dial ``target``; returns the request hash (not the callid)."""
        live = self._live_app(app)
        checked = check_target(target)
        opts = check_options(options, ("cdr_field", "cli"))
        if self.is_live(checked.number):
            return self._dial_live(live, checked.number, opts, float(checked.timeout))
        request_hash = self._hashes()
        call = EmulatedCall(
            self,
            self.client,
            app=live,
            callid=self.next_callid(),
            direction="outbound",
            callee=self.lookup(checked.number),
            number=checked.number,
            cli_number="" if opts["cli"] == "BLOCKED" else opts["cli"],
            cdr_field=opts["cdr_field"],
            request_hash=request_hash,
            ring_timeout=float(checked.timeout),
        )
        self._requests[request_hash] = call
        self._launch(call)
        return request_hash

    def start_call(
        self,
        app: str,
        callee: Callee | None = None,
        *,
        cli_number: str = "+33612345678",
        cli_name: str = "",
        number: str = "+33123456789",
        cdr_field: str = "",
    ) -> EmulatedCall:
        """Place an inbound call from ``cli_number`` to the DID ``number``; return at once."""
        live = self._live_app(app)
        if not E164.fullmatch(number):
            raise RPCFault("PROPERTY_VALUE_ERROR", "number")
        if cli_number not in ("", "BLOCKED") and not E164.fullmatch(cli_number):
            raise RPCFault("PROPERTY_VALUE_ERROR", "cli_number")
        call = EmulatedCall(
            self,
            self.client,
            app=live,
            callid=self.next_callid(),
            direction="inbound",
            callee=callee or self.default_callee,
            number=number,
            cli_number="" if cli_number == "BLOCKED" else cli_number,
            cli_name=cli_name,
            cdr_field=cdr_field,
        )
        self._launch(call)
        return call

    async def place_call(
        self,
        app: str,
        callee: Callee | None = None,
        *,
        cli_number: str = "+33612345678",
        cli_name: str = "",
        number: str = "+33123456789",
        cdr_field: str = "",
    ) -> Transcript:
        """Place an inbound call and wait for it to end; return its transcript."""
        call = self.start_call(
            app,
            callee,
            cli_number=cli_number,
            cli_name=cli_name,
            number=number,
            cdr_field=cdr_field,
        )
        return await call.wait()

    def _known(self, callid: Any) -> EmulatedCall | Broadcast | Leg:
        checked = check_callid(callid)
        found = self._calls.get(checked) or self.legs.get(checked)
        if found is None:
            raise RPCFault("PROPERTY_VALUE_ERROR", "callid")
        return found

    def break_call(self, callid: Any, options: Any = None) -> bool:
        """``calls.realtime_break``: stop the running command of a real-time call."""
        found = self._known(callid)
        _check_reserved(options)
        if isinstance(found, Leg):
            return self.settings.break_when_idle
        return found.request_break()

    def hangup_call(self, callid: Any, options: Any = None) -> bool:
        """``calls.hangup``: ``False`` (by default) for a call that already ended."""
        found = self._known(callid)
        _check_reserved(options)
        if isinstance(found, Leg):
            return found.hang_up() or self.settings.hangup_ended_call
        return found.request_hangup("api")

    def broadcast(self, target: Any, messages: Any, options: Any = None) -> str:
        """``calls.broadcast_1``: play ``messages`` to ``target``; returns the request id."""
        checked = check_target(target)
        media = _check_messages(messages)
        opts = check_options(
            options, ("cdr_field", "cli", "loop"), max_loop=self.settings.broadcast_max_loop
        )
        request_hash = self._hashes()
        job = Broadcast(
            self,
            request_hash=request_hash,
            callid=self.next_callid(),
            target=checked,
            messages=media,
            options=opts,
            callee=self.lookup(checked.number),
        )
        self._requests[request_hash] = job
        self._launch(job)
        return request_hash

    def get_status(self, request_id: Any) -> str:
        """``calls.get_status_1``: the status of a broadcast (``broadcast_status`` table)."""
        if not isinstance(request_id, str):
            raise RPCFault("INVALID_PARAM_FORMAT", "request_id")
        job = self._requests.get(request_id)
        if not isinstance(job, Broadcast):
            raise RPCFault("PROPERTY_VALUE_ERROR", "request_id")
        return job.status

    def get_timestamp(self) -> int:
        """``system.get_timestamp``: the platform's (virtual) Unix time."""
        return int(self.clock.wall().timestamp())

    # --- inspection ---------------------------------------------------------------------------
    def call(self, callid: int) -> EmulatedCall:
        """The call with this callid (``KeyError`` if unknown or a broadcast)."""
        found = self._calls.get(callid)
        if not isinstance(found, EmulatedCall):
            raise KeyError(callid)
        return found

    def call_for_request(self, request_hash: str) -> EmulatedCall:
        """The call ``calls.realtime`` started for this request hash."""
        found = self._requests.get(request_hash)
        if not isinstance(found, EmulatedCall):
            raise KeyError(request_hash)
        return found

    async def wait_call(self, callid: int) -> Transcript:
        return await self.call(callid).wait()

    async def wait_request(self, request_hash: str) -> Transcript:
        """Wait for the call or broadcast of a request hash to end."""
        found = self._requests.get(request_hash)
        if found is None:
            raise KeyError(request_hash)
        return await found.wait()

    @property
    def calls(self) -> list[EmulatedCall]:
        return [c for c in self._calls.values() if isinstance(c, EmulatedCall)]

    def call_info(self, callid: int) -> dict[str, Any]:
        """What the control API says of a call (``KeyError`` if unknown)."""
        found = self._calls[callid]
        t = found.transcript
        running = found.running if isinstance(found, EmulatedCall) else None
        live = isinstance(found, EmulatedCall) and isinstance(found.callee, LiveCallee)
        way = t.direction
        ringing = isinstance(found, EmulatedCall) and found.ringing
        state = "ended" if found.ended else "ringing" if ringing else "up"
        return {
            "callid": callid,
            "direction": way,
            "state": state,
            "app": t.app,
            "from": t.cli_number,
            "to": t.number,
            "request_hash": t.request_hash,
            "live": live,
            "running": running,
            "ended_by": t.ended_by,
            "duration": t.duration if found.ended else self.clock.now() - found.start,
        }

    def call_ids(self) -> list[int]:
        """Every call, broadcast and ringing softphone call, in callid order."""
        return sorted(self._calls)

    def find(self, callid: int) -> EmulatedCall | Broadcast:
        """The call or broadcast with this callid (``KeyError`` if unknown)."""
        return self._calls[callid]

    @property
    def transcripts(self) -> list[Transcript]:
        """Transcripts of every call and broadcast, in creation order."""
        return [c.transcript for c in self._calls.values()]


def _check_reserved(options: Any) -> None:
    if options is not None and not isinstance(options, Mapping):
        raise RPCFault("INVALID_PARAM_FORMAT", "options")


def _check_messages(messages: Any) -> list[Media]:
    if not isinstance(messages, list):
        raise RPCFault("INVALID_PARAM_FORMAT", "messages")
    if not messages:
        raise RPCFault("PROPERTY_VALUE_ERROR", "messages")
    try:
        return [check_media("broadcast_1", "messages", m) for m in messages]
    except CommandError:
        raise RPCFault("PROPERTY_VALUE_ERROR", "messages") from None
