"""Shared helpers of the emulator tests: a scripted webhook app and small builders.

The app deliberately does not use rtcontrol.app: these tests pin the platform's
behaviour, not the framework's.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from rtcontrol.emulator import Callee, Emulator, Transcript

#: Fast enough for a 30 s virtual wait to take 0.3 s, slow enough for breaks to land.
SPEED = 100.0
TTS = "TTS|TTS_EN-GB_SERENA|"

Reply = Any  # a reply dict, a Response, or a (possibly async) function of the request body


def cmd(name: str, command_id: Any, variables: Any = None, **params: Any) -> dict[str, Any]:
    """An RT.Response body."""
    return {
        "command": name,
        "command_id": command_id,
        "params": params,
        "variables": variables if variables is not None else {},
    }


def tts(text: str) -> str:
    return TTS + text


class ScriptedApp:
    """A webhook answering each non-final POST with the next scripted reply.

    ``flow``, when given, is called for every non-final POST instead (multi-call tests).
    When the script runs out the app hangs up. Final POSTs (HANGUP and unanswered
    statuses) get ``final_reply``.
    """

    def __init__(
        self,
        *replies: Reply,
        flow: Callable[[dict[str, Any]], Any] | None = None,
        path: str = "/callr",
    ) -> None:
        self.replies = list(replies)
        self.flow = flow
        self.requests: list[dict[str, Any]] = []
        self.headers: list[Headers] = []
        self.final_reply: Response = Response(b"", status_code=200)
        self.asgi = Starlette(routes=[Route(path, self._endpoint, methods=["POST"])])
        self.url = "http://app.test" + path

    async def _endpoint(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.headers.append(request.headers)
        if body["call_status"] not in ("UP", "INCOMING_CALL"):
            return self.final_reply
        if self.flow is not None:
            reply = self.flow(body)
        elif self.replies:
            reply = self.replies.pop(0)
        else:
            reply = cmd("hangup", "script-end")
        if callable(reply) and not isinstance(reply, Response):  # Responses are ASGI callables
            reply = reply(body)
        if inspect.isawaitable(reply):
            reply = await reply
        if isinstance(reply, Response):
            return reply
        return JSONResponse(reply)


EmuFactory = Callable[..., Emulator]


def spans(t: Transcript) -> list[tuple[str, Any]]:
    """(command, virtual seconds from its start to the POST reporting it) for each command."""
    out = []
    for i, event in enumerate(t.events):
        if event.kind == "platform" and event.text.startswith("run "):
            post = next(e for e in t.events[i:] if e.kind == "request")
            out.append((event.data, post.at - event.at))
    return out


async def run_inbound(
    make_emu: EmuFactory, app: ScriptedApp, callee: Callee | None = None, **settings: Any
) -> tuple[Emulator, Transcript]:
    """Place one inbound call against ``app`` and return (emulator, transcript)."""
    emu = make_emu(app, **settings)
    hash_ = emu.create_app(app.url).hash
    transcript = await emu.place_call(hash_, callee or Callee())
    return emu, transcript
