"""``rtcontrol emulator`` as a service (callee scripts, transcripts printed live) and
``rtcontrol call --inbound``, as real processes on loopback."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from devsupport import Proc, cli, free_port, start_cli

SCRIPT = """\
default:
  actions: [{press: "1"}]
phonebook:
  "+33600000007": {answer: busy, name: always busy}
"""


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Proc, str]]:
    tmp = tmp_path_factory.mktemp("emulator")
    script = tmp / "callees.yaml"
    script.write_text(SCRIPT)
    port = free_port()
    proc = start_cli(tmp, "emulator", "emulator", "--port", str(port), "--callee", str(script))
    try:
        proc.wait_line(r"^Control API at ")
        yield proc, f"http://127.0.0.1:{port}"
    finally:
        proc.stop()


def test_the_emulator_serves_its_control_api_with_the_script_loaded(
    emulator: tuple[Proc, str],
) -> None:
    proc, url = emulator
    line = proc.wait_line(r"^Control API at (\S+), softphone page at (\S+)$")
    assert line.groups() == (f"{url}/control/v1/", f"{url}/")
    book = httpx.get(f"{url}/control/v1/phonebook", trust_env=False).json()
    assert book["numbers"]["+33600000007"]["answer"] == "busy"
    assert book["numbers"]["+33600000007"]["name"] == "always busy"


def test_an_inbound_call_from_the_cli_is_printed_live_with_its_id(
    emulator: tuple[Proc, str],
) -> None:
    proc, url = emulator
    app = httpx.post(
        f"{url}/control/v1/apps", json={"url": "http://127.0.0.1:9/callback"}, trust_env=False
    ).json()
    placed = cli(
        "call",
        "--inbound",
        "+33123456789",
        "--from",
        "+33600000042",
        "--app",
        app["hash"],
        "--api-url",
        f"{url}/json-rpc/v1.1/",
    )
    assert placed.returncode == 0, placed.stderr
    found = re.fullmatch(r"call id (\d+) \(inbound, app \w{8}\)\n", placed.stdout)
    assert found is not None, placed.stdout
    callid = found.group(1)
    # nothing listens on port 9: the POST fails, the call ends, all of it printed live
    proc.wait_line(rf"^call {callid} .*CALL +started: inbound \+33\*{{7}}42 -> \+33\*{{7}}89")
    proc.wait_line(rf"^call {callid} .*ERROR .*HTTP failure")
    proc.wait_line(rf"^call {callid} .*ENDED +ended by webhook")
    assert "+33600000042" not in proc.output()
    info = httpx.get(f"{url}/control/v1/calls/{callid}", trust_env=False).json()
    assert (info["from"], info["to"], info["ended_by"]) == (
        "+33600000042",
        "+33123456789",
        "webhook",
    )


def test_inbound_with_a_callee_script(emulator: tuple[Proc, str], tmp_path: Path) -> None:
    _, url = emulator
    app = httpx.post(
        f"{url}/control/v1/apps", json={"url": "http://127.0.0.1:9/cb"}, trust_env=False
    ).json()
    script = tmp_path / "caller.json"
    script.write_text(json.dumps({"answer_delay": 0, "actions": [{"press": "42#"}]}))
    api = f"{url}/json-rpc/v1.1/"
    args = ["--inbound", "+33123456789", "--app", app["hash"], "--api-url", api]
    placed = cli("call", *args, "--callee", str(script))
    assert placed.returncode == 0, placed.stderr
    assert placed.stdout.startswith("call id ")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["+33123456789", "--app", "ABCDEFGH"], 1, "--inbound needs the emulator's address"),
        (["0612345678", "--app", "ABCDEFGH", "--api-url", "http://127.0.0.1:9/"], 2, "NUMBER"),
        (["+33123456789", "--app", "abc", "--api-url", "http://127.0.0.1:9/"], 2, "--app"),
        (
            ["+33123456789", "--app", "ABCDEFGH", "--from", "06", "--api-url", "http://x:9/"],
            2,
            "--from",
        ),
        (
            ["+33123456789", "--app", "ABCDEFGH", "--api-url", "http://127.0.0.1:9/"],
            1,
            "cannot reach the emulator's control API",
        ),
        (
            [
                "+33123456789",
                "--app",
                "ABCDEFGH",
                "--callee",
                "/nonexistent.json",
                "--api-url",
                "http://127.0.0.1:9/",
            ],
            2,
            "--callee: cannot read",
        ),
    ],
)
def test_call_inbound_errors_are_one_line(args: list[str], code: int, message: str) -> None:
    result = cli("call", "--inbound", *args)
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "0612345678" not in result.stderr


def test_call_inbound_refused_by_the_emulator_is_bad_input(emulator: tuple[Proc, str]) -> None:
    _, url = emulator
    api = f"{url}/json-rpc/v1.1/"
    result = cli("call", "--inbound", "+33123456789", "--app", "ZZZZZZZZ", "--api-url", api)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert "app" in result.stderr


class _NotTheEmulator(BaseHTTPRequestHandler):
    """Answers every POST with the status and body its server was given."""

    def do_POST(self) -> None:
        status, kind, body = self.server.answer  # type: ignore[attr-defined]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize(
    ("answer", "code", "message"),
    [
        ((404, "text/plain", b"Not Found"), 1, "(is --api-url the rtcontrol emulator?)"),
        ((502, "text/html", b"<html>bad gateway</html>"), 1, "answered 502, not JSON"),
        (
            (
                409,
                "application/json",
                b'{"error": {"code": "X", "message": "not now +33612345678"}}',
            ),
            1,
            "not now +33*******78",
        ),
        (
            (
                400,
                "application/json",
                b'{"error": {"code": "INVALID_PARAM", "message": "to: bad"}}',
            ),
            2,
            "to: bad",
        ),
    ],
)
def test_call_inbound_maps_what_the_control_api_answered(
    answer: tuple[int, str, bytes], code: int, message: str
) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _NotTheEmulator)
    server.answer = answer  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        api = f"http://127.0.0.1:{server.server_address[1]}/json-rpc/v1.1/"
        result = cli("call", "--inbound", "+33123456789", "--app", "ABCDEFGH", "--api-url", api)
    finally:
        server.shutdown()
        server.server_close()
    assert result.returncode == code, (result.stdout, result.stderr)
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert message in lines[0]
    assert "+33612345678" not in result.stderr


def test_a_bad_callee_script_stops_the_emulator_at_once(tmp_path: Path) -> None:
    script = tmp_path / "bad.json"
    script.write_text(json.dumps({"actions": [{"press": "x"}]}))
    result = cli("emulator", "--port", "0", "--callee", str(script))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "invalid callee script" in result.stderr
