"""``make bench-tools`` (a prerequisite of ``make bench``) installs wrk and taskset with
apt-get when they are missing. Run against a PATH of stubs: a fake apt-get records what
it was asked, so nothing is installed and nothing leaves the machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli.support import ROOT

MAKE = shutil.which("make")
pytestmark = pytest.mark.skipif(MAKE is None, reason="needs make")

FAKE_APT = '#!/bin/sh\necho "apt-get $*" >> "$APT_LOG"\n'


def make_bench_tools(
    tmp_path: Path, tools: list[str]
) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """``make bench-tools`` with only ``tools`` (and the basics) on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("id", "env"):
        found = shutil.which(name)
        assert found is not None
        (bin_dir / name).symlink_to(found)
    for name in tools:
        stub = bin_dir / name
        stub.write_text(FAKE_APT if name == "apt-get" else "#!/bin/sh\n")
        stub.chmod(0o755)
    log = tmp_path / "apt.log"
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "-s", "--no-print-directory", "bench-tools", "SUDO="],
        cwd=ROOT,
        env={"PATH": str(bin_dir), "APT_LOG": str(log), "HOME": os.environ.get("HOME", "/")},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, log.read_text().splitlines() if log.exists() else []


def test_nothing_to_do_when_the_tools_are_there(tmp_path: Path) -> None:
    result, apt = make_bench_tools(tmp_path, ["wrk", "taskset", "apt-get"])
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    assert apt == []


def test_missing_wrk_is_installed_with_apt_get(tmp_path: Path) -> None:
    result, apt = make_bench_tools(tmp_path, ["taskset", "apt-get"])
    assert result.returncode == 0, result.stderr
    assert result.stdout == "installing wrk (apt-get)\n"
    assert apt == ["apt-get update -qq", "apt-get install -y -qq wrk"]


def test_both_missing_are_installed_together(tmp_path: Path) -> None:
    result, apt = make_bench_tools(tmp_path, ["apt-get"])
    assert result.returncode == 0, result.stderr
    assert apt == ["apt-get update -qq", "apt-get install -y -qq wrk util-linux"]


def test_without_apt_get_it_says_what_to_install(tmp_path: Path) -> None:
    result, apt = make_bench_tools(tmp_path, ["taskset"])
    assert result.returncode != 0
    assert "make bench needs: wrk (Debian package names); install them, then retry" in result.stderr
    assert apt == []


def test_make_bench_runs_bench_tools_first() -> None:
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "-n", "--no-print-directory", "bench", "SUDO="],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.index("apt-get install") < result.stdout.index("bench/run.py")
