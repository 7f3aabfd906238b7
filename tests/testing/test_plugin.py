"""The pytest plugin, tested as a user's project would see it: pytester runs pytest in
a subprocess, in a fresh directory with no configuration, with pytest-asyncio absent
(``-p no:asyncio``), in its default strict mode, and in auto mode."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
from rtcontrol import App, hangup, play, read, tts
from rtcontrol.emulator import Callee, Press


def build():
    app = App()

    @app.on_inbound
    async def welcome(call):
        return read(tts("Press 1"), max_digits=1).then(choice)

    @app.step
    async def choice(call):
        if call.digits == "9":
            raise ValueError("nine is not on the menu")
        return play(tts("Hello")).then(goodbye)

    @app.step
    async def goodbye(call):
        return hangup()

    return app


async def test_hello(callr_platform):
    async with callr_platform(build(), speed=400) as platform:
        t = await platform.call(Callee(actions=[Press("1")]))
    assert t.said == ["Press 1", "Hello"]


async def test_a_handler_error_fails_the_test(callr_platform):
    async with callr_platform(build(), speed=400) as platform:
        await platform.call(Callee(actions=[Press("9")]))


async def test_the_fallback_when_expected(callr_platform):
    async with callr_platform(build(), speed=400) as platform:
        with platform.expect_fallback() as failures:
            await platform.call(Callee(actions=[Press("9")]))
    assert "ValueError" in failures[0].traceback


async def test_not_strict(callr_platform):
    async with callr_platform(build(), speed=400, strict=False) as platform:
        t = await platform.call(Callee(actions=[Press("9")]))
    assert t.said[-1].startswith("We are sorry")
"""


def check(result: pytest.RunResult) -> None:
    result.assert_outcomes(passed=3, failed=1)
    text = result.stdout.str()
    assert "test_a_handler_error_fails_the_test" in text
    assert "HandlerFailed" in text
    assert "ValueError: nine is not on the menu" in text  # the handler's own traceback
    assert "in choice" in text


def test_async_tests_run_without_pytest_asyncio(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    check(result)


def test_async_tests_run_with_pytest_asyncio_in_its_strict_mode(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = function\n")
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    check(result)


def test_pytest_asyncio_auto_mode_keeps_running_them(pytester: pytest.Pytester) -> None:
    pytester.makeini(
        "[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n"
    )
    pytester.makepyfile(
        test_user=USER_TESTS
        + """

import asyncio
import pytest


@pytest.fixture
async def loop_of_fixture():
    return asyncio.get_running_loop()


async def test_one_loop_for_fixture_and_test(callr_platform, loop_of_fixture):
    assert asyncio.get_running_loop() is loop_of_fixture  # pytest-asyncio ran it, not us
"""
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4, failed=1)


def test_other_async_tests_are_left_to_pytest(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_other="async def test_without_the_fixture():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    assert result.ret != 0  # pytest refuses it (not run by the kit, not passed silently)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


def test_pytest_asyncio_gets_a_fixture_loop_scope_and_warns_nothing(
    pytester: pytest.Pytester,
) -> None:
    """A fresh directory, no configuration, pytest-asyncio installed: no
    ``PytestDeprecationWarning`` about ``asyncio_default_fixture_loop_scope`` on every
    run; the plugin gives it ``function``, the default of pytest-asyncio's next versions."""
    pytester.makepyfile(test_one="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    output = result.stdout.str() + result.stderr.str()
    assert "PytestDeprecationWarning" not in output
    assert "asyncio_default_fixture_loop_scope" in output  # pytest-asyncio's header line
    result.stdout.fnmatch_lines(["asyncio: *asyncio_default_fixture_loop_scope=function*"])


def test_a_fixture_loop_scope_of_the_project_is_kept(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_default_fixture_loop_scope = module\n")
    pytester.makepyfile(test_one="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["asyncio: *asyncio_default_fixture_loop_scope=module*"])
    overridden = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", "asyncio_default_fixture_loop_scope=session"
    )
    overridden.stdout.fnmatch_lines(["asyncio: *asyncio_default_fixture_loop_scope=session*"])
