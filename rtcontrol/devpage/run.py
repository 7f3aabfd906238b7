"""``rtcontrol dev module:app``: the app with reload, the emulator, the page, wired.

* the emulator serves JSON-RPC, the control API and the page on one port;
* the app runs under ``uvicorn --reload`` in a child process whose environment points
  its JSON-RPC client at the emulator (``CALLR_API_URL``, ``CALLR_API_KEY``) and sets
  throw-away callback credentials (``RTCONTROL_CALLBACK_LOGIN``/``_PASSWORD``);
* the app's callback URL is registered as an emulator app (same credentials);
* outbound calls to any number outside the phonebook ring the page's softphone.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import signal
import socket
import sys
import tempfile
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from rtcontrol.emulator import DEFAULT_API_KEY, RPC_PATH, Emulator, LocalServer, ScaledClock
from rtcontrol.emulator.control import build_service_app
from rtcontrol.emulator.printer import print_events
from rtcontrol.errors import ConfigurationError

__all__ = ["DevOptions", "app_routes", "banner", "free_or_default", "run_dev", "watch_dir"]

#: How long the app may take to answer /healthz the first time (a cold import).
START_TIMEOUT = 60.0
CALLBACK_LOGIN = "callr"


@dataclass(frozen=True)
class DevOptions:
    target: str
    host: str = "127.0.0.1"
    app_port: int | None = None
    emulator_port: int | None = None
    path: str = "/callback"
    speed: float = 1.0
    open_browser: bool = False
    reload: bool = True
    log_config: dict[str, Any] | None = None
    #: The callback password (login ``callr``); none: a fresh random one.
    password: str = ""


def free_or_default(host: str, port: int | None, default: int) -> int:
    """``port`` if given (checked by the caller); else ``default`` if free; else any free."""
    if port is not None:
        return port
    for candidate in (default, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, candidate))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise ConfigurationError(f"no free port on {host}")


def watch_dir(target: str) -> Path:
    """The directory uvicorn watches: the target's top-level package, or its module's."""
    top = target.partition(":")[0].split(".")[0]
    spec = importlib.util.find_spec(top)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        return Path.cwd()
    origin = Path(spec.origin)
    return origin.parent


def _app_command(opts: DevOptions, port: int, log_file: Path | None) -> list[str]:
    command = [sys.executable, "-m", "uvicorn", opts.target, "--host", opts.host]
    command += ["--port", str(port), "--no-access-log", "--timeout-graceful-shutdown", "3"]
    if opts.reload:
        command += ["--reload", "--reload-dir", str(watch_dir(opts.target))]
    if log_file is not None:
        command += ["--log-config", str(log_file)]
    return command


async def _wait_healthy(url: str, proc: asyncio.subprocess.Process) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_TIMEOUT
    async with httpx.AsyncClient(trust_env=False, timeout=2.0) as client:
        while True:
            if proc.returncode is not None:
                raise ConfigurationError(
                    f"the app did not start (exit code {proc.returncode}; its reason is above)"
                )
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(url)).status_code < 500:
                    return
            if loop.time() > deadline:
                raise ConfigurationError(f"the app did not answer {url} in {START_TIMEOUT:g}s")
            await asyncio.sleep(0.1)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(10):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


async def _until_signalled() -> None:
    """Until SIGINT or SIGTERM: both end the dev loop cleanly (the app process too)."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


#: The probe's line on stdout: the marker, then the routes as JSON.
_ROUTES_MARK = "rtcontrol-dev-routes: "
#: Run as ``python -c`` in the app's environment: which apps the target's
#: :class:`~rtcontrol.App` answers inbound and outbound calls for (its registry's routing
#: tables: app hashes, ``null`` for every app), or ``null`` when it is no rtcontrol App.
_ROUTES_PROBE = f"""
import importlib, json, sys
from rtcontrol import App
module, _, attr = sys.argv[1].partition(":")
found = importlib.import_module(module)
for part in (attr or "app").split("."):
    found = getattr(found, part)
routes = None
if isinstance(found, App):
    routes = {{w: sorted(getattr(found.registry, w), key=str) for w in ("inbound", "outbound")}}
print("\\n{_ROUTES_MARK}" + json.dumps(routes), flush=True)
"""

#: Which app hashes an app answers, by direction (``None``: every app).
Routes = dict[str, list[str | None]]


async def app_routes(target: str, env: dict[str, str]) -> Routes | None:
    """The inbound and outbound routes of ``target``'s App, read by importing it in a
    child process (the app's environment; this process never imports user code).

    ``None`` when that cannot be told: not an rtcontrol ``App`` (an ASGI app wrapping
    one, say), or its import failed (the app's own start says why)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ROUTES_PROBE,
        target,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(START_TIMEOUT):
            out, _ = await proc.communicate()
    except TimeoutError:
        return None
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    for line in reversed(out.decode(errors="replace").splitlines()):
        if line.startswith(_ROUTES_MARK):
            with contextlib.suppress(ValueError):
                found = json.loads(line.removeprefix(_ROUTES_MARK))
                if isinstance(found, dict) and all(
                    isinstance(found.get(way), list) for way in ("inbound", "outbound")
                ):
                    return {way: list(found[way]) for way in ("inbound", "outbound")}
            return None
    return None


def answers(routes: Routes | None, way: str, app_hash: str) -> bool | None:
    """Whether the app answers ``way`` (inbound, outbound) calls of ``app_hash``; ``None``
    when unknown."""
    if routes is None:
        return None
    keys = routes.get(way, [])
    return None in keys or app_hash in keys


def banner(
    target: str,
    app_url: str,
    rpc_url: str,
    page_url: str,
    app_hash: str,
    *,
    routes: Routes | None = None,
    reload: bool = True,
) -> list[str]:
    """What ``rtcontrol dev`` prints once everything is up (each line copyable).

    The ``rtcontrol call`` commands that reach the app from another shell: inbound, and
    outbound unless ``routes`` show the app has no outbound handler (then a line says
    what it needs). ``routes`` ``None`` (unknown): both commands."""
    lines = [
        f"rtcontrol dev: {target}",
        f"app        {app_url}" + ("  (reloads on change)" if reload else ""),
        f"emulator   {rpc_url}  REALTIME10 app {app_hash}",
        f"softphone  {page_url}",
    ]
    inbound = f"rtcontrol call --inbound +33123456789 --app {app_hash} --api-url {rpc_url}"
    outbound = (
        f"rtcontrol call +33612345678 --app {app_hash} --api-url {rpc_url} "
        f"--api-key {DEFAULT_API_KEY}"
    )
    if answers(routes, "inbound", app_hash) is False:
        lines.append(
            "No inbound handler: calls to the app need @app.inbound_call, @app.on_inbound "
            "or add_flow(..., inbound=True)."
        )
    else:
        lines += ["Call the app from another shell:", inbound]
    if answers(routes, "outbound", app_hash) is False:
        lines.append(
            "No outbound handler: `rtcontrol call NUMBER` needs @app.outbound_call, "
            "@app.on_outbound or add_flow(..., outbound=True)."
        )
    else:
        lines += ["Have the app call you (outbound calls ring the softphone):", outbound]
    lines.append("Ctrl-C to stop.")
    return lines


async def run_dev(opts: DevOptions, console: Console) -> None:
    """Run until interrupted (SIGINT/SIGTERM); the app process is stopped on the way out."""
    host = opts.host
    app_port = free_or_default(host, opts.app_port, 8000)
    emu = Emulator(clock=ScaledClock(opts.speed))
    emu.live_default = True
    emulator_port = free_or_default(host, opts.emulator_port, 8765)
    server = LocalServer(build_service_app(emu), host=host, port=emulator_port)
    password = opts.password or secrets.token_urlsafe(16)
    rpc_url = f"http://{host}:{emulator_port}{RPC_PATH}"
    env = {k: v for k, v in os.environ.items() if k not in ("CALLR_LOGIN", "CALLR_PASSWORD")}
    env.update(
        CALLR_API_URL=rpc_url,
        CALLR_API_KEY=DEFAULT_API_KEY,
        RTCONTROL_CALLBACK_LOGIN=CALLBACK_LOGIN,
        RTCONTROL_CALLBACK_PASSWORD=password,
    )
    with tempfile.TemporaryDirectory(prefix="rtcontrol-dev-") as tmp:
        log_file = None
        if opts.log_config is not None:
            log_file = Path(tmp) / "logging.json"
            log_file.write_text(json.dumps(opts.log_config))
        async with emu:
            await server.start()
            proc = await asyncio.create_subprocess_exec(
                *_app_command(opts, app_port, log_file), env=env
            )
            probe = asyncio.create_task(app_routes(opts.target, env))
            printer: asyncio.Task[None] | None = None
            try:
                app_url = f"http://{host}:{app_port}{opts.path}"
                await _wait_healthy(f"http://{host}:{app_port}/healthz", proc)
                app = emu.create_app(
                    app_url, name=opts.target, login=CALLBACK_LOGIN, password=password
                )
                page_url = f"http://{host}:{emulator_port}/"
                lines = banner(
                    opts.target,
                    app_url,
                    rpc_url,
                    page_url,
                    app.hash,
                    routes=await probe,
                    reload=opts.reload,
                )
                for line in lines:
                    console.print(line, soft_wrap=True, highlight=False, markup=False)
                if opts.open_browser:
                    webbrowser.open(page_url)
                printer = asyncio.create_task(print_events(emu.bus, console))
                await _until_signalled()
            finally:
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
                if printer is not None:
                    printer.cancel()
                    await asyncio.gather(printer, return_exceptions=True)
                await _stop(proc)
                await server.stop()
