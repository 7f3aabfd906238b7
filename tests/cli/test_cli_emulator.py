"""``rtcontrol emulator``'s banner: the API key and the Basic login each on one line,
pasted as is into a shell, whatever the terminal's width."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from rtcontrol.emulator import DEFAULT_API_KEY, DEFAULT_LOGIN, DEFAULT_PASSWORD, RPC_PATH
from tests.cli.support import ROOT, clean_env, free_port

BANNER_LINES = 5


@pytest.fixture(scope="module")
def banner() -> Iterator[tuple[str, list[str]]]:
    """The emulator's URL and first lines, printed to a pipe in a 40-column terminal."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rtcontrol.cli", "emulator", "--port", str(port)],
        cwd=ROOT,
        env=clean_env(COLUMNS="40", LINES="20"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    try:
        lines = [proc.stdout.readline().rstrip("\n") for _ in range(BANNER_LINES)]
        yield f"http://127.0.0.1:{port}{RPC_PATH}", lines
    finally:
        proc.terminate()
        proc.communicate(timeout=10)


def test_banner_lines_are_whole_in_a_narrow_terminal(banner: tuple[str, list[str]]) -> None:
    url, lines = banner
    assert lines == [
        f"CALLR emulator: JSON-RPC at {url}  (Ctrl-C to stop)",
        "From another shell, with the API key:",
        f"export CALLR_API_URL={url} CALLR_API_KEY={DEFAULT_API_KEY}; "
        "unset CALLR_LOGIN CALLR_PASSWORD",
        "or with the Basic login:",
        f"export CALLR_API_URL={url} CALLR_LOGIN={DEFAULT_LOGIN} "
        f"CALLR_PASSWORD={DEFAULT_PASSWORD}; unset CALLR_API_KEY",
    ]


@pytest.mark.parametrize("which", [2, 4], ids=["api-key", "basic-login"])
def test_each_credential_line_works_pasted_into_a_shell(
    banner: tuple[str, list[str]], which: int
) -> None:
    """The line as printed, then ``rtcontrol ping``, in one shell: it authenticates.

    The shell starts with the *other* credentials set, which the line must unset.
    """
    line = banner[1][which]
    stale = (
        {"CALLR_LOGIN": "stale", "CALLR_PASSWORD": "stale"}
        if which == 2
        else {"CALLR_API_KEY": "stale"}
    )
    script = f'{line}\n"{sys.executable}" -m rtcontrol.cli ping\n'
    result = subprocess.run(
        ["bash", "-c", script],
        cwd=ROOT,
        env=clean_env(**stale),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_error_lines_are_never_wrapped() -> None:
    """A long error in a 40-column terminal is still one line."""
    result = subprocess.run(
        [sys.executable, "-m", "rtcontrol.cli", "broadcast", "0612345678", "hi"],
        cwd=ROOT,
        env=clean_env(COLUMNS="40", CALLR_API_KEY="k"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "error: NUMBER must be an E.164 number with a leading + (e.g. +33123456789), "
        "got '06******78'\n"
    )


def test_an_unreachable_api_is_one_line_without_retry_warnings() -> None:
    url = f"http://127.0.0.1:{free_port()}{RPC_PATH}"
    result = subprocess.run(
        [sys.executable, "-m", "rtcontrol.cli", "ping", "--api-url", url, "--api-key", "k"],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr == (
        "error: system.get_timestamp: cannot reach the API (ConnectError); request not sent\n"
    )
