"""Helpers shared by the example apps' tests (a plain module: ``from app_kit import ...``)."""

from __future__ import annotations

from typing import Any

import httpx

from rtcontrol.emulator import Transcript
from rtcontrol.testing import CALLBACK_PATH, EmulatedPlatform

#: Virtual seconds per real second: a 5 s read timeout takes 12.5 ms.
SPEED = 400.0
CALLER = "+33612345678"


def said(t: Transcript) -> list[str]:
    """The text of every TTS prompt the app sent, in order (``play`` and ``read``)."""
    texts = []
    for reply in t.replies:
        media = (reply or {}).get("params", {}).get("media_id")
        if isinstance(media, str) and media.startswith("TTS|"):
            texts.append(media.split("|", 2)[2])
    return texts


def params(t: Transcript, command: str) -> list[dict[str, Any]]:
    """The params of every reply naming ``command``, in order."""
    return [r["params"] for r in t.replies if r and r.get("command") == command]


def results(t: Transcript, command: str) -> list[str]:
    """The ``command_result`` the platform reported for each run of ``command``."""
    return [r["command_result"] for r in t.requests if r.get("command") == command]


def assert_ended(t: Transcript, by: str) -> None:
    """One HANGUP callback, ended the expected way, no protocol error."""
    assert t.hangup_count == 1, t.render()
    assert t.ended_by == by, t.render()
    assert t.final_status == "HANGUP", t.render()
    assert t.errors == [], t.render()


def app_client(p: EmulatedPlatform, auth: tuple[str, str] | None) -> httpx.AsyncClient:
    """An HTTP client for the app's own routes: over loopback, or in-process over ASGI."""
    callback = p.emulator.apps[p.app_hash].url
    base = callback.removesuffix(CALLBACK_PATH)
    transport = httpx.ASGITransport(p.app) if p.over == "asgi" else None
    return httpx.AsyncClient(base_url=base, auth=auth, transport=transport, trust_env=False)


def basic_auth(p: EmulatedPlatform) -> tuple[str, str]:
    s = p.app.settings
    return s.callback_login or "", s.callback_password or ""


async def startup_messages(app: Any) -> list[dict[str, Any]]:
    """What an ASGI server hears when it starts ``app`` (the lifespan start-up)."""
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    return sent


def without_credentials(monkeypatch: Any) -> None:
    """Clear the callback credentials (and the opt-out) from the environment."""
    for name in ("CALLBACK_LOGIN", "CALLBACK_PASSWORD", "ALLOW_NO_AUTH"):
        monkeypatch.delenv(f"RTCONTROL_{name}", raising=False)
