"""Small helpers: throw-away credentials, and a callback body to drive an App directly.

::

    import json

    from rtcontrol import App, hangup
    from rtcontrol.protocol import RTRequest
    from rtcontrol.testing import callback_body, random_credentials

    app = App(**random_credentials())

    @app.on_inbound
    async def welcome(call):
        return hangup()

    async def test_one_callback() -> None:
        body = await app.handle(RTRequest.model_validate(callback_body(callid=7)))
        assert json.loads(body)["command"] == "hangup"
"""

from __future__ import annotations

import secrets
from typing import Any

__all__ = ["callback_body", "random_credentials"]


def random_credentials() -> dict[str, str]:
    """Callback credentials for a throw-away app (tests, demos):
    ``{"callback_login": "callr", "callback_password": <24 random characters>}``."""
    return {"callback_login": "callr", "callback_password": secrets.token_urlsafe(18)}


def callback_body(**fields: Any) -> dict[str, Any]:
    """All 14 fields of an RT.Request as the platform sends them: by default the first
    callback of an inbound call; ``fields`` override or add keys. For driving an app
    directly (``App.handle(RTRequest.model_validate(callback_body(...)))``) or over HTTP."""
    body: dict[str, Any] = {
        "app": "4346423A",
        "callid": 421889,
        "request_hash": None,
        "cli_name": "",
        "cli_number": "+33612345678",
        "date_started": "2026-11-28 10:00:00",
        "number": "+33123456789",
        "command": "",
        "command_id": 0,
        "command_result": "",
        "command_error": "",
        "call_status": "INCOMING_CALL",
        "cdr_field": "",
        "variables": {},
    }
    body.update(fields)
    return body
