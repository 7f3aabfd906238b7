"""Structured logs: one INFO line per callback; credentials (and numbers) never logged."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, Call, Command, hangup, read, tts

from .rig import LOGIN, PASSWORD, FakeClient, Platform, Probe, SpyStore

FIELDS = ("callid", "command_id", "step", "status", "outcome", "handler_ms")


def callback_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "rtcontrol.callback"]


def fields(record: logging.LogRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, f) for f in FIELDS[:-1])


def ivr(app: App) -> None:
    @app.on_inbound
    async def start(call: Call) -> Command:
        return read(tts("code"), max_digits=4).then(check)

    @app.step
    async def check(call: Call) -> Command:
        if call.digits == "0000":
            raise ValueError("bad code")
        return hangup()


async def test_one_info_line_per_callback(
    app: App, platform: Platform, caplog: pytest.LogCaptureFixture
) -> None:
    ivr(app)
    caplog.set_level(logging.INFO, logger="rtcontrol")
    line = platform.line(77)
    await line.start()
    body = line.report_body("1234")
    await platform.post_raw(body)
    await platform.post_raw(body)  # duplicate
    line.current = {"command": "hangup", "command_id": "2:main:-", "variables": {}}
    await line.hang_up()

    lines = callback_lines(caplog)
    assert [fields(r) for r in lines] == [
        (77, 0, "start", "INCOMING_CALL", "reply"),
        (77, "1:main:check", "check", "UP", "reply"),
        (77, "1:main:check", "-", "UP", "duplicate"),
        (77, "2:main:-", "on_hangup", "HANGUP", "hangup"),
    ]
    for record in lines:
        assert record.levelno == logging.INFO
        callid, command_id, step, status, outcome = fields(record)
        handler_ms = getattr(record, "handler_ms", None)
        assert isinstance(handler_ms, float)
        assert 0 <= handler_ms < 1000
        message = record.getMessage()
        assert message.startswith(f"callback callid={callid} command_id={command_id} ")
        assert f"step={step} status={status} outcome={outcome}" in message
        assert "handler_ms=" in message


async def test_outcomes_of_hold_delivery_recovery_fallback_and_replay(
    make_app: Callable[..., App],
    serve: Callable[..., Platform],
    probe: Probe,
    store: SpyStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = make_app(handler_budget=0.05)
    release = asyncio.Event()

    @app.on_inbound
    async def start(call: Call) -> Command:
        await release.wait()
        return read(tts("code")).then(check)

    @app.step
    async def check(call: Call) -> Command:
        raise RuntimeError("bug")

    caplog.set_level(logging.INFO, logger="rtcontrol")
    platform = serve(app)
    line = platform.line(88)
    await line.start()  # hold
    release.set()
    await probe.wait("break")
    await line.report("")  # delivered
    store.down = True
    await line.report("1")  # replay
    store.down = False
    await line.report("")  # the replayed read: check raises -> fallback
    other = platform.line(89)
    other.current = {"command": "read", "command_id": "4:main:check", "variables": {}}
    await other.report("1")  # recovered (and its handler fails)

    assert [fields(r)[::2] for r in callback_lines(caplog)] == [
        (88, "start", "hold"),
        (88, "@hold", "delivered"),
        (88, "@replay", "replay"),
        (88, "check", "fallback"),
        (89, "check", "fallback"),
    ]


async def test_credentials_and_numbers_never_logged(
    app: App,
    platform: Platform,
    store: SpyStore,
    fake: FakeClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ivr(app)
    caplog.set_level(logging.DEBUG)
    secrets = [
        PASSWORD,
        LOGIN,
        base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode(),
        "+33611111111",  # the caller's number
        "+33100000000",  # the number called
    ]
    # Wrong credentials, a failing handler (traceback), a replay hold, an interrupt.
    wrong = await platform.http.post(
        "/callback", json=platform.line().body(), auth=(LOGIN, PASSWORD + "x")
    )
    assert wrong.status_code == 401
    line = platform.line()
    await line.start()
    await line.report("0000")
    other = platform.line()
    await other.start()
    await app.interrupt(other.callid, then=hangup())
    store.down = True
    await other.report("")
    store.down = False
    await other.hang_up()

    assert caplog.records, "nothing was logged at all"
    assert any(r.exc_info for r in caplog.records)  # the traceback is part of what we check
    for record in caplog.records:
        text = " ".join(
            [
                record.getMessage(),
                repr(record.args),
                logging.Formatter().format(record),
                repr(vars(record)),
            ]
        )
        for secret in secrets:
            assert secret not in text, (secret, record.name, record.getMessage())
    assert PASSWORD not in repr(app.settings)
