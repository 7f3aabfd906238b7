"""The ``rtcontrol`` command: serve apps, drive the CALLR API, run the emulator, demo.

API commands read ``CALLR_API_URL``, ``CALLR_API_KEY`` (or ``CALLR_LOGIN`` and
``CALLR_PASSWORD``), or the matching options. Every error is one line on stderr,
``error: ...``, never wrapped, and a non-zero exit: 1 for API and configuration
errors (credentials, settings, a busy port, an unreachable store), 2 for bad input
(usage, a number, a voice, an app hash or a callid the command refuses).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from pydantic import ValidationError
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

try:  # typer vendors click since 0.2x
    from typer._click import core as click_core
    from typer._click import exceptions as click_errors
except ImportError:  # pragma: no cover - an older typer runs on click itself
    from click import core as click_core  # type: ignore[no-redef]
    from click import exceptions as click_errors  # type: ignore[no-redef]

from .errors import (
    AuthenticationError,
    CommandError,
    ConfigurationError,
    OutcomeUnknown,
    RtcontrolError,
    StoreError,
    TransportError,
)

if TYPE_CHECKING:
    from .emulator import Callee, ControlClient

__all__ = ["app", "main"]

T = TypeVar("T")

#: Words a user may put after a flag that takes none (``--wait yes``): refused, not
#: taken as the next argument (where ``yes`` would become a message to speak).
_BOOL_WORDS = frozenset({"yes", "no", "y", "n", "true", "false", "on", "off", "1", "0"})


#: ``scheme://user:password@``: the credentials part of a URL, never printed.
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s]*@")


def _without_userinfo(text: str) -> str:
    """``http://user:secret@host/`` -> ``http://host/`` wherever a URL appears."""
    return _USERINFO.sub(r"\1", text)


def _error_line(message: str) -> None:
    """``error: message`` on stderr: one line, whatever the terminal's width, with no
    URL's credentials in it."""
    text = _without_userinfo(" ".join(message.split()))
    typer.echo(f"{typer.style('error:', fg='red', bold=True)} {text}", err=True)


def _warning_line(message: str) -> None:
    """``warning: message`` on stderr, one line, like :func:`_error_line`."""
    text = _without_userinfo(" ".join(message.split()))
    typer.echo(f"{typer.style('warning:', fg='yellow', bold=True)} {text}", err=True)


def _refuse_flag_values(
    command: click_core.Command, ctx: click_core.Context, args: Sequence[str], *, group: bool
) -> None:
    """``--help yes``, ``--wait no``: a flag given a value is a usage error."""
    flags = {
        name
        for param in command.get_params(ctx)
        if getattr(param, "is_flag", False)
        for name in (*param.opts, *param.secondary_opts)
    }
    for here, following in itertools.pairwise(args):
        if here == "--" or (group and not here.startswith("-")):
            return  # the arguments that follow belong to a subcommand
        if here in flags and following.lower() in _BOOL_WORDS:
            raise click_errors.UsageError(
                f"{here} is a flag and takes no value, got {following!r}", ctx
            )


class _Command(TyperCommand):
    def parse_args(self, ctx: click_core.Context, args: list[str]) -> list[str]:
        _refuse_flag_values(self, ctx, args, group=False)
        return super().parse_args(ctx, args)


class _Group(TyperGroup):
    """Usage errors as one ``error:`` line (exit 2), like every other error."""

    def parse_args(self, ctx: click_core.Context, args: list[str]) -> list[str]:
        _refuse_flag_values(self, ctx, args, group=True)
        return super().parse_args(ctx, args)

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, windows_expand_args, **extra)
        except click_errors.NoArgsIsHelpError as exc:  # the help was printed
            sys.exit(exc.exit_code)
        except click_errors.ClickException as exc:
            message = exc.format_message()
            ctx = getattr(exc, "ctx", None)
            if isinstance(exc, click_errors.UsageError) and ctx is not None:
                message = f"{message.rstrip('.')} (see '{ctx.command_path} --help')"
            _error_line(message)
            sys.exit(exc.exit_code)
        except typer.Abort:
            _error_line("aborted")
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    name="rtcontrol",
    cls=_Group,
    help="Real-time call control for the CALLR voice API.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
apps_cli = typer.Typer(cls=_Group, help="REALTIME10 apps.", no_args_is_help=True)
app.add_typer(apps_cli, name="apps")
#: Results on stdout; rich never wraps a line (an id or a URL must stay copyable).
console = Console(soft_wrap=True)

ApiUrl = Annotated[
    str | None, typer.Option("--api-url", envvar="CALLR_API_URL", help="JSON-RPC URL.")
]
ApiKey = Annotated[
    str | None,
    typer.Option("--api-key", help="API key (default: CALLR_API_KEY).", show_default=False),
]
ApiLogin = Annotated[
    str | None,
    typer.Option(
        "--api-login",
        help="API login, instead of a key (default: CALLR_LOGIN).",
        show_default=False,
    ),
]
ApiPassword = Annotated[
    str | None,
    typer.Option(
        "--api-password",
        help="API password (default: CALLR_PASSWORD; prefer the variable: "
        "a command line is visible to other users).",
        show_default=False,
    ),
]
Port = Annotated[int, typer.Option(min=0, max=65535, help="Port to bind (0: any free port).")]


def _fail(message: str, code: int = 1) -> typer.Exit:
    _error_line(message)
    return typer.Exit(code)


# ---------------------------------------------------------------- bad input (exit 2)

_PHONE_LIKE = re.compile(r"\+?[0-9][0-9 ().-]{5,}")
_E164_IN_TEXT = re.compile(r"\+[0-9]{6,15}")
_HASH = re.compile(r"[A-Z0-9]{8}")


def _mask_number(text: str) -> str:
    """``+33612345678`` -> ``+33*******78``: enough to spot a typo, not to dial."""
    keep = 3 if text.startswith("+") else 2
    return text[:keep] + re.sub(r"[0-9]", "*", text[keep:-2]) + text[-2:]


def _shown(value: Any, name: str) -> str:
    """A refused value as the error line shows it: secrets hidden, numbers masked."""
    if any(word in name.lower() for word in ("password", "key")):
        return "(hidden)"
    if isinstance(value, str) and _PHONE_LIKE.fullmatch(value.strip()):
        return repr(_mask_number(value.strip()))
    return repr(value)


def _scrub(message: str) -> str:
    """Mask the E.164 numbers inside a message from elsewhere (an API error)."""
    return _E164_IN_TEXT.sub(lambda m: _mask_number(m.group()), message)


def _bad_value(exc: CommandError, names: Mapping[str, str]) -> str:
    """``NUMBER must be an E.164 number ..., got '06******78'``: the option or argument
    the user typed, what it must be, and what was given."""
    param = exc.param
    leaf = param.rsplit(".", 1)[-1]
    name = names.get(param) or names.get(leaf) or names.get(leaf.split("[", 1)[0])
    if name is None:
        name = f"{exc.command}: {param}" if exc.command else param
    allowed = str(exc.allowed).removeprefix("must be ")
    return f"{name} must be {allowed}, got {_shown(exc.value, name)}"


@contextmanager
def _bad_input(names: Mapping[str, str], command: str = "") -> Iterator[None]:
    """Refusals of the builders (CommandError, pydantic's ValidationError, ValueError)
    become one line naming the option or argument, and exit 2."""
    from .rpc.models import command_error

    try:
        yield
    except CommandError as exc:
        raise _fail(_bad_value(exc, names), 2) from None
    except ValidationError as exc:
        raise _fail(_bad_value(command_error(command, exc), names), 2) from None
    except ValueError as exc:
        raise _fail(_scrub(str(exc)), 2) from None


def _check_hash(name: str, value: str, what: str) -> str:
    if not _HASH.fullmatch(value):
        example = "4346423A" if "app" in what else "4260XMAQ"
        raise CommandError(
            "", name, f"{what} of 8 capital letters and digits (e.g. {example})", value
        )
    return value


def _positive(name: str, value: float) -> float:
    if not value > 0 or value == float("inf"):
        raise _fail(f"{name} must be a positive number, got {value:g}", 2)
    return value


# ---------------------------------------------------------------- API errors (exit 1)


def _run(coro: Coroutine[Any, Any, T], names: Mapping[str, str] | None = None) -> T:
    """Run one API operation: rtcontrol errors become one line and exit 1 (2 for a
    parameter the client refused before sending)."""
    # The client's retry warnings would add lines to the one error line.
    logging.getLogger("rtcontrol").addHandler(logging.NullHandler())
    from .rpc.models import command_error

    try:
        return asyncio.run(coro)
    except CommandError as exc:  # a parameter the client refused before sending
        raise _fail(_bad_value(exc, names or {}), 2) from None
    except ValidationError as exc:
        raise _fail(_bad_value(command_error("", exc), names or {}), 2) from None
    except AuthenticationError:
        raise _fail(
            "the API refused the credentials (check --api-key or CALLR_API_KEY, "
            "or --api-login/--api-password or CALLR_LOGIN/CALLR_PASSWORD)"
        ) from None
    except OutcomeUnknown as exc:
        raise _fail(f"{_scrub(str(exc))} — check before retrying") from None
    except TransportError as exc:
        message = str(exc)
        if "cannot reach the API" not in message:
            message = f"cannot reach the API: {message}"
        raise _fail(message) from None
    except RtcontrolError as exc:
        raise _fail(_scrub(str(exc))) from None


def _credentials(
    api_key: str | None, login: str | None, password: str | None
) -> dict[str, str | None]:
    """Options win over the environment as a whole; a login given as an option may
    take its password from ``CALLR_PASSWORD`` (kept off the command line)."""
    if not (api_key or login or password):
        return {}
    if api_key and (login or password):
        raise _fail("give --api-key or --api-login/--api-password, not both", 2)
    if login and not password:
        password = os.environ.get("CALLR_PASSWORD") or None
        if not password:
            raise _fail("--api-login needs --api-password (or CALLR_PASSWORD)", 2)
    if password and not login:
        raise _fail("--api-password needs --api-login", 2)
    return {"api_key": api_key, "login": login, "password": password}


async def _with_client(
    api_url: str | None,
    credentials: Mapping[str, str | None],
    action: Callable[[Any], Awaitable[T]],
) -> T:
    from .rpc import CallrClient

    overrides: dict[str, Any] = {"api_url": api_url, **credentials}
    try:
        client = CallrClient.from_env(**{k: v for k, v in overrides.items() if v})
    except ValueError as exc:  # urlsplit refused the URL (e.g. "http://[::1")
        raise ConfigurationError(f"api_url must be an http:// or https:// URL ({exc})") from None
    async with client:
        return await action(client)


# ---------------------------------------------------------------- loading and binding


def _import_path() -> None:
    """Like uvicorn: modules in the current directory (``apps.menu``) are importable."""
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)


def _import_target(target: str, *, name: str, default_attr: str | None = None) -> Any:
    """``module:attribute``; a target that does not exist is bad input (exit 2), an
    app whose import fails on its settings a configuration error (exit 1)."""
    import importlib

    module_name, _, attr = target.partition(":")
    attr = attr or default_attr or ""
    if not module_name or not attr or not all(p.isidentifier() for p in module_name.split(".")):
        raise _fail(f"{name} must be module:attribute (e.g. apps.menu:app), got {target!r}", 2)
    _import_path()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise _fail(
                f"cannot import {module_name!r}: no module {exc.name!r} "
                "(run rtcontrol from the directory that holds it)",
                2,
            ) from None
        raise _fail(f"cannot import {module_name!r}: {exc}") from None
    except RtcontrolError as exc:
        raise _fail(f"{module_name}: {exc}") from None
    try:
        found = module
        for part in attr.split("."):
            found = getattr(found, part)
    except AttributeError:
        raise _fail(f"module {module_name!r} has no attribute {attr!r}", 2) from None
    return found


def _listen(host: str, port: int) -> Any:
    """The server socket uvicorn will use, bound now so a busy port is one line."""
    import socket

    from .demo import bind_error

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise _fail(bind_error(exc, host, port)) from None
    except OverflowError:
        sock.close()
        raise _fail(f"--port must be 0..65535, got {port}", 2) from None
    return sock


# ---------------------------------------------------------------- serving


class LogLevel(StrEnum):
    critical = "critical"
    error = "error"
    warning = "warning"
    info = "info"
    debug = "debug"
    trace = "trace"


def _log_config(level: LogLevel) -> dict[str, Any]:
    """uvicorn's logging, plus rtcontrol's loggers (``rtcontrol.callback``: one INFO
    line per callback) on the same stderr handler and level."""
    from uvicorn.config import LOG_LEVELS, LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["rtcontrol"] = {
        "handlers": ["default"],
        "level": LOG_LEVELS[level.value],
        "propagate": False,
    }
    return config


async def _ping_store(settings: Any) -> None:
    from .store import open_store

    store = open_store(
        settings.store_url,
        timeout=settings.store_timeout,
        connect_timeout=settings.store_connect_timeout,
    )
    try:
        await store.ping()
    finally:
        await store.close()


def _check_app(found: Any) -> None:
    """What the app would refuse at start-up, refused now in one line: callback
    credentials, several workers on the memory store, an unreachable store."""
    from .app import App

    if not isinstance(found, App):
        return  # an ASGI app of yours: uvicorn's start-up tells
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # the serving process logs its own warnings
    try:
        found.asgi()
        if found.store.shared:
            asyncio.run(_ping_store(found.settings))
    except StoreError as exc:
        raise _fail(
            f"cannot start: the store is unreachable ({exc}); check RTCONTROL_STORE_URL"
        ) from None
    except RtcontrolError as exc:
        raise _fail(str(exc)) from None
    finally:
        logging.disable(previous)


def _run_uvicorn(config: Any, sock: Any) -> bool:
    """Serve until interrupted; False when the app (or a worker) failed to start."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE
    from uvicorn.supervisors import ChangeReload, Multiprocess

    server = uvicorn.Server(config)
    try:
        if config.should_reload:
            ChangeReload(config, target=server.run, sockets=[sock]).run()
            return True
        if config.workers > 1:
            supervisor = Multiprocess(config, sockets=[sock])
            supervisor.run()
            return not any(p.exitcode == STARTUP_FAILURE for p in supervisor.processes)
        try:
            server.run(sockets=[sock])
        except SystemExit as exc:
            if exc.code not in (0, None):
                return False
        return server.started
    except KeyboardInterrupt:
        return True
    finally:
        sock.close()


@app.command(cls=_Command)
def serve(
    target: Annotated[str, typer.Argument(help="module:attribute of the App, e.g. apps.menu:app")],
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Port = 8000,
    proxy: Annotated[
        str, typer.Option(help="Address of the reverse proxy whose X-Forwarded-* headers to trust.")
    ] = "127.0.0.1",
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            envvar="WEB_CONCURRENCY",
            help="Worker processes, 1 by default (more than one needs "
            "RTCONTROL_STORE_URL=redis://...).",
            show_default=False,
        ),
    ] = None,
    reload: Annotated[
        bool, typer.Option(help="Restart when the code changes (development).")
    ] = False,
    log_level: Annotated[
        LogLevel,
        typer.Option(
            case_sensitive=False,
            help="info: one line per callback (logger rtcontrol.callback); warning: quieter.",
        ),
    ] = LogLevel.info,
    access_log: Annotated[bool, typer.Option(help="Also uvicorn's line per HTTP request.")] = False,
    login: Annotated[
        str | None,
        typer.Option(
            help="Basic login the platform sends (default: RTCONTROL_CALLBACK_LOGIN).",
            show_default=False,
        ),
    ] = None,
    password: Annotated[
        str | None,
        typer.Option(
            help="Its password (default: RTCONTROL_CALLBACK_PASSWORD; prefer the variable).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Serve an app with uvicorn; checks its configuration first."""
    import uvicorn

    if reload and workers is not None and workers > 1:
        raise _fail("--reload and --workers cannot be combined: reload runs one worker", 2)
    # The app reads its settings from the environment when it is built, here and in
    # each worker process: the options go there.
    for variable, value in (
        ("RTCONTROL_WORKERS", None if workers is None else str(workers)),
        ("RTCONTROL_CALLBACK_LOGIN", login),
        ("RTCONTROL_CALLBACK_PASSWORD", password),
    ):
        if value is not None:
            os.environ[variable] = value
    _check_app(_import_target(target, name="TARGET"))
    config = uvicorn.Config(  # configures logging
        target,
        host=host,
        port=port,
        workers=workers or 1,
        reload=reload,
        log_config=_log_config(log_level),
        log_level=log_level.value,
        access_log=access_log,
        proxy_headers=True,
        forwarded_allow_ips=proxy,
        timeout_keep_alive=75,
        timeout_graceful_shutdown=25,
        server_header=False,
    )
    sock = _listen(host, port)
    config.port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    logging.getLogger("uvicorn.error").info(
        "serving %s on http://%s:%d with %d worker%s (Press CTRL+C to quit)",
        target,
        shown,
        config.port,
        config.workers,
        "" if config.workers == 1 else "s",
    )
    if not _run_uvicorn(config, sock):
        raise _fail("the app did not start (its reason is logged above)")


# ---------------------------------------------------------------- API commands


@app.command(cls=_Command)
def ping(
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Check the credentials (system.get_timestamp)."""
    creds = _credentials(api_key, api_login, api_password)
    stamp = _run(_with_client(api_url, creds, lambda c: c.get_timestamp()))
    console.print(f"[green]ok[/] — API time {stamp}")


_CALL_NAMES = {
    "number": "NUMBER",
    "target": "NUMBER",
    "timeout": "--timeout",
    "cli": "--cli",
    "app": "--app",
    "callid": "CALLID",
}


def _control_url(api_url: str | None) -> str:
    """The emulator's control API next to its JSON-RPC URL (``/control/v1``).

    Refused like ``ping`` refuses the same URL (exit 1): a URL ``urlsplit`` cannot
    parse, and one holding credentials (which would be echoed in every later line).
    """
    from urllib.parse import urlsplit

    url = api_url or os.environ.get("CALLR_API_URL") or ""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - validates the port (ValueError when out of range)
    except ValueError as exc:
        raise _fail(f"api_url must be an http:// or https:// URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _fail(
            "--inbound needs the emulator's address: --api-url or CALLR_API_URL "
            "(e.g. http://127.0.0.1:8765/json-rpc/v1.1/)"
        )
    if "@" in parts.netloc:
        raise _fail("api_url must not hold credentials: the emulator's control API takes none")
    return f"{parts.scheme}://{parts.netloc}/control/v1"


def _control(url: str, action: Callable[[ControlClient], Awaitable[T]]) -> T:
    """Run ``action(client)`` with a :class:`~rtcontrol.emulator.ControlClient` of the
    control API at ``url``; its failures are one error line (2 when the API refused the
    input with 400, 1 when it cannot be reached, is not the emulator's, or refused
    anything else)."""
    from .emulator import ControlClient
    from .errors import ControlError, ControlUnreachable

    async def run() -> T:
        async with ControlClient(url) as client:
            return await action(client)

    try:
        return asyncio.run(run())
    except ControlUnreachable as exc:
        hint = " (is --api-url the rtcontrol emulator?)" if exc.status == 404 else ""
        raise _fail(f"{_scrub(exc.message)}{hint}") from None
    except ControlError as exc:
        raise _fail(_scrub(exc.message), 2 if exc.status == 400 else 1) from None


def _inbound(
    did: str, app_hash: str, caller: str, callee_file: str | None, api_url: str | None
) -> None:
    from .emulator.scripts import load_script
    from .media import Target

    names = {"number": "NUMBER", "target": "NUMBER", "app": "--app"}
    with _bad_input(names, "calls.realtime"):
        Target(number=did)
        _check_hash("--app", app_hash, "an app hash")
    if caller != "BLOCKED":
        with _bad_input({"number": "--from", "target": "--from"}):
            Target(number=caller)
    callee: Callee | None = None  # None: the emulator's default callee
    if callee_file is not None:
        try:
            default, _ = load_script(callee_file)
        except OSError as exc:
            raise _fail(f"--callee: cannot read {callee_file}: {exc.strerror or exc}", 2) from None
        except ValueError as exc:
            raise _fail(f"--callee: {exc}", 2) from None
        if default is None:
            raise _fail("--callee: the file names no default callee", 2)
        callee = default

    async def place(client: ControlClient) -> int:
        placed = await client.place_inbound(callee, app=app_hash, from_=caller, to=did)
        return placed.callid

    callid = _control(_control_url(api_url), place)
    console.print(f"call id [bold]{callid}[/] (inbound, app {app_hash})")


@app.command("call", cls=_Command)
def call_(
    number: Annotated[
        str,
        typer.Argument(help="E.164 number to call, e.g. +33612345678 (--inbound: the DID)."),
    ],
    app_hash: Annotated[
        str, typer.Option("--app", envvar="RTCONTROL_APP_HASH", help="REALTIME10 app hash.")
    ],
    timeout: Annotated[int, typer.Option(help="Ring timeout, 5..300 s.")] = 30,
    cli: Annotated[str, typer.Option(help='Caller id: "BLOCKED" or an E.164 number.')] = "BLOCKED",
    inbound: Annotated[
        bool,
        typer.Option(
            "--inbound",
            help="Emulator only: place an inbound call to the app, from --from to NUMBER.",
        ),
    ] = False,
    caller: Annotated[
        str, typer.Option("--from", help="--inbound: the caller's number (or BLOCKED).")
    ] = "+33612345678",
    callee_file: Annotated[
        str | None,
        typer.Option(
            "--callee",
            help="--inbound: a JSON/YAML callee script (default: the emulator's silent callee).",
            show_default=False,
        ),
    ] = None,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Start an outbound real-time call (calls.realtime); prints its request hash.

    With --inbound (the emulator only): place an inbound call through the emulator's
    control API; prints its call id.
    """
    from .media import Target
    from .rpc import RealtimeOptions

    if inbound:
        _inbound(number, app_hash, caller, callee_file, api_url)
        return

    with _bad_input(_CALL_NAMES, "calls.realtime"):
        target = Target(number=number, timeout=timeout)
        options = RealtimeOptions(cli=cli)
        _check_hash("--app", app_hash, "an app hash")
    creds = _credentials(api_key, api_login, api_password)

    async def action(client: Any) -> str:
        result: str = await client.realtime(app_hash, target, options)
        return result

    request_hash = _run(_with_client(api_url, creds, action), _CALL_NAMES)
    console.print(f"call requested: request hash [bold]{request_hash}[/]")
    console.print(
        "its call id (what `rtcontrol break` and `rtcontrol hangup` take) comes with the "
        f"call's first callback: the app logs it with request_hash={request_hash} "
        "and callid=...",
        highlight=False,
    )


def _callid(callid: int) -> int:
    from .rpc.wire import check_callid

    with _bad_input(_CALL_NAMES):
        return check_callid("", callid)


@app.command("break", cls=_Command)
def break_(
    callid: Annotated[int, typer.Argument(help="Call id (from the callback).")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Interrupt the command a call is running (calls.realtime_break)."""
    callid = _callid(callid)
    creds = _credentials(api_key, api_login, api_password)
    ok = _run(_with_client(api_url, creds, lambda c: c.realtime_break(callid)), _CALL_NAMES)
    console.print("break sent" if ok else "[yellow]nothing to break[/]")


@app.command(cls=_Command)
def hangup(
    callid: Annotated[int, typer.Argument(help="Call id.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Hang up a call (calls.hangup)."""
    callid = _callid(callid)
    creds = _credentials(api_key, api_login, api_password)
    ok = _run(_with_client(api_url, creds, lambda c: c.hangup(callid)), _CALL_NAMES)
    console.print("hung up" if ok else "[yellow]call already ended[/]")


_BROADCAST_NAMES = {
    "number": "NUMBER",
    "target": "NUMBER",
    "voice": "--voice",
    "text": "MESSAGES",
    "messages": "MESSAGES",
    "request_id": "REQUEST_ID",
}


@app.command(cls=_Command)
def broadcast(
    number: Annotated[str, typer.Argument(help="E.164 number to call.")],
    messages: Annotated[list[str], typer.Argument(help="Texts to speak, or media ids.")],
    voice: Annotated[str, typer.Option(help="TTS voice.")] = "TTS_EN-GB_SERENA",
    wait: Annotated[bool, typer.Option(help="Wait for the final status.")] = True,
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Call a number and play messages (calls.broadcast_1); show progress until it ends."""
    from .media import Target, check_media, tts

    with _bad_input(_BROADCAST_NAMES, "calls.broadcast_1"):
        target = Target(number=number)
        media: list[int | str] = [int(m) if m.isdigit() else tts(m, voice) for m in messages]
        for i, item in enumerate(media):
            check_media("calls.broadcast_1", f"messages[{i}]", item)
    creds = _credentials(api_key, api_login, api_password)

    async def action(client: Any) -> tuple[str, str]:
        request_id: str = await client.broadcast(target, media)
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

    request_id, status = _run(_with_client(api_url, creds, action), _BROADCAST_NAMES)
    console.print(f"broadcast [bold]{request_id}[/]: {status}")


@app.command(cls=_Command)
def status(
    request_id: Annotated[str, typer.Argument(help="Request id returned by broadcast.")],
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Status of a broadcast (calls.get_status_1)."""
    with _bad_input(_BROADCAST_NAMES):
        _check_hash("REQUEST_ID", request_id, "a request id")
    creds = _credentials(api_key, api_login, api_password)
    found = _run(_with_client(api_url, creds, lambda c: c.get_status(request_id)))
    console.print(found)


_APP_NAMES = {"name": "NAME", "url": "--url", "login": "--login", "password": "--password"}


@apps_cli.command("create", cls=_Command)
def apps_create(
    name: Annotated[str, typer.Argument(help="App name.")],
    url: Annotated[str, typer.Option(help="Callback URL, e.g. https://ivr.example.com/callback.")],
    login: Annotated[
        str,
        typer.Option(
            envvar="RTCONTROL_CALLBACK_LOGIN", help="Basic login the platform sends to the URL."
        ),
    ] = "",
    password: Annotated[
        str,
        typer.Option(
            envvar="RTCONTROL_CALLBACK_PASSWORD", help="Its password.", show_default=False
        ),
    ] = "",
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """Create a REALTIME10 app pointing at your callback URL."""
    if ":" in login:
        raise _fail("--login must not contain ':' (HTTP Basic cannot carry it)", 2)
    creds = _credentials(api_key, api_login, api_password)
    info = _run(
        _with_client(
            api_url, creds, lambda c: c.create_app(name, url, login=login, password=password)
        ),
        _APP_NAMES,
    )
    console.print(f"created app [bold]{info.hash}[/] ({info.name})")


@apps_cli.command("list", cls=_Command)
def apps_list(
    api_url: ApiUrl = None,
    api_key: ApiKey = None,
    api_login: ApiLogin = None,
    api_password: ApiPassword = None,
) -> None:
    """List REALTIME10 apps."""
    from rich.table import Table

    creds = _credentials(api_key, api_login, api_password)
    found = _run(_with_client(api_url, creds, lambda c: c.list_apps()))
    table = Table("hash", "name", "url")
    for info in found:
        table.add_row(info.hash, info.name, _without_userinfo(getattr(info, "url", "") or ""))
    console.print(table)


# ---------------------------------------------------------------- emulator and demo


def _is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback interface only: ``127.0.0.1``, ``::1``,
    ``localhost``, or a name that resolves to loopback addresses only."""
    import ipaddress
    import socket

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    if host.lower() == "localhost":
        return True
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        return False  # cannot tell: warn (the bind fails anyway if the name is wrong)
    return bool(found) and all(ipaddress.ip_address(a[4][0]).is_loopback for a in found)


def _warn_if_exposed(host: str) -> None:
    """One warning line when the unauthenticated control API and page leave loopback."""
    if not _is_loopback(host):
        _warning_line(
            f"--host {host} is not loopback: other machines can reach the emulator's "
            "control API and softphone page, which have no authentication (they can place "
            "calls and read transcripts); use --host 127.0.0.1 to keep them local"
        )


def emulator_banner(rpc_url: str) -> list[str]:
    """What the emulator prints once it listens: each credential line copyable as is."""
    from .emulator import DEFAULT_API_KEY, DEFAULT_LOGIN, DEFAULT_PASSWORD

    return [
        f"CALLR emulator: JSON-RPC at {rpc_url}  (Ctrl-C to stop)",
        "From another shell, with the API key:",
        f"export CALLR_API_URL={rpc_url} CALLR_API_KEY={DEFAULT_API_KEY}; "
        "unset CALLR_LOGIN CALLR_PASSWORD",
        "or with the Basic login:",
        f"export CALLR_API_URL={rpc_url} CALLR_LOGIN={DEFAULT_LOGIN} "
        f"CALLR_PASSWORD={DEFAULT_PASSWORD}; unset CALLR_API_KEY",
    ]


async def _serve_emulator(emu: Any, host: str, port: int, quiet: bool, ready: Any) -> None:
    """The emulator's JSON-RPC, control API and page on one port; transcripts live."""
    from .emulator import LocalServer
    from .emulator.control import build_service_app
    from .emulator.printer import print_events

    server = LocalServer(build_service_app(emu), host=host, port=port, handle_signals=True)
    async with emu:
        await server.start()
        ready(server)
        printer = None if quiet else asyncio.create_task(print_events(emu.bus, console))
        try:
            await server.wait()
        finally:
            if printer is not None:
                printer.cancel()
                await asyncio.gather(printer, return_exceptions=True)
            await server.stop()


@app.command(cls=_Command)
def emulator(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Port = 8765,
    speed: Annotated[float, typer.Option(help="Virtual seconds per real second.")] = 1.0,
    callee_file: Annotated[
        str | None,
        typer.Option(
            "--callee",
            help="JSON/YAML callee script: one callee for every number, or "
            '{"default": ..., "phonebook": {"+336...": ...}}.',
            show_default=False,
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="Do not print transcripts live.")] = False,
) -> None:
    """Run the local CALLR emulator (JSON-RPC at /json-rpc/v1.1/, API key emulator-api-key),
    its control API (/control/v1/) and the softphone page (/); prints calls live."""
    from .demo import bind_error, check_port
    from .emulator import RPC_PATH, Emulator, ScaledClock
    from .emulator.scripts import load_script

    clock = ScaledClock(_positive("--speed", speed))
    default: Any = None
    phonebook: dict[str, Any] = {}
    if callee_file is not None:
        try:
            default, phonebook = load_script(callee_file)
        except OSError as exc:
            raise _fail(f"--callee: cannot read {callee_file}: {exc.strerror or exc}", 2) from None
        except ValueError as exc:
            raise _fail(f"--callee: {exc}", 2) from None
    try:
        check_port(host, port)
    except ConfigurationError as exc:
        raise _fail(str(exc)) from None
    _warn_if_exposed(host)
    listening = False

    def ready(server: Any) -> None:
        nonlocal listening
        listening = True
        for line in emulator_banner(f"{server.url}{RPC_PATH}"):
            typer.echo(line)  # plain lines: no terminal width can wrap them
        typer.echo(f"Control API at {server.url}/control/v1/, softphone page at {server.url}/")

    emu = Emulator(clock=clock, phonebook=phonebook, default_callee=default)
    try:
        asyncio.run(_serve_emulator(emu, host, port, quiet, ready))
    except OSError as exc:
        if listening:
            raise
        raise _fail(bind_error(exc, host, port)) from None
    except KeyboardInterrupt:
        pass


@app.command(cls=_Command)
def dev(
    target: Annotated[str, typer.Argument(help="module:attribute of the App, e.g. apps.menu:app")],
    host: Annotated[str, typer.Option(help="Interface to bind (both servers).")] = "127.0.0.1",
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the app.",
            show_default="8000, or a free port if taken",
        ),
    ] = None,
    emulator_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the emulator and the page.",
            show_default="8765, or a free port if taken",
        ),
    ] = None,
    path: Annotated[str, typer.Option(help="Callback path of the app.")] = "/callback",
    open_browser: Annotated[
        bool, typer.Option("--open", help="Open the page in the default browser.")
    ] = False,
    reload: Annotated[bool, typer.Option(help="Restart the app when its code changes.")] = True,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="The app's log level.")
    ] = LogLevel.info,
) -> None:
    """Serve an app with reload, run the emulator, wire them, and serve a softphone page."""
    import secrets

    from .demo import check_port
    from .devpage.run import DevOptions, run_dev

    if not path.startswith("/"):
        raise _fail(f"--path must start with '/', got {path!r}", 2)
    # Throw-away callback credentials, for this check and for the app's process.
    password = secrets.token_urlsafe(16)
    os.environ["RTCONTROL_CALLBACK_LOGIN"] = "callr"
    os.environ["RTCONTROL_CALLBACK_PASSWORD"] = password
    _check_app(_import_target(target, name="TARGET"))
    for option, value in (("--port", port), ("--emulator-port", emulator_port)):
        if value:
            try:
                check_port(host, value)
            except ConfigurationError as exc:
                raise _fail(f"{option}: {exc}") from None
    _warn_if_exposed(host)
    opts = DevOptions(
        target=target,
        host=host,
        app_port=port or None,
        emulator_port=emulator_port or None,
        path=path,
        open_browser=open_browser,
        reload=reload,
        log_config=_log_config(log_level),
        password=password,
    )
    try:
        asyncio.run(run_dev(opts, console))
    except KeyboardInterrupt:
        pass
    except RtcontrolError as exc:
        raise _fail(str(exc)) from None


@app.command(cls=_Command)
def demo(
    target: Annotated[
        str, typer.Option("--app", help="module:factory building the App.")
    ] = "apps.menu:build",
    port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the app (0: any free port).",
            show_default="8000, or a free port if taken",
        ),
    ] = None,
    emulator_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Port of the emulator's JSON-RPC.",
            show_default="8765, or a free port if taken",
        ),
    ] = None,
    speed: Annotated[float, typer.Option(help="Virtual seconds per real second.")] = 8.0,
    keep_running: Annotated[bool, typer.Option(help="Keep serving after the demo calls.")] = True,
) -> None:
    """Serve an example app and the emulator on loopback, place calls, print transcripts."""
    from .app import App
    from .demo import run_demo

    _positive("--speed", speed)
    factory = _import_target(target, name="--app", default_attr="build")
    if isinstance(factory, App) or not callable(factory):
        raise _fail(
            "--app must name a function that builds the App from keyword settings "
            f"(e.g. apps.menu:build), got {target!r}",
            2,
        )
    try:
        asyncio.run(run_demo(target, port, emulator_port, speed, keep_running, console))
    except KeyboardInterrupt:
        pass
    except RtcontrolError as exc:
        raise _fail(str(exc)) from None


def main() -> None:
    app(prog_name="rtcontrol")  # also under python -m rtcontrol.cli


if __name__ == "__main__":  # python -m rtcontrol.cli
    main()
