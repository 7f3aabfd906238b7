"""pytest plugin (loaded automatically): the ``callr_platform`` fixture.

::

    async def test_menu(callr_platform):
        async with callr_platform(build(), over="http") as platform:
            t = await platform.call(Callee(actions=[Press("1")]))
        assert t.hangup_count == 1
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def callr_platform() -> Any:
    """Factory of :class:`rtcontrol.testing.EmulatedPlatform` (use it with ``async with``)."""
    from . import EmulatedPlatform

    return EmulatedPlatform
