"""Refused callbacks (401) are logged: one WARNING each, at most one per window per
client address, never with the credentials."""

from __future__ import annotations

import logging

import httpx
import pytest
from fastapi import FastAPI

from rtcontrol.adapters.endpoint import RefusalLog

from .conftest import AUTH, CALLBACK, LOGIN, PASSWORD, Counter, basic, post, rt_request

WRONG = basic(LOGIN, PASSWORD + "x")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "rtcontrol.app" and r.levelno == logging.WARNING
    ]


def client_from(api: FastAPI, host: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=api, client=(host, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://rt.test")


@pytest.fixture
def clock(api: FastAPI) -> Clock:
    """The endpoint's refusal log on a clock the test moves."""
    fake = Clock()
    api.callback_endpoint.refusals = RefusalLog(60.0, clock=fake)  # type: ignore[attr-defined]
    return fake


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        ({}, "no credentials"),
        ({"Authorization": "Bearer " + PASSWORD}, "not HTTP Basic"),
        ({"Authorization": WRONG}, "wrong login or password"),
        ({"Authorization": "Basic !!!" + PASSWORD}, "wrong login or password"),
    ],
    ids=["none", "bearer", "wrong", "garbled"],
)
async def test_one_warning_per_refused_callback(
    api: FastAPI,
    clock: Clock,
    counter: Counter,
    caplog: pytest.LogCaptureFixture,
    headers: dict[str, str],
    reason: str,
) -> None:
    caplog.set_level(logging.DEBUG, logger="rtcontrol")
    async with client_from(api, "203.0.113.7") as client:
        response = await post(client, rt_request(), headers, auth=False)
    assert response.status_code == 401
    assert warnings_of(caplog) == [
        f"callback refused (401, {reason}) from 203.0.113.7: check that the REALTIME10 app's "
        "login/password match RTCONTROL_CALLBACK_LOGIN/RTCONTROL_CALLBACK_PASSWORD"
    ]
    assert counter.total == 0
    for record in caplog.records:  # nothing of the credentials, in any log line
        text = record.getMessage() + repr(record.__dict__)
        assert PASSWORD not in text
        assert LOGIN not in text
        assert WRONG.split()[1] not in text


async def test_rate_limited_per_client_address(
    api: FastAPI, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rtcontrol")
    bad = {"Authorization": WRONG}
    async with client_from(api, "198.51.100.1") as one, client_from(api, "198.51.100.2") as two:
        for _ in range(3):
            assert (await post(one, rt_request(), bad, auth=False)).status_code == 401
        assert len(warnings_of(caplog)) == 1
        assert (await post(two, rt_request(), bad, auth=False)).status_code == 401
        assert len(warnings_of(caplog)) == 2  # another address: its own line
        clock.now += 59.9
        assert (await post(one, rt_request(), bad, auth=False)).status_code == 401
        assert len(warnings_of(caplog)) == 2  # still inside the window
        clock.now += 0.1
        assert (await post(one, rt_request(), bad, auth=False)).status_code == 401
        assert (await post(one, rt_request(), AUTH, auth=False)).status_code == 200
    lines = warnings_of(caplog)
    assert [line.split(" from ")[1].split(":")[0] for line in lines] == [
        "198.51.100.1",
        "198.51.100.2",
        "198.51.100.1",
    ]
    assert lines[2].endswith(" (3 more from this address since the last warning)")
    assert "more from this address" not in lines[0] + lines[1]


async def test_accepted_callbacks_log_no_refusal(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="rtcontrol")
    response = await client.post(
        CALLBACK, json=rt_request(), headers={**AUTH, "Content-Type": "application/json"}
    )
    assert response.status_code == 200
    assert not [m for m in warnings_of(caplog) if "refused" in m]


def test_memory_is_bounded_and_oldest_forgotten(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rtcontrol.app")
    clock = Clock()
    log = RefusalLog(60.0, clock=clock, max_clients=2)
    for host in ("10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.3"):
        log.refused({"client": (host, 1)}, None)
    assert len(warnings_of(caplog)) == 3
    log.refused({"client": ("10.0.0.1", 1)}, None)  # forgotten: warned again
    log.refused({"client": ("10.0.0.3", 1)}, None)  # remembered: counted
    assert len(warnings_of(caplog)) == 4
    assert len(log._seen) == 2


def test_unknown_and_hostile_client_addresses(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="rtcontrol.app")
    log = RefusalLog(60.0, clock=Clock())
    log.refused({}, None)
    log.refused({"client": ("evil\nFAKE LINE " + "x" * 100, 1)}, None)
    first, second = warnings_of(caplog)
    assert " from an unknown address:" in first
    assert "\n" not in second
    assert "evil?FAKE?LINE?" in second
    assert "x" * 65 not in second
