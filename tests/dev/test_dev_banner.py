"""What ``rtcontrol dev`` prints to reach the app from another shell: the ``rtcontrol
call --inbound`` command (the README's first-IVR step 5) and, when the app has an
outbound handler, the outbound ``rtcontrol call``; the app's routes are read from its
registry in a child process."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from devsupport import ROOT, Dev, clean_env, start_dev

from rtcontrol.devpage.run import app_routes, banner

HERE = ROOT / "tests" / "dev"
RPC = "http://127.0.0.1:8765/json-rpc/v1.1/"
INBOUND = f"rtcontrol call --inbound +33123456789 --app ABCD1234 --api-url {RPC}"
OUTBOUND = f"rtcontrol call +33612345678 --app ABCD1234 --api-url {RPC} --api-key emulator-api-key"


def _routes(target: str) -> dict[str, list[str | None]] | None:
    env = clean_env(PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    return asyncio.run(app_routes(target, env))


def _banner(routes: dict[str, list[str | None]] | None) -> list[str]:
    return banner("m:app", "http://a/callback", RPC, "http://e/", "ABCD1234", routes=routes)


def test_the_routes_come_from_the_apps_registry() -> None:
    assert _routes("apps.menu:app") == {"inbound": [None], "outbound": [None]}
    assert _routes("inbound_only_app:app") == {"inbound": [None], "outbound": []}
    assert _routes("no_such_module_here:app") is None  # unknown: the app's start says why


def test_an_app_with_both_handlers_gets_both_commands() -> None:
    lines = _banner({"inbound": [None], "outbound": ["ABCD1234"]})
    assert INBOUND in lines
    assert OUTBOUND in lines
    assert not any("No outbound handler" in line for line in lines)


def test_an_app_without_an_outbound_handler_is_not_told_to_call_out() -> None:
    for routes in ({"inbound": [None], "outbound": []}, {"inbound": [None], "outbound": ["X"]}):
        lines = _banner(routes)
        assert INBOUND in lines
        assert not any(line.startswith("rtcontrol call +") for line in lines), lines
        assert any("@app.outbound_call" in line for line in lines), lines


def test_unknown_routes_print_both_commands() -> None:
    lines = _banner(None)
    assert INBOUND in lines
    assert OUTBOUND in lines


def test_rtcontrol_dev_prints_the_inbound_command_the_readme_uses(dev: Dev) -> None:
    out = dev.proc.output()
    inbound = f"rtcontrol call --inbound +33123456789 --app {dev.app_hash} --api-url {dev.rpc_url}"
    assert re.search(rf"^{re.escape(inbound)}$", out, re.M), out
    outbound = f"rtcontrol call +33612345678 --app {dev.app_hash} --api-url {dev.rpc_url}"
    assert re.search(rf"^{re.escape(outbound)} --api-key emulator-api-key$", out, re.M), out
    readme = (ROOT / "README.md").read_text()
    assert "rtcontrol call --inbound\n   +33123456789 --app <hash printed by dev>" in readme


def test_rtcontrol_dev_with_an_inbound_only_app(tmp_path: Path) -> None:
    found = start_dev(tmp_path, "inbound_only_app:app", "--no-reload", PYTHONPATH=str(HERE))
    try:
        found.proc.wait_line(r"^Ctrl-C to stop\.$")
        out = found.proc.output()
    finally:
        found.proc.stop()
    assert f"rtcontrol call --inbound +33123456789 --app {found.app_hash}" in out
    assert not re.search(r"^rtcontrol call \+", out, re.M), out
    assert "No outbound handler: `rtcontrol call NUMBER` needs @app.outbound_call" in out
    assert "(reloads on change)" not in out  # --no-reload
