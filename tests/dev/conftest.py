"""Fixtures of the dev-loop tests: ``rtcontrol dev`` and ``rtcontrol emulator`` as real
processes on loopback, and headless Chromium (Debian's package) driven by Playwright.

Playwright never downloads a browser here: it is given ``/usr/bin/chromium``
(``RTCONTROL_CHROMIUM`` overrides). Without Chromium or Playwright the browser tests
skip on a developer's machine and FAIL in CI (``CI=true``): CI must install them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from devsupport import CHROMIUM, ROOT, Dev, start_dev


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """``rtcontrol dev apps.menu:app`` (with reload, as a user runs it)."""
    found = start_dev(tmp_path_factory.mktemp("dev"), "apps.menu:app")
    try:
        yield found
    finally:
        found.proc.stop()


@pytest.fixture(scope="module")
def recorder_dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dev]:
    """``rtcontrol dev recorder_app:app``: an app that records (``tests/dev`` on the path;
    no reload, so edits elsewhere in the tree never restart it mid-test)."""
    tmp = tmp_path_factory.mktemp("recorder")
    here = str(ROOT / "tests" / "dev")
    found = start_dev(tmp, "recorder_app:app", "--no-reload", PYTHONPATH=here)
    try:
        yield found
    finally:
        found.proc.stop()


# ---------------------------------------------------------------- the browser


def _missing(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI must install it: see .ci/run)")
    pytest.skip(reason)


#: Chromium's stand-ins for a microphone: a fake device (a beep), access granted.
FAKE_MEDIA = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (make install-dev)")
    if not (os.path.isfile(CHROMIUM) or shutil.which(CHROMIUM)):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    os.environ["PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD"] = "1"
    with sync_playwright() as found:
        yield found


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    found = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
    try:
        yield found
    finally:
        found.close()


@pytest.fixture(scope="module")
def media_browser(playwright: Any) -> Iterator[Any]:
    """Chromium with a fake microphone, its use allowed without asking."""
    found = playwright.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=list(FAKE_MEDIA)
    )
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


OpenPage = Callable[..., Any]


@pytest.fixture
def open_page(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[OpenPage]:
    """``open_page(browser, url, *init_scripts)``: the dev page with speech synthesis
    stubbed (and the scripts run first); a screenshot of each is kept whatever happens."""
    opened: list[tuple[Any, Any]] = []

    def opener(browser: Any, url: str, *scripts: str) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        for script in (SPEECH_STUB, *scripts):
            context.add_init_script(script)
        found = context.new_page()
        opened.append((context, found))
        found.goto(url)
        return found

    yield opener
    for n, (context, found) in enumerate(opened):
        shot = tmp_path / f"{request.node.name}-{n}.png"
        found.screenshot(path=str(shot), full_page=True)
        print(f"screenshot: {shot}")
        context.close()


@pytest.fixture
def page(browser: Any, dev: Dev, open_page: OpenPage) -> Any:
    """The dev page of ``rtcontrol dev apps.menu:app``, speech synthesis stubbed."""
    return open_page(browser, dev.page_url)
