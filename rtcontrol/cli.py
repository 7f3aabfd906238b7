"""The ``rtcontrol`` command: serve apps, drive the CALLR API, run the emulator, demo.

API commands read ``CALLR_API_URL``, ``CALLR_API_KEY`` (or ``CALLR_LOGIN`` and
``CALLR_PASSWORD``), or the matching options. Errors are one readable line and a
non-zero exit: 1 for API and configuration errors, 2 for bad usage.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from .errors import AuthenticationError, OutcomeUnknown, RtcontrolError, TransportError

__all__ = ["app", "main"]

T = TypeVar("T")

app = typer.Typer(
    name="rtcontrol",
    help="Real-time call control for the CALLR voice API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
apps_cli = typer.Typer(help="REALTIME10 apps.", no_args_is_help=True)
app.add_typer(apps_cli, name="apps")
console = Console()
err = Console(stderr=True)

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="CALLR_API_URL", help="JSON-RPC URL.")
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", envvar="CALLR_API_KEY", help="API key.", show_default=False),
]


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}")
    return typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    """Run one API operation; turn rtcontrol errors into one line and exit 1."""
    try:
        return asyncio.run(coro)
    except AuthenticationError:
        raise _fail(
            "the API refused the credentials (check CALLR_API_KEY or CALLR_LOGIN)"
        ) from None
    except OutcomeUnknown as exc:
        raise _fail(f"{exc} — check before retrying") from None
    except TransportError as exc:
        raise _fail(f"cannot reach the API: {exc}") from None
    except RtcontrolError as exc:
        raise _fail(str(exc)) from None


async def _with_client(
    api_url: str | None, api_key: str | None, action: Callable[[Any], Awaitable[T]]
) -> T:
    from .rpc import CallrClient

    overrides: dict[str, Any] = {"api_url": api_url, "api_key": api_key}
    client = CallrClient.from_env(**{k: v for k, v in overrides.items() if v})
    async with client:
        return await action(client)


# ---------------------------------------------------------------- serving


def _import_path() -> None:
    """Like uvicorn: modules in the current directory (``apps.menu``) are importable."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


@app.command()
def serve(
    target: Annotated[str, typer.Argument(help="module:attribute of the App, e.g. apps.menu:app")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    proxy: Annotated[
        str, typer.Option(help="Address of the reverse proxy whose X-Forwarded-* headers to trust.")
    ] = "127.0.0.1",
) -> None:
    """Serve an app with uvicorn (one worker; run several behind nginx with Redis)."""
    import uvicorn

    _import_path()
    uvicorn.run(
        target,
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=proxy,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=25,
        server_header=False,
    )


# ---------------------------------------------------------------- API commands


@app.command()
def ping(api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """Check the credentials (system.get_timestamp)."""
    stamp = _run(_with_client(api_url, api_key, lambda c: c.get_timestamp()))
    console.print(f"[green]ok[/] — API time {stamp}")


@app.command("call")
def call_(
    number: Annotated[str, typer.Argument(help="E.164 number to call, e.g. +33612345678.")],
    app_hash: Annotated[
        str, typer.Option("--app", envvar="RTCONTROL_APP_HASH", help="REALTIME10 app hash.")
    ],
    timeout: Annotated[int, typer.Option(help="Ring timeout, 5..300 s.")] = 30,
    cli: Annotated[str, typer.Option(help='Caller id: "BLOCKED" or an E.164 number.')] = "BLOCKED",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Start an outbound real-time call (calls.realtime)."""
    from .media import Target
    from .rpc import RealtimeOptions

    async def action(client: Any) -> str:
        result: str = await client.realtime(
            app_hash, Target(number=number, timeout=timeout), RealtimeOptions(cli=cli)
        )
        return result

    try:
        request_hash = _run(_with_client(api_url, api_key, action))
    except ValueError as exc:  # pydantic: a bad number or timeout
        raise _fail(str(exc).splitlines()[-1].strip(), 2) from None
    console.print(f"call requested: [bold]{request_hash}[/]")


@app.command("break")
def break_(
    callid: Annotated[int, typer.Argument(help="Call id (from the callback).")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Interrupt the command a call is running (calls.realtime_break)."""
    ok = _run(_with_client(api_url, api_key, lambda c: c.realtime_break(callid)))
    console.print("break sent" if ok else "[yellow]nothing to break[/]")


@app.command()
def hangup(
    callid: Annotated[int, typer.Argument(help="Call id.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Hang up a call (calls.hangup)."""
    ok = _run(_with_client(api_url, api_key, lambda c: c.hangup(callid)))
    console.print("hung up" if ok else "[yellow]call already ended[/]")


@app.command()
def broadcast(
    number: Annotated[str, typer.Argument(help="E.164 number to call.")],
    messages: Annotated[list[str], typer.Argument(help="Texts to speak, or media ids.")],
    voice: Annotated[str, typer.Option(help="TTS voice.")] = "TTS_EN-GB_SERENA",
    wait: Annotated[bool, typer.Option(help="Wait for the final status.")] = True,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Call a number and play messages (calls.broadcast_1); show progress until it ends."""
    from .media import tts

    media: list[int | str] = [int(m) if m.isdigit() else tts(m, voice) for m in messages]

    async def action(client: Any) -> tuple[str, str]:
        request_id: str = await client.broadcast(number, media)
        status = "PENDING"
        if wait:
            with console.status(f"broadcast {request_id}: {status}") as spinner:
                for _ in range(600):
                    status = await client.get_status(request_id)
                    spinner.update(f"broadcast {request_id}: {status}")
                    if status not in ("PENDING", "DIALING"):
                        break
                    await asyncio.sleep(1.0)
        return request_id, status

    request_id, status = _run(_with_client(api_url, api_key, action))
    console.print(f"broadcast [bold]{request_id}[/]: {status}")


@app.command()
def status(
    request_id: Annotated[str, typer.Argument(help="Request id returned by broadcast.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Status of a broadcast (calls.get_status_1)."""
    console.print(_run(_with_client(api_url, api_key, lambda c: c.get_status(request_id))))


@apps_cli.command("create")
def apps_create(
    name: Annotated[str, typer.Argument(help="App name.")],
    url: Annotated[str, typer.Option(help="Callback URL, e.g. https://ivr.example.com/callback.")],
    login: Annotated[str, typer.Option(envvar="RTCONTROL_CALLBACK_LOGIN")] = "",
    password: Annotated[
        str, typer.Option(envvar="RTCONTROL_CALLBACK_PASSWORD", show_default=False)
    ] = "",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
) -> None:
    """Create a REALTIME10 app pointing at your callback URL."""
    info = _run(
        _with_client(
            api_url, api_key, lambda c: c.create_app(name, url, login=login, password=password)
        )
    )
    console.print(f"created app [bold]{info.hash}[/] ({info.name})")


@apps_cli.command("list")
def apps_list(api_url: ApiUrl = None, api_key: ApiKey = None) -> None:
    """List REALTIME10 apps."""
    from rich.table import Table

    found = _run(_with_client(api_url, api_key, lambda c: c.list_apps()))
    table = Table("hash", "name", "url")
    for info in found:
        table.add_row(info.hash, info.name, getattr(info, "url", "") or "")
    console.print(table)


# ---------------------------------------------------------------- emulator and demo


@app.command()
def emulator(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8765,
    speed: Annotated[float, typer.Option(help="Virtual seconds per real second.")] = 1.0,
) -> None:
    """Run the local CALLR emulator (JSON-RPC at /json-rpc/v1.1/, API key emulator-api-key)."""
    from .emulator import DEFAULT_API_KEY, Emulator, ScaledClock, serve

    def ready(server: Any) -> None:
        console.print(f"CALLR emulator on [bold]{server.url}/json-rpc/v1.1/[/]")
        console.print(
            f"  export CALLR_API_URL={server.url}/json-rpc/v1.1/ CALLR_API_KEY={DEFAULT_API_KEY}"
        )

    asyncio.run(serve(Emulator(clock=ScaledClock(speed)), host=host, port=port, on_ready=ready))


@app.command()
def demo(
    target: Annotated[
        str, typer.Option("--app", help="module:factory building the App.")
    ] = "apps.menu:build",
    port: Annotated[int, typer.Option(help="Port of the app (0: any free port).")] = 8000,
    emulator_port: Annotated[int, typer.Option(help="Port of the emulator's JSON-RPC.")] = 8765,
    speed: Annotated[float, typer.Option(help="Virtual seconds per real second.")] = 8.0,
    keep_running: Annotated[bool, typer.Option(help="Keep serving after the demo calls.")] = True,
) -> None:
    """Serve an example app and the emulator on loopback, place calls, print transcripts."""
    from .demo import run_demo

    _import_path()
    try:
        asyncio.run(run_demo(target, port, emulator_port, speed, keep_running, console))
    except KeyboardInterrupt:
        pass
    except RtcontrolError as exc:
        raise _fail(str(exc)) from None


def main() -> None:
    app()


if __name__ == "__main__":  # python -m rtcontrol.cli
    main()
