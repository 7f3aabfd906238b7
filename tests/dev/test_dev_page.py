"""The page's transcripts and its small print, in headless Chromium against
``rtcontrol dev apps.menu:app``: a call's whole history once selected (after a reload,
or for a call placed before the page opened), then followed live without duplicates;
phone numbers masked; rows in time order; the prompt cleared; a declined call said so.
Every wait is on page state (Playwright's ``expect``)."""

from __future__ import annotations

from typing import Any

from devsupport import PHONE, Dev, page_ready, shown_callid, transcript_rows, wait_for

WELCOME = "Welcome to Example Corp. Press 1 for sales, 2 for support."
#: Presses 1 (sales) once the welcome has played, hangs up as the app dials sales.
CALLER = {"answer_delay": 0, "actions": [{"press": "1", "after": 0.5}], "hangup_during": "dialout"}


def _same_as_the_api(dev: Dev, page: Any, callid: int) -> list[dict[str, Any]]:
    """The page shows each of the call's events once, in time order; returns its rows."""
    events = dev.call_events(callid)
    rows = transcript_rows(page)
    seqs = [r["seq"] for r in rows]
    assert len(seqs) == len(set(seqs)), rows  # no duplicates
    assert sorted(seqs) == [e["seq"] for e in events]
    ats = [r["at"] for r in rows]
    assert ats == sorted(ats), rows
    return rows


def _masked(rows: list[dict[str, Any]]) -> str:
    text = "\n".join(r["text"] for r in rows)
    assert not PHONE.search(text), text
    return text


def test_a_call_placed_before_the_page_opened_is_listed_with_its_whole_transcript(
    dev: Dev, browser: Any, open_page: Any
) -> None:
    placed = dev.send("POST", "/calls", {"from": "+33600000011", "callee": CALLER})
    callid = placed["callid"]
    dev.wait_ended(callid)

    page = open_page(browser, dev.page_url)
    expect = page_ready(page)
    listed = page.locator(f'#calls li[data-callid="{callid}"]')
    expect(listed).to_contain_text("inbound ended (callee)")
    listed.click()
    expect(page.locator("#log-title")).to_have_text(f"call {callid}")
    transcript = page.locator("#transcript")
    expect(transcript.locator(".ev-call-ended")).to_contain_text("ended by callee")
    expect(transcript).to_have_attribute("data-history", "loaded")
    rows = _same_as_the_api(dev, page, callid)
    assert rows[0]["type"] == "call.started"
    text = _masked(rows)
    assert "inbound +33*******11 → +33*******89" in text  # from, to
    assert '"number":"+33*******01"' in text  # the dialout target the app sent


def test_a_live_call_shows_its_history_then_follows_live_events_once(
    dev: Dev, browser: Any, open_page: Any
) -> None:
    placed = dev.send("POST", "/calls", {"from": "+33600000012", "callee": "live"})
    callid = placed["callid"]
    call = f"/calls/{callid}"
    wait_for(lambda: dev.get(call)["running"] == "read", "the welcome prompt to play", 60)

    page = open_page(browser, dev.page_url)
    expect = page_ready(page)
    page.locator(f'#calls li[data-callid="{callid}"]').click()
    transcript = page.locator("#transcript")
    read = transcript.locator(".ev-command-started").filter(has_text="read")
    expect(read).to_have_count(1)  # from the history: it ran before the page opened
    expect(transcript.locator(".ev-call-started")).to_have_count(1)

    dev.send("POST", f"{call}/dtmf", {"digits": "1"})  # live from here on
    expect(transcript.locator(".ev-command-ended")).to_contain_text('read → "1"')
    dialout = transcript.locator(".ev-command-started").filter(has_text="dialout")
    expect(dialout).to_contain_text("+33*******01")
    dev.send("POST", f"{call}/hangup")
    expect(transcript.locator(".ev-call-ended")).to_have_count(1)
    dev.wait_ended(callid)
    expect(transcript.locator(".ev")).to_have_count(len(dev.call_events(callid)))
    _masked(_same_as_the_api(dev, page, callid))


def test_after_a_reload_the_page_shows_an_earlier_call_in_full(dev: Dev, page: Any) -> None:
    expect = page_ready(page)
    page.click("#dial")
    transcript = page.locator("#transcript")
    expect(page.locator("#prompt")).to_have_text(WELCOME)
    callid = shown_callid(page)
    page.click('#keypad button[data-key="2"]')
    expect(transcript.locator(".ev-command-started").filter(has_text="dialout")).to_have_count(1)
    page.click("#hangup")
    expect(transcript.locator(".ev-call-ended")).to_contain_text("ended by callee")
    before = [(r["seq"], r["text"]) for r in transcript_rows(page)]

    page.reload()
    expect = page_ready(page)
    expect(transcript.locator(".ev")).to_have_count(0)
    page.locator(f'#calls li[data-callid="{callid}"]').click()
    expect(transcript.locator(".ev")).to_have_count(len(before))
    assert [(r["seq"], r["text"]) for r in _same_as_the_api(dev, page, callid)] == before


def test_phone_numbers_are_masked_but_my_number_stays_as_typed(dev: Dev, page: Any) -> None:
    expect = page_ready(page)
    page.fill("#from", "+33600000013")
    page.click("#dial")
    transcript = page.locator("#transcript")
    expect(transcript.locator(".ev-call-started")).to_contain_text(
        "inbound +33*******13 → +33*******89"
    )
    page.click('#keypad button[data-key="1"]')
    dialout = transcript.locator(".ev-command-started").filter(has_text="dialout")
    expect(dialout).to_contain_text('"targets":[{"number":"+33*******01"')
    expect(transcript.locator(".ev-reply").filter(has_text="dialout")).to_contain_text(
        "+33*******01"
    )
    expect(transcript.locator(".ev-platform").first).to_contain_text("+33*******01")
    page.click("#hangup")
    expect(transcript.locator(".ev-call-ended")).to_have_count(1)
    _masked(transcript_rows(page))
    assert not PHONE.search(page.locator("body").inner_text())
    expect(page.locator("#from")).to_have_value("+33600000013")


def test_an_outbound_call_rings_once_and_its_rows_are_in_time_order(dev: Dev, page: Any) -> None:
    """One RINGING row; the call's CALL row (at 0.00s) before the callee answers; the
    welcome prompt cleared while the app dials sales and once the call is over."""
    expect = page_ready(page)
    me = "+33600000014"
    page.fill("#from", me)
    page.click("#callme")
    expect(page.locator("#incoming")).to_be_visible()
    expect(page.locator("#incoming-detail")).to_contain_text("to +33*******14")
    transcript = page.locator("#transcript")
    expect(transcript.locator(".ev-call-ringing")).to_have_count(1)
    page.click("#answer")
    expect(page.locator("#prompt")).to_have_text(WELCOME)
    expect(transcript.locator(".ev-call-started")).to_have_count(1)
    expect(transcript.locator(".ev-call-ringing")).to_have_count(1)
    rows = transcript_rows(page)
    types = [r["type"] for r in rows]
    answers = next(i for i, r in enumerate(rows) if r["text"].endswith("answers"))
    assert types.index("call.ringing") < types.index("call.started") < answers, rows
    assert [r["at"] for r in rows] == sorted(r["at"] for r in rows), rows

    page.click('#keypad button[data-key="1"]')
    expect(transcript.locator(".ev-command-started").filter(has_text="dialout")).to_have_count(1)
    expect(page.locator("#prompt")).to_have_text("")  # the app dials: no prompt plays
    page.click("#hangup")
    expect(transcript.locator(".ev-call-ended")).to_contain_text("ended by callee")
    expect(page.locator("#prompt")).to_have_text("")
    _same_as_the_api(dev, page, shown_callid(page))


def test_the_prompt_goes_when_the_call_ends(page: Any) -> None:
    expect = page_ready(page)
    page.click("#dial")
    expect(page.locator("#prompt")).to_have_text(WELCOME)
    callid = shown_callid(page)
    page.click("#hangup")
    expect(page.locator("#status")).to_have_text(f"Call {callid} ended by callee")
    expect(page.locator("#prompt")).to_have_text("")


def test_a_declined_call_says_declined_and_a_reload_rings_again(dev: Dev, page: Any) -> None:
    """A call still ringing when the page (re)loads rings it; declining it says so."""
    expect = page_ready(page)
    page.fill("#from", "+33600000015")
    page.click("#callme")
    expect(page.locator("#incoming")).to_be_visible()
    callid = shown_callid(page)

    page.reload()
    expect = page_ready(page)
    expect(page.locator("#incoming")).to_be_visible()
    assert shown_callid(page) == callid
    expect(page.locator("#transcript .ev-call-ringing")).to_have_count(1)
    page.click("#decline")
    expect(page.locator("#status")).to_have_text(f"Call {callid} declined (busy)")
    ended = page.locator("#transcript .ev-call-ended")
    expect(ended).to_contain_text("declined (busy)")
    expect(page.locator(f'#calls li[data-callid="{callid}"]')).to_have_text(
        f"{callid} outbound ended (declined)"
    )
    assert "unanswered" not in page.locator("body").inner_text()
    assert dev.get(f"/calls/{callid}")["ended_by"] == "unanswered"
