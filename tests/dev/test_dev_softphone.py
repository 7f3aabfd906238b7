"""The dev loop in a real browser: ``rtcontrol dev apps.menu:app`` and its softphone page,
in headless Chromium driven by Playwright. Each wait is Playwright's ``expect`` (or a
poll of a condition), with margins for a busy machine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from devsupport import Dev, cli, page_ready, shown_callid, wait_for

WELCOME = "Welcome to Example Corp. Press 1 for sales, 2 for support."
#: The number the menu dials for "1" (sales), as the page shows it (masked).
SALES = "+33*******01"


def _one_hangup_reached_the_app(dev: Dev, callid: int) -> None:
    """The app's own log shows exactly one HANGUP callback for this call."""
    pattern = rf"callback callid={callid} .*status=HANGUP"
    wait_for(lambda: dev.app_log_lines(pattern), "the app's HANGUP log line", 30)
    assert len(dev.app_log_lines(pattern)) == 1, dev.proc.output()


def test_dial_the_menu_press_1_and_hang_up(dev: Dev, page: Any, tmp_path: Path) -> None:
    expect = page_ready(page)
    page.click("#dial")
    transcript = page.locator("#transcript")
    expect(transcript.locator(".ev-command-started").first).to_contain_text("read")
    callid = shown_callid(page)
    expect(page.locator("#prompt")).to_have_text(WELCOME)

    page.click('#keypad button[data-key="1"]')
    expect(transcript.locator(".ev-command-started").filter(has_text="dialout")).to_have_count(1)
    expect(transcript.locator(".ev-command-ended").first).to_contain_text('read → "1"')
    replies = transcript.locator(".ev-reply")
    expect(replies.first).to_contain_text("ms of 5000 left")

    page.click("#hangup")
    expect(transcript.locator(".ev-call-ended")).to_contain_text("by callee")
    expect(page.locator("#status")).to_contain_text(f"Call {callid} ended by callee")
    page.screenshot(path=str(tmp_path / "menu-call.png"), full_page=True)

    call = dev.get(f"/calls/{callid}")
    t = call["transcript"]
    assert t["executed"][:2] == ["read", "dialout"]
    assert t["ended_by"] == "callee"
    assert t["hangup_count"] == 1
    hangup_replies = [
        e for e in t["events"] if e["kind"] == "reply" and e["ignored"] and e["status"] == 200
    ]
    assert len(hangup_replies) == 1  # the app answered the one HANGUP POST
    _one_hangup_reached_the_app(dev, callid)

    spoken = page.evaluate("window.__spoken")
    assert {"text": WELCOME, "lang": "en-GB"} in spoken


def test_the_page_has_the_app_call_it_then_answers_presses_1_and_hangs_up(
    dev: Dev, page: Any
) -> None:
    """ "Have the app call me": the page binds its number to itself (here the number has
    a callee script first, so the page must take it back), places the outbound call
    through the control API, rings, answers; the keypad reaches the app."""
    expect = page_ready(page)
    me = "+33600000077"
    dev.send("PUT", f"/phonebook/{me}", {"callee": {"answer": "busy"}})
    page.fill("#from", me)
    page.click("#callme")
    expect(page.locator("#incoming")).to_be_visible()
    expect(page.locator("#incoming-detail")).to_contain_text("to +33*******77")  # masked
    expect(page.locator("#dial")).to_be_disabled()
    callid = shown_callid(page)
    assert me in dev.get("/phonebook")["live"]
    ringing = dev.get(f"/calls/{callid}")
    assert (ringing["state"], ringing["direction"], ringing["live"]) == (
        "ringing",
        "outbound",
        True,
    )
    assert (ringing["from"], ringing["to"]) == ("+33123456789", me)  # the app's DID calls
    assert "transcript" not in ringing

    page.click("#answer")
    expect(page.locator("#incoming")).to_be_hidden()
    transcript = page.locator("#transcript")
    expect(transcript.locator(".ev-call-started")).to_contain_text(
        "outbound +33*******89 → +33*******77"
    )
    expect(transcript.locator(".ev-post").first).to_contain_text("UP")
    expect(transcript.locator(".ev-command-started").first).to_contain_text("read")
    expect(page.locator("#prompt")).to_have_text(WELCOME)
    expect(page.locator("#status")).to_contain_text(f"In call {callid}")

    page.click('#keypad button[data-key="1"]')
    expect(transcript.locator(".ev-command-ended").first).to_contain_text('read → "1"')
    dialout = transcript.locator(".ev-command-started").filter(has_text="dialout")
    expect(dialout).to_contain_text(SALES)  # the app got the 1: it dials sales

    page.click("#hangup")
    expect(transcript.locator(".ev-call-ended")).to_contain_text("by callee")
    expect(page.locator("#callme")).to_be_enabled()
    t = dev.get(f"/calls/{callid}")["transcript"]
    assert (t["direction"], t["number"], t["request_hash"]) == (
        "outbound",
        me,
        ringing["request_hash"],
    )
    assert t["executed"][:2] == ["read", "dialout"]
    assert (t["ended_by"], t["hangup_count"]) == ("callee", 1)
    _one_hangup_reached_the_app(dev, callid)


def test_answer_an_outbound_call_started_from_the_cli(dev: Dev, page: Any) -> None:
    expect = page_ready(page)
    started = cli(
        "call",
        "+33612345678",
        "--app",
        dev.app_hash,
        "--api-url",
        dev.rpc_url,
        "--api-key",
        "emulator-api-key",
    )
    assert started.returncode == 0, started.stderr
    request_hash = re.search(r"request hash (\w{8})", started.stdout)
    assert request_hash is not None, started.stdout

    expect(page.locator("#incoming")).to_be_visible()
    page.click("#answer")
    transcript = page.locator("#transcript")
    expect(transcript.locator(".ev-post").first).to_contain_text("UP")
    expect(transcript.locator(".ev-command-started").first).to_contain_text("read")
    callid = shown_callid(page)
    calls = dev.get("/calls")
    mine = next(c for c in calls if c["callid"] == callid)
    assert (mine["direction"], mine["request_hash"]) == ("outbound", request_hash.group(1))
    wait_for(
        lambda: {"text": WELCOME, "lang": "en-GB"} in page.evaluate("window.__spoken"),
        "the welcome handed to speech synthesis",
        30,
    )
    page.click("#hangup")
    expect(transcript.locator(".ev-call-ended")).to_contain_text("by callee")
    assert dev.get(f"/calls/{callid}")["transcript"]["hangup_count"] == 1


def test_the_cli_places_an_inbound_call_and_prints_its_id(dev: Dev, page: Any) -> None:
    """``rtcontrol call --inbound`` with a callee script: the page lists the call, and
    the dev process prints it live, numbers masked."""
    expect = page_ready(page)
    placed = cli(
        "call",
        "--inbound",
        "+33123456789",
        "--from",
        "+33600000042",
        "--app",
        dev.app_hash,
        "--api-url",
        dev.rpc_url,
    )
    assert placed.returncode == 0, placed.stderr
    callid = int(re.search(r"call id (\d+)", placed.stdout).group(1))  # type: ignore[union-attr]
    expect(page.locator(f'#calls li[data-callid="{callid}"]')).to_be_visible()
    dev.proc.wait_line(rf"^call {callid} .*CALL .*\+33\*+42")
    assert "+33600000042" not in dev.proc.output()
