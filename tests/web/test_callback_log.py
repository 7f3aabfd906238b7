"""The callback log line: the first callback of an outbound call names its request hash,
so the hash ``rtcontrol call`` prints leads to the callid; and refused callbacks."""

from __future__ import annotations

import logging

import httpx
import pytest

from rtcontrol.events import CallbackAnswered, Disposition
from rtcontrol.logs import log_event

from .conftest import Counter, post, rt_request

HASH = "4260XMAQ"


def callback_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rtcontrol.callback"]


def test_request_hash_is_appended_when_the_event_has_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="rtcontrol.callback")
    log_event(CallbackAnswered(421889, 0, "start", "UP", Disposition.REPLY, 0.0012, HASH))
    log_event(CallbackAnswered(421889, "1:main:x", "x", "UP", Disposition.REPLY, 0.002))
    first, second = callback_records(caplog)
    assert first.getMessage() == (
        "callback callid=421889 command_id=0 step=start status=UP outcome=reply "
        f"handler_ms=1.2 request_hash={HASH}"
    )
    assert getattr(first, "request_hash", None) == HASH
    assert "request_hash" not in second.getMessage()
    assert not hasattr(second, "request_hash")
    assert second.getMessage().endswith("handler_ms=2.0")


def test_the_new_field_is_optional_and_last() -> None:
    event = CallbackAnswered(1, 0, "start", "UP", Disposition.REPLY, 0.0)
    assert event.request_hash is None
    assert CallbackAnswered.__dataclass_fields__.keys() == {
        "callid",
        "command_id",
        "step",
        "status",
        "disposition",
        "seconds",
        "request_hash",
    }
    assert list(CallbackAnswered.__dataclass_fields__)[-1] == "request_hash"


async def test_first_outbound_callback_logs_its_request_hash(
    client: httpx.AsyncClient, counter: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rtcontrol.callback")
    response = await post(client, rt_request(request_hash=HASH, call_status="UP", callid=77))
    assert response.status_code == 200
    assert counter.calls == ["outbound"]
    (line,) = callback_records(caplog)
    assert line.getMessage().endswith(f" request_hash={HASH}")


async def test_inbound_callbacks_log_no_request_hash(
    client: httpx.AsyncClient, counter: Counter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="rtcontrol.callback")
    assert (await post(client, rt_request(callid=78))).status_code == 200
    (line,) = callback_records(caplog)
    assert "request_hash" not in line.getMessage()
