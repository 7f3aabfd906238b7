"""A local CALLR platform: it calls your REALTIME10 app and answers JSON-RPC like CALLR.

Faithful to what the spec states, strict about what it does not accept, and explicit
about what nobody knows: every UNKNOWN/INFERENCE behaviour is a field of
:class:`EmulatorSettings`. Command durations run on a :class:`ScaledClock`, scripted
:class:`Callee` objects play the people, and every call yields a :class:`Transcript`.

As a service (:func:`build_service_app`, what ``rtcontrol emulator`` serves):
JSON-RPC, the control API under :data:`CONTROL_PATH` (calls, scripted or live callees,
the live event stream of :class:`EventBus`) and the softphone page.
:class:`ControlClient` drives that API from Python (the test kit and the CLI do).

::

    from rtcontrol.emulator import Callee, Emulator, Press, ScaledClock

    async with Emulator(transport=httpx.ASGITransport(app), clock=ScaledClock(50)) as emu:
        hash_ = emu.create_app("http://app/callr").hash
        t = await emu.place_call(hash_, Callee(actions=[Press("1")]))
        print(t.render())
"""

from __future__ import annotations

from .apps import App, RPCFault
from .broadcast import Broadcast
from .bus import ControlEvent, EventBus
from .call import EmulatedCall
from .callee import Action, Answer, Callee, HangUp, Leave, Press, Silence, Speak
from .clock import Clock, ScaledClock
from .control import CONTROL_PATH, build_service_app
from .emulator import Emulator
from .live import LiveCallee, LiveLine
from .remote import AppInfo, CallInfo, ControlClient, Heard, Phonebook, ServiceInfo
from .rooms import Rooms
from .rpc import RPC_PATH, build_rpc_app, handle_rpc
from .scripts import callee_from_json, callee_to_json, load_script
from .server import LocalServer, serve
from .settings import DEFAULT_API_KEY, DEFAULT_LOGIN, DEFAULT_PASSWORD, EmulatorSettings
from .transcript import Event, Transcript

__all__ = [
    "CONTROL_PATH",
    "DEFAULT_API_KEY",
    "DEFAULT_LOGIN",
    "DEFAULT_PASSWORD",
    "RPC_PATH",
    "Action",
    "Answer",
    "App",
    "AppInfo",
    "Broadcast",
    "CallInfo",
    "Callee",
    "Clock",
    "ControlClient",
    "ControlEvent",
    "EmulatedCall",
    "Emulator",
    "EmulatorSettings",
    "Event",
    "EventBus",
    "HangUp",
    "Heard",
    "Leave",
    "LiveCallee",
    "LiveLine",
    "LocalServer",
    "Phonebook",
    "Press",
    "RPCFault",
    "Rooms",
    "ScaledClock",
    "ServiceInfo",
    "Silence",
    "Speak",
    "Transcript",
    "build_rpc_app",
    "build_service_app",
    "callee_from_json",
    "callee_to_json",
    "handle_rpc",
    "load_script",
    "serve",
]
