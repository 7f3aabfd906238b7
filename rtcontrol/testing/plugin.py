"""pytest plugin (loaded automatically once rtcontrol is installed): ``callr_platform``.

::

    from rtcontrol import App, hangup, play, tts
    from rtcontrol.emulator import Callee

    app = App()

    @app.on_inbound
    async def welcome(call):
        return play(tts("Hello")).then(goodbye)

    @app.step
    async def goodbye(call):
        return hangup()

    async def test_hello(callr_platform):
        async with callr_platform(app, over="http") as platform:
            t = await platform.call(Callee())
        assert t.said == ["Hello"]
        assert t.hangup_count == 1

``callr_platform(app, **options)`` is :class:`~rtcontrol.testing.EmulatedPlatform` with
``strict=True`` unless ``strict=False`` is passed: a handler failure fails the test
with the handler's traceback.

``async def`` tests that take the ``callr_platform`` fixture run as they are: when no
asyncio plugin runs them (pytest-asyncio absent, or in its default strict mode without
``@pytest.mark.asyncio``), this plugin runs each one in a fresh event loop
(``asyncio.run``). Tests marked ``asyncio``, ``anyio`` or ``trio`` are left to their
plugin, and so are tests pytest-asyncio's auto mode runs. Async *fixtures* still need
an asyncio plugin (``pip install pytest-asyncio``, ``asyncio_mode = "auto"``).

With pytest-asyncio installed and ``asyncio_default_fixture_loop_scope`` set nowhere
(ini file, ``-o``), this plugin sets it to ``function``, the default of pytest-asyncio's
next versions: pytest-asyncio would otherwise print a ``PytestDeprecationWarning`` on
every run, in any project, whether it uses asyncio or not.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from ..app import App
    from . import EmulatedPlatform

__all__ = ["callr_platform", "pytest_configure", "pytest_pyfunc_call"]

FIXTURE = "callr_platform"
#: Markers of the plugins that run coroutine tests themselves.
_ASYNC_MARKERS = ("asyncio", "anyio", "trio")
#: pytest-asyncio's setting that warns on every run while unset, and the value it gets.
_LOOP_SCOPE = "asyncio_default_fixture_loop_scope"
_LOOP_SCOPE_DEFAULT = "function"


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Before pytest-asyncio reads it: ``asyncio_default_fixture_loop_scope`` defaults to
    ``function`` when neither an ini file nor ``-o`` sets it."""
    if not config.pluginmanager.hasplugin("asyncio"):
        return
    try:
        if config.getini(_LOOP_SCOPE):
            return  # the project's own choice
    except ValueError:  # a pytest-asyncio without that setting
        return
    # getini caches what it read: the default is read from there from now on.
    config._inicache[_LOOP_SCOPE] = _LOOP_SCOPE_DEFAULT


@pytest.fixture
def callr_platform() -> Callable[..., EmulatedPlatform]:
    """Factory of :class:`rtcontrol.testing.EmulatedPlatform`, strict by default:
    ``async with callr_platform(app, **options) as platform:``."""
    from . import EmulatedPlatform

    def factory(app: App, **options: Any) -> EmulatedPlatform:
        options.setdefault("strict", True)
        return EmulatedPlatform(app, **options)

    return factory


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run an ``async def`` test that uses ``callr_platform`` and no asyncio plugin claimed."""
    test = pyfuncitem.obj
    if not inspect.iscoroutinefunction(test) or FIXTURE not in pyfuncitem.fixturenames:
        return None
    if any(pyfuncitem.get_closest_marker(name) for name in _ASYNC_MARKERS):
        return None
    names = pyfuncitem._fixtureinfo.argnames
    asyncio.run(test(**{name: pyfuncitem.funcargs[name] for name in names}))
    return True
