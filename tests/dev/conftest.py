"""Fixtures of the dev-loop tests: ``rtcontrol dev`` and ``rtcontrol emulator`` as real
processes on loopback, and headless Chromium (Debian's package) driven by Playwright.

Playwright never downloads a browser here: it is given ``/usr/bin/chromium``
(``RTCONTROL_CHROMIUM`` overrides). Without Chromium or Playwright the browser tests
skip on a developer's machine and FAIL in CI (``CI=true``): CI must install them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from devsupport import CHROMIUM, Dev, free_port, start_cli


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    tmp = tmp_path_factory.mktemp("dev")
    port, emulator_port = free_port(), free_port()
    proc = start_cli(
        tmp,
        "dev",
        "dev",
        "apps.menu:app",
        "--port",
        str(port),
        "--emulator-port",
        str(emulator_port),
    )
    try:
        page = proc.wait_line(r"^softphone  (http://\S+/)$").group(1)
        rpc, app_hash = proc.wait_line(
            r"^emulator   (http://\S+)  REALTIME10 app (\w{8})$"
        ).groups()
        yield Dev(proc, page, rpc, app_hash)
    finally:
        proc.stop()


# ---------------------------------------------------------------- the browser


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (make install-dev)")
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as playwright:
        found = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield found
        finally:
            found.close()


#: Replaces the browser's speech synthesis with a recorder (``window.__spoken``).
SPEECH_STUB = """
(() => {
  window.__spoken = [];
  class Utterance { constructor(text) { this.text = text; this.lang = ""; } }
  const synth = {
    speaking: false, pending: false, paused: false,
    speak(u) { window.__spoken.push({ text: u.text, lang: u.lang }); },
    cancel() {}, pause() {}, resume() {}, getVoices() { return []; },
    addEventListener() {}, removeEventListener() {},
  };
  Object.defineProperty(window, "speechSynthesis", { value: synth, configurable: true });
  Object.defineProperty(
    window, "SpeechSynthesisUtterance", { value: Utterance, configurable: true });
})();
"""


@pytest.fixture
def page(browser: Any, dev: Dev, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The dev page, speech synthesis stubbed; a screenshot is kept whatever happens."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.add_init_script(SPEECH_STUB)
    found = context.new_page()
    found.goto(dev.page_url)
    try:
        yield found
    finally:
        shot = tmp_path / f"{request.node.name}.png"
        found.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        context.close()
