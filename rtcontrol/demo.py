"""``rtcontrol demo`` (``make run``): an example IVR and the emulator, talking over loopback.

Everything a real deployment does happens here: uvicorn serves the App, the
emulator POSTs callbacks to it with Basic auth and answers its JSON-RPC calls.
The emulator's port also serves its control API (``/control/v1/``), as
``rtcontrol emulator`` does: ``rtcontrol call --inbound`` works against the demo.
No account, no network beyond 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import errno
import importlib
import secrets
from typing import Any

from rich.console import Console
from rich.panel import Panel

from .emulator import (
    CONTROL_PATH,
    DEFAULT_API_KEY,
    RPC_PATH,
    Callee,
    Emulator,
    HangUp,
    LocalServer,
    Press,
    ScaledClock,
    Silence,
    Transcript,
    build_service_app,
)
from .errors import ConfigurationError

__all__ = [
    "DEFAULT_EMULATOR_PORT",
    "DEFAULT_PORT",
    "SCENARIOS",
    "bind_error",
    "check_port",
    "run_demo",
]

#: Ports tried when none is given; a free one is taken when they are busy.
DEFAULT_PORT = 8000
DEFAULT_EMULATOR_PORT = 8765

#: Numbers the emulator knows: call them from a second terminal to hear each caller.
PHONEBOOK = {
    "+33600000001": Callee(actions=[Press("1")], name="presses 1"),
    "+33600000002": Callee(actions=[Press("7"), Press("2")], name="presses 7, then 2"),
    "+33600000003": Callee(actions=[Silence(), Silence(), Silence()], name="stays silent"),
    "+33100000001": Callee(answer_delay=3.0, hangup_after=20.0, name="sales agent"),
    "+33100000002": Callee(answer_delay=2.0, hangup_after=15.0, name="support agent"),
}

#: The inbound calls the demo places: (title, callee).
SCENARIOS = [
    ("A caller presses 1 and is put through to sales", PHONEBOOK["+33600000001"]),
    ("A caller presses 7 (invalid), then 2 for support", PHONEBOOK["+33600000002"]),
    ("A caller says nothing: three prompts, then goodbye", PHONEBOOK["+33600000003"]),
    ("A caller hangs up during the welcome", Callee(actions=[HangUp(after=1.5)], name="hangs up")),
]


def _load(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
        factory = getattr(module, attr or "build")
    except (ImportError, AttributeError) as exc:
        raise ConfigurationError(f"cannot load {target!r}: {exc}") from None
    return factory


def bind_error(exc: OSError, host: str, port: int) -> str:
    """One line for a port that cannot be bound (``port 8000 on 127.0.0.1 is in use``)."""
    if exc.errno == errno.EADDRINUSE:
        return f"port {port} on {host} is in use"
    if exc.errno == errno.EACCES:
        return f"port {port} on {host}: permission denied (ports below 1024 need privileges)"
    return f"cannot listen on {host}:{port}: {exc.strerror or exc}"


def check_port(host: str, port: int) -> None:
    """Raise ConfigurationError (one line) when ``host:port`` cannot be bound now.

    A probe, closed at once: :class:`LocalServer` binds again for real.
    """
    import socket

    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigurationError(bind_error(exc, host, port)) from None


async def _bind(app: Any, port: int | None, default: int) -> LocalServer:
    """Serve on ``port``; with no port given, on ``default`` or else any free port.

    A port the user chose is never swapped for another: a busy one is an error.
    """
    host = "127.0.0.1"
    if port is None:
        try:
            check_port(host, default)
            port = default
        except ConfigurationError:
            port = 0  # the default is taken: any free port will do for a demo
    else:
        check_port(host, port)
    server = LocalServer(app, host=host, port=port)
    await server.start()
    return server


async def run_demo(
    target: str,
    port: int | None,
    emulator_port: int | None,
    speed: float,
    keep_running: bool,
    console: Console,
) -> list[Transcript]:
    """Run the demo; ``port``/``emulator_port`` ``None``: the defaults, or free ports."""
    from .rpc import CallrClient

    password = secrets.token_urlsafe(12)
    app = _load(target)(callback_login="callr", callback_password=password)
    emu = Emulator(clock=ScaledClock(speed), phonebook=PHONEBOOK)
    try:
        rpc_server = await _bind(build_service_app(emu), emulator_port, DEFAULT_EMULATOR_PORT)
    except BaseException:
        await emu.aclose()
        raise
    try:
        app_server = await _bind(app, port, DEFAULT_PORT)
    except BaseException:
        await emu.aclose()
        await rpc_server.stop()
        raise
    api_url = rpc_server.url + RPC_PATH
    app.client = CallrClient(api_url=api_url, api_key=DEFAULT_API_KEY)
    app_hash = emu.create_app(
        app_server.url + "/callback", name="demo", login="callr", password=password
    ).hash
    control_url = f"{rpc_server.url}{CONTROL_PATH}/"
    console.rule("[bold]rtcontrol demo")
    for line in _banner(
        target, f"{app_server.url}/callback", api_url, control_url, app_hash, speed
    ):
        console.print(line, soft_wrap=True, highlight=False)  # whole, whatever the width
    transcripts: list[Transcript] = []
    try:
        calls = [emu.start_call(app_hash, callee) for _, callee in SCENARIOS]
        for (title, _), call in zip(SCENARIOS, calls, strict=True):
            transcript = await call.wait()
            transcripts.append(transcript)
            console.print(Panel(transcript, title=title))
        title = "An outbound call: app.start_call(...) to +33600000001, who presses 1"
        request_hash = await app.start_call("+33600000001", app_hash=app_hash)
        transcript = await emu.wait_request(request_hash)
        transcripts.append(transcript)
        console.print(Panel(transcript, title=title))
        if keep_running:
            console.print(
                "Still serving. From a second terminal, place another call: "
                f"[bold].venv/bin/rtcontrol call +33600000002 --app {app_hash} "
                f"--api-url {api_url} --api-key {DEFAULT_API_KEY}[/]  (Ctrl-C to stop)",
                soft_wrap=True,  # one line, so it can be copied as is
            )
            console.print(
                "Or have a caller call the app: "
                f"[bold].venv/bin/rtcontrol call --inbound +33123456789 --app {app_hash} "
                f"--api-url {api_url}[/]",
                soft_wrap=True,
            )
            await _print_new_calls(emu, console, seen=len(emu.transcripts))
    finally:
        await emu.aclose()
        await app_server.stop()
        await rpc_server.stop()
    return transcripts


def _banner(
    target: str, callback_url: str, api_url: str, control_url: str, app_hash: str, speed: float
) -> list[str]:
    """The demo's first lines (rich markup), each printed whole: never cut to a width."""
    return [
        f"app [bold]{target}[/] on {callback_url}",
        f"CALLR emulator on {api_url}  (REALTIME10 app [bold]{app_hash}[/])",
        f"its control API on {control_url}  (rtcontrol call --inbound)",
        f"time runs {speed:g}x faster than real time",
    ]


async def _print_new_calls(emu: Emulator, console: Console, seen: int) -> None:
    """Print each later call's transcript when it ends."""
    printed: set[int] = {t.callid for t in emu.transcripts[:seen]}
    while True:
        for call in emu.calls:
            if call.ended and call.callid not in printed:
                printed.add(call.callid)
                console.print(Panel(call.transcript, title=f"call {call.callid}"))
        await asyncio.sleep(0.5)
