"""The CLI's promise: every error is ONE line on stderr, ``error: ...``, with exit 1 for
API and configuration errors and exit 2 for bad input. Each case checks the exact line.

Bad input is refused before anything is sent: the API URL below is a closed port, so a
case that reached the network would fail with an exit 1 "cannot reach the API" instead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner, Result

from rtcontrol.cli import app
from rtcontrol.emulator import DEFAULT_API_KEY, DEFAULT_LOGIN, DEFAULT_PASSWORD, RPC_PATH
from tests.cli.support import free_port

runner = CliRunner()
CLOSED = f"http://127.0.0.1:{free_port()}{RPC_PATH}"
API = ["--api-url", CLOSED, "--api-key", "k"]
MAX = 2**64 - 1


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    unset: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("CALLR_", "RTCONTROL_"))
    }
    return runner.invoke(app, list(args), env={**unset, **(env or {})})


def assert_one_error(result: Result, code: int, line: str) -> None:
    assert (result.exit_code, result.stderr) == (code, line + "\n"), result.output
    assert result.stdout == ""


BAD_INPUT = [
    # numbers: field and reason, the number masked
    (
        ["call", "0612345678", "--app", "6SDXQF2J", *API],
        "error: NUMBER must be an E.164 number with a leading + (e.g. +33123456789), "
        "got '06******78'",
    ),
    (
        ["call", "33612345678", "--app", "6SDXQF2J", *API],
        "error: NUMBER must be an E.164 number with a leading + (e.g. +33123456789), "
        "got '33*******78'",
    ),
    (
        ["broadcast", "0612345678", "hi", *API],
        "error: NUMBER must be an E.164 number with a leading + (e.g. +33123456789), "
        "got '06******78'",
    ),
    (
        ["broadcast", "+0612345678", "hi", *API],
        "error: NUMBER must be an E.164 number with a leading + (e.g. +33123456789), "
        "got '+06******78'",
    ),
    # pydantic bounds: the option and the bound, never pydantic's URL
    (
        ["call", "+33612345678", "--app", "6SDXQF2J", "--timeout", "2", *API],
        "error: --timeout must be greater than or equal to 5, got 2",
    ),
    (
        ["call", "+33612345678", "--app", "6SDXQF2J", "--timeout", "301", *API],
        "error: --timeout must be less than or equal to 300, got 301",
    ),
    (
        ["call", "+33612345678", "--app", "6SDXQF2J", "--cli", "0612345678", *API],
        'error: --cli must be "BLOCKED" or an E.164 number such as +33123456789, '
        "got '06******78'",
    ),
    # app hashes and request ids
    (
        ["call", "+33612345678", "--app", "bad", *API],
        "error: --app must be an app hash of 8 capital letters and digits (e.g. 4346423A), "
        "got 'bad'",
    ),
    (
        ["call", "+33612345678", "--app", "6sdxqf2j", *API],
        "error: --app must be an app hash of 8 capital letters and digits (e.g. 4346423A), "
        "got '6sdxqf2j'",
    ),
    (
        ["status", "4260 XMA", *API],
        "error: REQUEST_ID must be a request id of 8 capital letters and digits "
        "(e.g. 4260XMAQ), got '4260 XMA'",
    ),
    # voices, texts and media ids (the builders' CommandError)
    (
        ["broadcast", "+33612345678", "hi", "--voice", "TTS_BAD", *API],
        "error: --voice must be a voice name shaped TTS_LL-CC_NAME, got 'TTS_BAD'",
    ),
    (
        ["broadcast", "+33612345678", "hi", "--voice", "tts_fr-fr_audrey", *API],
        "error: --voice must be a voice name shaped TTS_LL-CC_NAME, got 'tts_fr-fr_audrey'",
    ),
    (
        ["broadcast", "+33612345678", " ", *API],
        "error: MESSAGES must be a non-empty string, got ' '",
    ),
    (
        ["broadcast", "+33612345678", "hi", "0", *API],
        "error: MESSAGES must be a media id 1..9223372036854775807 or a TTS string built "
        "with tts(text, voice), got 0",
    ),
    # call ids
    (["hangup", str(MAX + 1), *API], f"error: CALLID must be an integer 0..{MAX}, got {MAX + 1}"),
    (["break", str(MAX + 1), *API], f"error: CALLID must be an integer 0..{MAX}, got {MAX + 1}"),
    # emulator and demo settings
    (["emulator", "--speed", "0"], "error: --speed must be a positive number, got 0"),
    (["demo", "--speed", "-2"], "error: --speed must be a positive number, got -2"),
    (["demo", "--app", "apps.menu:nope"], "error: module 'apps.menu' has no attribute 'nope'"),
    (
        ["demo", "--app", "apps.nope"],
        "error: cannot import 'apps.nope': no module 'apps.nope' "
        "(run rtcontrol from the directory that holds it)",
    ),
    (
        ["demo", "--app", "apps.menu:app"],
        "error: --app must name a function that builds the App from keyword settings "
        "(e.g. apps.menu:build), got 'apps.menu:app'",
    ),
    (
        ["demo", "--app", "apps.menu:AGENTS"],
        "error: --app must name a function that builds the App from keyword settings "
        "(e.g. apps.menu:build), got 'apps.menu:AGENTS'",
    ),
    # apps
    (
        ["apps", "create", "", "--url", "https://ivr.example.com/callback", *API],
        "error: NAME must be a non-empty string, got ''",
    ),
    (
        ["apps", "create", "ivr", "--url", "ftp://ivr.example.com/", *API],
        "error: --url must be an http:// or https:// URL with a host, got 'ftp://ivr.example.com/'",
    ),
    (
        ["apps", "create", "ivr", "--url", "https://ivr.example.com/", "--login", "a:b", *API],
        "error: --login must not contain ':' (HTTP Basic cannot carry it)",
    ),
    # credentials given half
    (
        ["ping", "--api-url", CLOSED, "--api-login", "me"],
        "error: --api-login needs --api-password (or CALLR_PASSWORD)",
    ),
    (
        ["ping", "--api-url", CLOSED, "--api-password", "pw"],
        "error: --api-password needs --api-login",
    ),
    (
        ["ping", "--api-url", CLOSED, "--api-key", "k", "--api-login", "me"],
        "error: give --api-key or --api-login/--api-password, not both",
    ),
]


@pytest.mark.parametrize(
    ("args", "line"), BAD_INPUT, ids=[" ".join(x for x in a if x not in API) for a, _ in BAD_INPUT]
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], line: str) -> None:
    assert_one_error(cli(*args), 2, line)


USAGE = [
    (["ping", "--bogus"], "error: No such option: --bogus (see 'rtcontrol ping --help')"),
    (
        ["ping", "--help", "yes"],
        "error: --help is a flag and takes no value, got 'yes' (see 'rtcontrol ping --help')",
    ),
    (
        ["--help", "yes"],
        "error: --help is a flag and takes no value, got 'yes' (see 'rtcontrol --help')",
    ),
    (
        ["broadcast", "+33612345678", "hi", "--wait", "yes", *API],
        "error: --wait is a flag and takes no value, got 'yes' (see 'rtcontrol broadcast --help')",
    ),
    (
        ["demo", "--no-keep-running", "false"],
        "error: --no-keep-running is a flag and takes no value, got 'false' "
        "(see 'rtcontrol demo --help')",
    ),
    (["call"], "error: Missing argument 'number' (see 'rtcontrol call --help')"),
    (
        ["hangup", "abc"],
        "error: Invalid value for 'callid': Input should be a valid integer, unable to parse "
        "string as an integer (see 'rtcontrol hangup --help')",
    ),
    (
        ["emulator", "--port", "70000"],
        "error: Invalid value for '--port': Input should be less than or equal to 65535 "
        "(see 'rtcontrol emulator --help')",
    ),
    (["nosuch"], "error: No such command 'nosuch' (see 'rtcontrol --help')"),
]


@pytest.mark.parametrize(
    ("args", "line"), USAGE, ids=[" ".join(x for x in a if x not in API) for a, _ in USAGE]
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    assert_one_error(cli(*args), 2, line)


def test_a_flag_still_works_before_a_message_that_is_not_a_bool_word() -> None:
    """Only yes/no-like words after a flag are refused: `--no-wait hello` speaks "hello"
    (here it reaches the closed API port: exit 1, not a usage error)."""
    result = cli("broadcast", "+33612345678", "hi", "--no-wait", "hello", *API)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: calls.broadcast_1: cannot reach the API")


def test_help_still_works() -> None:
    result = cli("call", "--help")
    assert result.exit_code == 0
    assert "--api-login" in result.stdout
    assert "--api-password" in result.stdout


# ---------------------------------------------------------------- exit 1


def test_missing_credentials_is_a_configuration_error() -> None:
    assert_one_error(
        cli("ping", "--api-url", CLOSED),
        1,
        "error: no CALLR credentials: set CALLR_API_KEY, or CALLR_LOGIN and CALLR_PASSWORD",
    )


def test_unreachable_api_is_exit_1() -> None:
    assert_one_error(
        cli("call", "+33612345678", "--app", "6SDXQF2J", *API),
        1,
        "error: calls.realtime: cannot reach the API (ConnectError); request not sent",
    )


@pytest.mark.parametrize(
    ("url", "line"),
    [
        ("ftp://example.com/", "error: api_url must be an http:// or https:// URL"),
        ("http://[::1", "error: api_url must be an http:// or https:// URL (Invalid IPv6 URL)"),
    ],
)
def test_bad_api_url_is_a_configuration_error(url: str, line: str) -> None:
    assert_one_error(cli("ping", "--api-url", url, "--api-key", "k"), 1, line)
    assert_one_error(cli("ping", env={"CALLR_API_URL": url, "CALLR_API_KEY": "k"}), 1, line)


INBOUND = ["call", "--inbound", "+33123456789", "--app", "ABCDEFGH"]


@pytest.mark.parametrize(
    ("url", "line"),
    [
        (
            "http://[::1",
            "error: api_url must be an http:// or https:// URL (Invalid IPv6 URL)",
        ),
        (
            "http://127.0.0.1:99999/json-rpc/v1.1/",
            "error: api_url must be an http:// or https:// URL (Port out of range 0-65535)",
        ),
    ],
)
def test_call_inbound_refuses_a_bad_api_url_like_ping(url: str, line: str) -> None:
    assert_one_error(cli(*INBOUND, "--api-url", url), 1, line)
    assert_one_error(cli(*INBOUND, env={"CALLR_API_URL": url}), 1, line)


@pytest.mark.parametrize("userinfo", ["user:pa55w0rd@", "user@", ":pa55w0rd@", "user:pa55@w0rd@"])
def test_call_inbound_refuses_credentials_in_the_url_and_never_echoes_them(
    userinfo: str,
) -> None:
    """As ``ping`` and ``call`` refuse such a URL (exit 1), before any connection."""
    url = f"http://{userinfo}127.0.0.1:{free_port()}{RPC_PATH}"
    line = "error: api_url must not hold credentials: the emulator's control API takes none"
    for result in (cli(*INBOUND, "--api-url", url), cli(*INBOUND, env={"CALLR_API_URL": url})):
        assert_one_error(result, 1, line)
        assert "pa55" not in result.output
        assert "user" not in result.output
    assert_one_error(
        cli("ping", "--api-url", url, "--api-key", "k"),
        1,
        "error: api_url must not hold credentials: use api_key or login",
    )


def test_no_error_line_shows_the_credentials_of_a_url() -> None:
    """Whatever quotes a URL (here a refused callback URL), its userinfo is dropped."""
    result = cli("apps", "create", "x", "--url", "ftp://u:pa55w0rd@example.com/cb", *API)
    assert "pa55w0rd" not in result.output
    assert result.exit_code in (1, 2)
    assert result.stderr.count("\n") == 1


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_emulator_on_a_busy_port(busy_port: int) -> None:
    assert_one_error(
        cli("emulator", "--port", str(busy_port)),
        1,
        f"error: port {busy_port} on 127.0.0.1 is in use",
    )


def test_demo_on_a_busy_port_it_was_given(busy_port: int) -> None:
    result = cli("demo", "--port", str(busy_port), "--emulator-port", "0", "--no-keep-running")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: port {busy_port} on 127.0.0.1 is in use\n",
    )


def test_demo_on_a_busy_emulator_port_it_was_given(busy_port: int) -> None:
    result = cli("demo", "--port", "0", "--emulator-port", str(busy_port), "--no-keep-running")
    assert (result.exit_code, result.stderr) == (
        1,
        f"error: port {busy_port} on 127.0.0.1 is in use\n",
    )


# ---------------------------------------------------------------- credentials as options


def test_basic_login_as_options(api_url: str) -> None:
    auth = ["--api-login", DEFAULT_LOGIN, "--api-password", DEFAULT_PASSWORD]
    result = cli("ping", "--api-url", api_url, *auth)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok")


def test_login_option_takes_its_password_from_the_environment(api_url: str) -> None:
    env = {"CALLR_PASSWORD": DEFAULT_PASSWORD, "CALLR_API_KEY": "ignored-when-options-given"}
    result = cli("ping", "--api-url", api_url, "--api-login", DEFAULT_LOGIN, env=env)
    assert result.exit_code == 0, result.output


def test_options_win_over_the_environment(api_url: str) -> None:
    env = {"CALLR_LOGIN": "someone", "CALLR_PASSWORD": "else"}
    result = cli("ping", "--api-url", api_url, "--api-key", DEFAULT_API_KEY, env=env)
    assert result.exit_code == 0, result.output


def test_a_refused_password_is_never_echoed(api_url: str) -> None:
    secret = "s3cret-Pa55word"
    result = cli(
        "ping", "--api-url", api_url, "--api-login", DEFAULT_LOGIN, "--api-password", secret
    )
    assert_one_error(
        result,
        1,
        "error: the API refused the credentials (check --api-key or CALLR_API_KEY, "
        "or --api-login/--api-password or CALLR_LOGIN/CALLR_PASSWORD)",
    )
    assert secret not in result.output


def test_apps_list_never_shows_the_credentials_of_a_callback_url(api_url: str) -> None:
    auth = ["--api-url", api_url, "--api-key", DEFAULT_API_KEY]
    url = "https://someone:pa55w0rd@ivr.example.com/callback"
    created = cli("apps", "create", "userinfo", "--url", url, *auth)
    assert created.exit_code == 0, created.output
    listed = cli("apps", "list", *auth)
    assert listed.exit_code == 0, listed.output
    assert "https://ivr.example.com/callback" in listed.stdout
    assert "pa55w0rd" not in listed.output
    assert "someone" not in listed.output


def test_an_api_error_is_exit_1(api_url: str) -> None:
    result = cli(
        "call",
        "+33612345678",
        "--app",
        "ZZZZZZZZ",
        "--api-url",
        api_url,
        "--api-key",
        DEFAULT_API_KEY,
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1
    assert "+33612345678" not in result.output


# ---------------------------------------------------------------- observable: the call id


def test_call_prints_its_request_hash_and_how_to_get_the_call_id(api_url: str) -> None:
    auth = ["--api-url", api_url, "--api-key", DEFAULT_API_KEY]
    created = cli("apps", "create", "cli-call", "--url", "http://127.0.0.1:9/callback", *auth)
    assert created.exit_code == 0, created.output
    app_hash = created.stdout.split("created app ")[1].split()[0]

    result = cli("call", "+33612345678", "--app", app_hash, *auth)
    assert result.exit_code == 0, result.output
    first, second = result.stdout.splitlines()
    assert first.startswith("call requested: request hash ")
    request_hash = first.rsplit(" ", 1)[1]
    assert len(request_hash) == 8
    # worded for any server of the app (serve, dev, demo, uvicorn): no `rtcontrol serve`
    assert second == (
        "its call id (what `rtcontrol break` and `rtcontrol hangup` take) comes with the "
        f"call's first callback: the app logs it with request_hash={request_hash} "
        "and callid=..."
    )
    assert "rtcontrol serve" not in result.stdout
    assert "+33612345678" not in result.output
