"""The page's record buttons, in headless Chromium: the microphone (Chromium's fake
device) and the stand-in recording (no microphone API, or the microphone refused), each
against ``rtcontrol dev recorder_app:app``, an app that records and then says the name of
the file it got. Every wait is on page state (Playwright's ``expect``), never a sleep."""

from __future__ import annotations

import re
from typing import Any

import pytest
from devsupport import (
    MIC_DENIED,
    NO_MEDIA_DEVICES,
    Dev,
    page_expect,
    page_ready,
    shown_callid,
)

#: What the emulator names a recording (``record_file_template``).
RECORDING = r"/tmp/callr-rec-{callid}-\d+\.wav"


def _call_until_recording(page: Any) -> tuple[Any, int]:
    """Call the app from the page; return ``expect`` and the callid once it records."""
    expect = page_ready(page)
    page.click("#dial")
    expect(page.locator("#recording")).to_be_visible()
    expect(page.locator(".ev-command-started").filter(has_text="record {")).to_have_count(1)
    return expect, shown_callid(page)


def _end_and_check(dev: Dev, page: Any, callid: int, talked: str) -> str:
    """The emulator heard the speech; ``#`` ends the recording; the app gets the file
    (it says its name) and hangs up. Returns the recording's name."""
    expect = page_expect()
    transcript = page.locator("#transcript")
    heard = transcript.locator(".ev-callee").filter(has_text="talked for")
    expect(heard).to_have_count(1)
    expect(heard).to_contain_text(re.compile(talked))
    page.click('#keypad button[data-key="#"]')
    ended = transcript.locator(".ev-command-ended").filter(has_text="record →")
    expect(ended).to_contain_text(re.compile(RECORDING.format(callid=callid)))
    expect(page.locator("#recording")).to_be_hidden()
    expect(transcript.locator(".ev-call-ended")).to_contain_text("by app")

    t = dev.get(f"/calls/{callid}")["transcript"]
    posts = [e["data"] for e in t["events"] if e["kind"] == "request"]
    report = next(p for p in posts if p["command"] == "record")
    name = report["command_result"]
    assert re.fullmatch(RECORDING.format(callid=callid), name), name
    assert t["executed"] == ["record", "play", "hangup"]
    assert t["hangup_count"] == 1
    said = f"Recorded {name}."  # the app got the file's name
    played = transcript.locator(".ev-command-started").filter(has_text="play {")
    expect(played).to_contain_text(said)
    assert {"text": said, "lang": "en-GB"} in page.evaluate("window.__spoken")
    expect(page.locator("#prompt")).to_have_text("")  # the call is over: no prompt left
    return name


def test_record_with_the_microphone(recorder_dev: Dev, media_browser: Any, open_page: Any) -> None:
    page = open_page(media_browser, recorder_dev.page_url)
    expect, callid = _call_until_recording(page)
    mic = page.locator("#record-mic")
    expect(mic).to_be_visible()
    mic.click()
    expect(mic).to_have_text("Stop recording")
    # the fake microphone's audio comes in (a chunk every 250 ms)
    page.wait_for_function(
        "Number(document.getElementById('recording').dataset.audioBytes) > 0",
        timeout=45_000,
    )
    expect(page.locator("#record-note")).to_contain_text(re.compile(r"Recording… \d+ kB"))
    mic.click()
    expect(mic).to_have_text("Record with the microphone")
    note = page.locator("#record-note")
    expect(note).to_have_text(
        re.compile(r"Sent \d+\.\d s of speech with the microphone \([1-9]\d* kB of audio\)\.")
    )
    sent = re.search(r"Sent (\d+\.\d) s", note.inner_text())
    assert sent is not None
    seconds = float(sent.group(1))  # rounded to 0.1 s: what the page sent, and shows
    speech = page.locator("#transcript .ev-callee").filter(has_text="speech")
    expect(speech).to_have_text(re.compile(rf"speech {seconds:g}s$"))
    _end_and_check(recorder_dev, page, callid, rf"talked for {seconds:g}s")


@pytest.mark.parametrize(
    ("browser_lacks", "script"),
    [("no microphone API", NO_MEDIA_DEVICES), ("the microphone refused", MIC_DENIED)],
)
def test_without_a_microphone_the_stand_in_recording_reaches_the_app(
    recorder_dev: Dev, browser: Any, open_page: Any, browser_lacks: str, script: str
) -> None:
    page = open_page(browser, recorder_dev.page_url, script)
    expect, callid = _call_until_recording(page)
    mic = page.locator("#record-mic")
    note = page.locator("#record-note")
    standin = page.locator("#record-standin")
    if script == NO_MEDIA_DEVICES:
        expect(mic).to_be_hidden()
        expect(note).to_have_text("No microphone here: send the stand-in recording.")
    else:
        expect(mic).to_be_visible()
        mic.click()
        expect(note).to_have_text("Microphone not allowed: send the stand-in recording.")
        expect(mic).to_be_hidden()
    expect(standin).to_be_visible()
    standin.click()
    expect(note).to_have_text("Sent 3.0 s of speech (a stand-in recording).")
    _end_and_check(recorder_dev, page, callid, r"talked for 3s")
