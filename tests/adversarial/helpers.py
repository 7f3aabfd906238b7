"""Small helpers shared by the adversarial tests (on top of tests/core/kit.py)."""

from __future__ import annotations

from typing import Any

from rtcontrol.commands import from_wire
from rtcontrol.core.ports import Reply
from rtcontrol.protocol import RTResponse
from rtcontrol.validate import check_outgoing
from tests.core.kit import body


def assert_sendable(reply: Reply, max_body: int = 64 * 1024) -> dict[str, Any]:
    """The reply passes every check the validator applies to what we send."""
    sent = body(reply)  # strict JSON
    RTResponse.model_validate(sent)
    from_wire(sent["command"], sent["params"])
    check_outgoing(sent["variables"], max_body)
    return sent
