"""The rtcontrol CLI against a real emulator process on loopback (``api_url``: conftest)."""

from __future__ import annotations

import os

from typer.testing import CliRunner

from rtcontrol.cli import app
from rtcontrol.emulator import DEFAULT_API_KEY, RPC_PATH
from tests.cli.support import free_port

runner = CliRunner()


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    clean = {k: "" for k in os.environ if k.startswith("CALLR_")}
    result = runner.invoke(app, list(args), env={**clean, **(env or {})})
    return result.exit_code, result.output


def test_ping_apps_and_an_outbound_call(api_url: str) -> None:
    auth = ["--api-url", api_url, "--api-key", DEFAULT_API_KEY]
    code, out = invoke("ping", *auth)
    assert code == 0, out
    assert "ok" in out

    code, out = invoke("apps", "create", "cli-test", "--url", "http://127.0.0.1:9/callback", *auth)
    assert code == 0, out
    app_hash = out.split("created app ")[1].split()[0]
    assert len(app_hash) == 8

    code, out = invoke("apps", "list", *auth)
    assert code == 0, out
    assert app_hash in out

    code, out = invoke("call", "+33612345678", "--app", app_hash, *auth)
    assert code == 0, out
    assert "call requested" in out


def test_credentials_from_the_environment(api_url: str) -> None:
    code, out = invoke("ping", env={"CALLR_API_URL": api_url, "CALLR_API_KEY": DEFAULT_API_KEY})
    assert code == 0, out


def test_bad_credentials_are_one_clear_line(api_url: str) -> None:
    code, out = invoke("ping", "--api-url", api_url, "--api-key", "not-the-key")
    assert code == 1
    assert "refused the credentials" in out
    assert "not-the-key" not in out
    assert "Traceback" not in out


def test_unknown_call_is_an_api_error(api_url: str) -> None:
    code, out = invoke("hangup", "999999", "--api-url", api_url, "--api-key", DEFAULT_API_KEY)
    assert code == 1
    assert "error:" in out
    assert "callid" in out


def test_unreachable_api() -> None:
    url = f"http://127.0.0.1:{free_port()}{RPC_PATH}"
    code, out = invoke("ping", "--api-url", url, "--api-key", "k")
    assert code == 1
    assert "cannot reach the API" in out


def test_missing_credentials_name_the_variables() -> None:
    code, out = invoke("ping")
    assert code == 1
    assert "CALLR_API_KEY" in out


def test_bad_number_is_a_usage_error(api_url: str) -> None:
    code, out = invoke("call", "0612", "--app", "ABCDEFGH", "--api-url", api_url, "--api-key", "k")
    assert code == 2
    assert "error:" in out
