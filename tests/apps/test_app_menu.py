"""apps/menu.py and its straight-line twin apps/menu_straight.py: whole calls through
the emulator, and the README's copy of the step-style one.

Every call test runs on both modules (the ``twin`` fixture): the twins must send the
same commands with the same parameters and say the same texts.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
import pytest_asyncio
from app_kit import (
    CALLER,
    SPEED,
    assert_ended,
    params,
    said,
    startup_messages,
    without_credentials,
)

from apps.menu import AGENTS
from rtcontrol import ConfigurationError
from rtcontrol.emulator import Callee, HangUp, Press, Silence
from rtcontrol.testing import EmulatedPlatform, random_credentials

ROOT = Path(__file__).resolve().parents[2]
SALES, SUPPORT = AGENTS["1"], AGENTS["2"]
#: The agents answer after 2 s and hang up 5 s later, which ends the bridged call.
PHONEBOOK = {number: Callee(answer_delay=2.0, hangup_after=5.0) for number in AGENTS.values()}


#: Tests that place their calls on the module's shared ``http`` platform run in its loop.
shared = pytest.mark.asyncio(loop_scope="module")
TWINS = ["apps.menu", "apps.menu_straight"]


@pytest.fixture(scope="module", params=TWINS)
def twin(request: pytest.FixtureRequest) -> ModuleType:
    """The menu module under test: the step-style one, then its straight-line twin."""
    return importlib.import_module(request.param)


def platform(twin: ModuleType, over: Literal["asgi", "http"] = "http") -> EmulatedPlatform:
    app = twin.build(**random_credentials())
    return EmulatedPlatform(app, over=over, speed=SPEED, phonebook=PHONEBOOK)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def http(twin: ModuleType) -> AsyncIterator[EmulatedPlatform]:
    """One app and one emulator over loopback HTTP, shared by the module's calls."""
    async with platform(twin) as p:
        yield p


def test_the_twins_dial_the_same_agents(twin: ModuleType) -> None:
    assert twin.AGENTS == AGENTS
    straight = twin.build(**random_credentials()).flow_spec("menu").script is not None
    assert straight == twin.__name__.endswith("_straight")


@shared
async def test_press_1_is_put_through_to_sales(http: EmulatedPlatform) -> None:
    t = await http.call(Callee(actions=[Press("1")]))
    assert t.executed == ["read", "dialout"]
    assert params(t, "dialout")[0]["targets"] == [{"number": SALES, "timeout": 30}]
    assert t.requests[-1]["command"] == "dialout"
    assert t.requests[-1]["command_result"] == "ANSWER"
    assert_ended(t, "bridge")


@shared
async def test_an_invalid_key_then_2_reaches_support(http: EmulatedPlatform) -> None:
    t = await http.call(Callee(actions=[Press("7"), Press("2")]))
    assert t.executed == ["read", "read", "dialout"]
    assert said(t)[1].startswith("That is not a valid choice.")
    assert params(t, "dialout")[0]["targets"][0]["number"] == SUPPORT
    assert_ended(t, "bridge")


@shared
async def test_a_silent_caller_hears_three_prompts_then_goodbye(http: EmulatedPlatform) -> None:
    t = await http.call(Callee(actions=[Silence(), Silence(), Silence()]))
    assert t.executed == ["read", "read", "read", "play", "hangup"]
    assert [r["command_result"] for r in t.requests if r["command"] == "read"] == ["TIMEOUT"] * 3
    assert said(t)[1].startswith("We did not hear you.")
    assert said(t)[-1] == "Sorry, we could not help you. Goodbye."
    assert_ended(t, "app")


async def test_three_mistakes_of_both_kinds_end_the_call(twin: ModuleType) -> None:
    async with platform(twin, over="asgi") as p:
        t = await p.call(Callee(actions=[Press("9"), Silence(), Press("*")]))
    assert t.executed == ["read", "read", "read", "play", "hangup"]
    assert said(t)[1].startswith("That is not a valid choice.")
    assert said(t)[2].startswith("We did not hear you.")
    assert_ended(t, "app")


@shared
async def test_a_caller_hanging_up_during_the_welcome(http: EmulatedPlatform) -> None:
    t = await http.call(Callee(actions=[HangUp(after=1.5)]))
    assert t.executed == ["read"]
    assert t.requests[-1]["command"] == "read"
    assert_ended(t, "callee")


async def test_in_process_press_2(twin: ModuleType) -> None:
    async with platform(twin, over="asgi") as p:
        t = await p.call(Callee(actions=[Press("2")], answer_delay=0.5), cli_number=CALLER)
    assert t.executed == ["read", "dialout"]
    assert_ended(t, "bridge")


@shared
async def test_an_outbound_call_runs_the_menu_too(http: EmulatedPlatform) -> None:
    t = await http.start_call("+33699999999", Callee(actions=[Press("1")]), flow="menu")
    assert t.direction == "outbound"
    assert t.executed == ["read", "dialout"]
    assert_ended(t, "bridge")


def _readme_block(heading: str) -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n{heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1).splitlines()


def test_the_readme_menu_is_apps_menu() -> None:
    """Every line of the README's menu appears in apps/menu.py, in order.

    The README registers the flow at module level (``app = App()``); apps/menu.py does
    the same inside ``build(**settings)``, so those lines are compared without their
    indentation and ``App()`` may take the settings.
    """
    block = _readme_block("## A menu IVR")
    source = (ROOT / "apps" / "menu.py").read_text(encoding="utf-8").splitlines()
    flow_end = block.index("app = App()")
    # The imports and the whole Menu class: verbatim, in one piece.
    flow = [line for line in block[:flow_end] if line.strip()]
    start = source.index(flow[0])
    assert [line for line in source[start:] if line.strip()][: len(flow)] == flow
    # The registration: same statements, inside build().
    position = start + len(flow)
    for line in block[flow_end:]:
        if not line.strip():
            continue
        wanted = line.strip().replace("App()", "App(**settings)")
        found = [i for i, s in enumerate(source) if i >= position and s.strip() == wanted]
        assert found, f"README line {line!r} is not in apps/menu.py (after line {position})"
        position = found[0] + 1


async def test_the_module_app_serves_whole_calls(
    twin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``uvicorn apps.menu:app``: the module-level app, configured from the environment."""
    credentials = random_credentials()
    monkeypatch.setenv("RTCONTROL_CALLBACK_LOGIN", credentials["callback_login"])
    monkeypatch.setenv("RTCONTROL_CALLBACK_PASSWORD", credentials["callback_password"])
    module = importlib.reload(twin)
    try:
        assert module.app.settings.callback_password == credentials["callback_password"]
        async with EmulatedPlatform(module.app, over="http", speed=SPEED, phonebook=PHONEBOOK) as p:
            t = await p.call(Callee(actions=[Press("8"), Press("1")]))
        assert t.executed == ["read", "read", "dialout"]
        assert_ended(t, "bridge")
    finally:
        monkeypatch.undo()
        importlib.reload(twin)  # a fresh module app for anyone else


async def test_the_module_app_refuses_to_start_without_credentials(
    twin: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    without_credentials(monkeypatch)
    app = twin.build()
    with pytest.raises(ConfigurationError, match="RTCONTROL_CALLBACK_LOGIN"):
        app.asgi()
    [failed] = await startup_messages(app)  # what uvicorn sees: start-up fails, with the reason
    assert failed["type"] == "lifespan.startup.failed"
    assert "RTCONTROL_CALLBACK_LOGIN" in failed["message"]
