"""``/metrics`` after real calls: every counter matches what the transcripts show.

The example menu serves calls from the emulator over loopback HTTP (in-process
uvicorn); one call is interrupted through ``calls.realtime_break``. The scrape is
parsed with prometheus_client's own parser, as Prometheus would read it.
"""

from __future__ import annotations

import asyncio
import itertools
from urllib.parse import urlsplit

import httpx
from prometheus_client.parser import text_string_to_metric_families

from apps.menu import build
from rtcontrol import hangup
from rtcontrol.emulator import Callee, HangUp, Press, Silence, Transcript
from rtcontrol.metrics import OUTCOMES
from rtcontrol.testing import EmulatedPlatform, random_credentials

SPEED = 20.0  # the shortest prompt lasts a quarter of a real second
AGENT = Callee(answer_delay=1.0, hangup_after=3.0)
BOOK = {"+33100000001": AGENT, "+33100000002": AGENT}
CALLEES = [
    Callee(actions=[Press("1")]),
    Callee(actions=[Press("1")]),
    Callee(actions=[Press("5"), Press("2")]),
    Callee(actions=[Silence(), Silence(), Silence()]),
    Callee(actions=[Press("7"), HangUp(after=2.0)]),
]


class Scrape:
    """One parsed ``/metrics`` page: ``scrape.value(name, **labels)``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [
            s for family in text_string_to_metric_families(text) for s in family.samples
        ]

    def value(self, name: str, **labels: str) -> float:
        found = [s.value for s in self.samples if s.name == name and s.labels == labels]
        assert len(found) == 1, f"{name}{labels}: {len(found)} samples in\n{self.text}"
        return found[0]

    def buckets(self, name: str) -> dict[str, float]:
        return {s.labels["le"]: s.value for s in self.samples if s.name == name + "_bucket"}


async def scrape(client: httpx.AsyncClient, base: str) -> Scrape:
    response = await client.get(base + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def test_metrics_count_the_calls_made() -> None:
    app = build(**random_credentials())
    async with (
        EmulatedPlatform(app, over="http", speed=SPEED, phonebook=BOOK) as platform,
        httpx.AsyncClient(trust_env=False, timeout=5) as client,
    ):
        emu = platform.emulator
        url = urlsplit(emu.apps[platform.app_hash].url)
        base = f"{url.scheme}://{url.netloc}"
        before = await scrape(client, base)

        calls = [emu.start_call(platform.app_hash, callee) for callee in CALLEES]
        interrupted = emu.start_call(platform.app_hash, Callee(actions=[Silence()]))
        calls.append(interrupted)
        await asyncio.gather(*(c.wait_command("read") for c in calls))
        during = await scrape(client, base)
        assert await app.interrupt(interrupted.callid, then=hangup()) is True
        transcripts: list[Transcript] = await asyncio.gather(*(c.wait() for c in calls))
        after = await scrape(client, base)

    # nothing before the first call; every call counted while it runs, none after
    for outcome in OUTCOMES:
        assert before.value("rtcontrol_callbacks_total", outcome=outcome) == 0
    assert before.value("rtcontrol_active_calls") == 0
    assert during.value("rtcontrol_active_calls") == len(calls)
    assert after.value("rtcontrol_active_calls") == 0

    for t in transcripts:
        assert t.errors == [], t.render()
        assert t.hangup_count == 1, t.render()
    assert transcripts[-1].executed == ["read", "hangup"], transcripts[-1].render()

    posts = sum(len(t.requests) for t in transcripts)
    expected = dict.fromkeys(OUTCOMES, 0)
    expected["hangup"] = len(calls)  # one HANGUP POST per call
    expected["interrupt"] = 1  # the callback reporting the broken read
    expected["reply"] = posts - len(calls) - 1
    counted = {o: after.value("rtcontrol_callbacks_total", outcome=o) for o in OUTCOMES}
    assert counted == expected, after.text

    # the histogram saw every callback, with buckets up to the 5 s deadline
    assert after.value("rtcontrol_handler_seconds_count") == posts
    buckets = after.buckets("rtcontrol_handler_seconds")
    assert {"0.001", "0.05", "1.0", "4.0", "5.0", "+Inf"} <= set(buckets), buckets
    assert buckets["+Inf"] == posts
    ordered = sorted(buckets.items(), key=lambda kv: float(kv[0]))
    assert all(a[1] <= b[1] for a, b in itertools.pairwise(ordered)), ordered
    assert buckets["1.0"] == posts  # in-process replies: far from the deadline
    assert 0 < after.value("rtcontrol_handler_seconds_sum") < posts * 1.0

    assert after.value("rtcontrol_breaks_total") == 1  # one calls.realtime_break sent
    assert after.value("rtcontrol_handler_errors_total") == 0
