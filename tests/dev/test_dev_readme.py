"""The README agrees with the page and the event stream: the first-IVR path names the
page's button as the page spells it, and the SSE row lists every event type."""

from __future__ import annotations

import re

from devsupport import ROOT

from rtcontrol.emulator.bus import EVENT_TYPES

README = (ROOT / "README.md").read_text()
PAGE = (ROOT / "rtcontrol" / "devpage" / "static" / "index.html").read_text()


def test_the_first_ivr_path_presses_the_pages_call_button() -> None:
    button = re.search(r'<button id="dial"[^>]*>([^<]+)</button>', PAGE)
    assert button is not None
    step = re.search(r"^4\. \*\*Hear it\*\*.*?(?=^5\. )", README, re.M | re.S)
    assert step is not None
    assert f"press *{button.group(1)}*" in " ".join(step.group().split())


def test_the_readme_lists_every_event_type_and_how_to_read_them() -> None:
    row = next(line for line in README.splitlines() if line.startswith("| `GET /control/v1/events"))
    listed = re.findall(r"`([a-z.]+)`", row.split("Server-Sent Events:")[1])
    assert [t for t in listed if t in EVENT_TYPES] == list(EVENT_TYPES)
    assert "`source.onmessage`" in README
    assert "unnamed SSE messages" in README
