"""``rtcontrol dev apps.menu:app`` works from a fresh clone: the command a user types, from
the root of a ``git clone`` of this commit (so nothing outside git can help it), the
page fetched and a call placed through the control API.

The clone runs with this test run's virtualenv (its ``rtcontrol`` console script, its
dependencies) and ``PYTHONPATH`` set to the clone, which is what ``pip install -e .`` in
the clone would give: the CLI, the app's process and the page's files all come from the
clone, and the test checks that they do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from devsupport import ROOT, clean_env, start_dev, wait_for

#: Presses 1 (sales) once the welcome has played, hangs up as the app dials sales.
CALLER = {"answer_delay": 0, "actions": [{"press": "1", "after": 0.5}], "hangup_during": "dialout"}


def _git(*args: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout.strip()


@pytest.mark.timeout(300)
def test_rtcontrol_dev_apps_menu_works_from_a_fresh_clone(tmp_path: Path) -> None:
    head = _git("rev-parse", "HEAD")
    clone = tmp_path / "clone"
    _git("clone", "--quiet", "--no-checkout", str(ROOT), str(clone))
    _git("checkout", "--quiet", "--detach", head, cwd=clone)
    assert not (clone / ".venv").exists()
    bin_dir = Path(sys.executable).parent
    rtcontrol = bin_dir / "rtcontrol"
    assert rtcontrol.is_file(), f"no rtcontrol console script in {bin_dir} (make install-dev)"
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "VIRTUAL_ENV": str(bin_dir.parent),
        "PYTHONPATH": str(clone),
    }
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import rtcontrol, apps; print(rtcontrol.__file__)"],
        cwd=clone,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert Path(where.stdout.strip()).is_relative_to(clone), where.stdout
    # one mark, in the clone only: the page served must be the clone's
    static = clone / "rtcontrol" / "devpage" / "static"
    index = static / "index.html"
    index.write_text(index.read_text(encoding="utf-8") + "<!-- from the clone -->\n")

    # what the user types, in the clone's root (with free ports: tests run side by side)
    dev = start_dev(tmp_path, "apps.menu:app", command=("rtcontrol",), cwd=clone, **env)
    try:
        with httpx.Client(base_url=dev.page_url, timeout=30, trust_env=False) as client:
            page = client.get("/")
            assert page.status_code == 200
            assert page.text == index.read_text(encoding="utf-8")
            assert page.text.endswith("<!-- from the clone -->\n")
            assert 'id="callme"' in page.text
            for name in ("app.js", "style.css"):
                asset = client.get(f"/static/{name}")
                assert asset.status_code == 200
                assert asset.text == (static / name).read_text(encoding="utf-8")

            info = client.get("control/v1/").json()
            assert [a["hash"] for a in info["apps"]] == [dev.app_hash]
            assert info["rpc_url"] == dev.rpc_url
            placed = client.post("control/v1/calls", json={"callee": CALLER})
            assert placed.status_code == 201, placed.text
            callid = placed.json()["callid"]

            def ended() -> dict[str, object] | None:
                found: dict[str, object] = client.get(f"control/v1/calls/{callid}").json()
                return found if found["state"] == "ended" else None

            call = wait_for(ended, f"call {callid} to end")
        t = call["transcript"]
        assert t["executed"] == ["read", "dialout"]  # the app heard the 1: it dials sales
        assert (t["ended_by"], t["hangup_count"], t["errors"]) == ("callee", 1, [])
        reports = [e["data"] for e in t["events"] if e["kind"] == "request"]
        assert [(r["command"], r["command_result"]) for r in reports[:2]] == [
            ("", ""),
            ("read", "1"),
        ]
        dev.proc.wait_line(rf"^call {callid} .*ENDED")  # printed live by the dev process
        lines = dev.app_log_lines(rf"callback callid={callid} ")
        assert len(lines) == 3, dev.proc.output()  # the app's own log: 2 steps and the HANGUP
        assert re.search(r"status=HANGUP", lines[-1]), lines
    finally:
        dev.proc.stop()
    output = dev.proc.output()
    assert dev.proc.proc.returncode == 0, output
    assert "Traceback" not in output, output
