"""The README's runnable examples run."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

README = Path(__file__).resolve().parents[1] / "README.md"


def python_block(heading: str) -> str:
    text = README.read_text()
    section = text.split(f"## {heading}\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


async def test_the_test_kit_example_passes() -> None:
    """Run as the pytest plugin runs it: the fixture is a strict platform factory."""
    import functools

    from rtcontrol.testing import EmulatedPlatform

    namespace: dict[str, Any] = {}
    exec(compile(python_block("Testing your IVR offline"), "README.md", "exec"), namespace)
    await namespace["test_sales"](functools.partial(EmulatedPlatform, strict=True))


async def test_the_control_api_example_drives_a_live_caller() -> None:
    """The control API example, run as the pytest plugin runs it."""
    import functools

    from rtcontrol.testing import EmulatedPlatform

    namespace: dict[str, Any] = {}
    block = python_block("The emulator as a service, and a browser softphone")
    assert "platform.control" in block
    exec(compile(block, "README.md", "exec"), namespace)
    await namespace["test_a_person_calls_support"](functools.partial(EmulatedPlatform, strict=True))


async def test_the_client_example_against_the_emulator(monkeypatch: Any) -> None:
    """The client example, pointed at the emulator instead of api.callr.com."""
    import httpx

    from rtcontrol.emulator import DEFAULT_API_KEY, Emulator
    from rtcontrol.rpc import CallrClient

    source = python_block("The JSON-RPC client")
    async with Emulator() as emu:
        app_hash = emu.create_app("http://127.0.0.1:9/callback").hash
        source = source.replace('"4346423A"', repr(app_hash))
        monkeypatch.setenv("CALLR_API_URL", "http://callr.test/json-rpc/v1.1/")
        monkeypatch.setenv("CALLR_API_KEY", DEFAULT_API_KEY)
        transport = httpx.ASGITransport(emu.rpc_app)
        real_from_env = CallrClient.from_env

        def from_env(**kw: Any) -> CallrClient:
            return real_from_env(transport=transport, **kw)

        monkeypatch.setattr(CallrClient, "from_env", from_env)

        async def body() -> None:
            namespace: dict[str, Any] = {}
            code = "async def run():\n" + "".join(f"    {line}\n" for line in source.splitlines())
            exec(compile(code, "README.md", "exec"), namespace)
            await namespace["run"]()

        # The example breaks and hangs up call 421889: the emulator's first call id.
        request_hash = emu.realtime(app_hash, {"number": "+33612345678", "timeout": 30})
        assert emu.call_for_request(request_hash).callid == 421889
        try:
            await body()
        except Exception as exc:  # only an unknown call id may fail, never the client
            raise AssertionError(f"README client example failed: {exc!r}") from exc


def test_the_settings_table_is_generated_from_the_settings() -> None:
    from rtcontrol.settings import Settings, settings_table

    text = README.read_text()
    table = text.split("<!-- settings:start -->\n", 1)[1].split("<!-- settings:end -->", 1)[0]
    assert table == settings_table()
    for name in Settings.model_fields:  # every setting, none missing
        assert f"`RTCONTROL_{name.upper()}`" in table


def test_the_straight_line_ivr_is_apps_menu_straight() -> None:
    """The README's straight-line IVR is, line for line, the flow in apps/menu_straight.py."""
    block = python_block("The same IVR, straight-line")
    source = (README.parent / "apps" / "menu_straight.py").read_text()
    flow = block.split("\n\n\napp = App()")[0].split("CHOICES", 1)[1]
    assert flow in source


async def test_the_straight_line_ivr_runs_through_the_emulator() -> None:
    from rtcontrol.emulator import Callee, Press
    from rtcontrol.testing import EmulatedPlatform, random_credentials

    namespace: dict[str, Any] = {}
    block = python_block("The same IVR, straight-line").replace(
        "app = App()", "app = App(**random_credentials())"
    )
    namespace["random_credentials"] = random_credentials
    exec(compile(block, "README.md", "exec"), namespace)
    agents = namespace["AGENTS"]
    phonebook = {n: Callee(answer_delay=1.0, hangup_after=2.0) for n in agents.values()}
    async with EmulatedPlatform(namespace["app"], speed=400.0, phonebook=phonebook) as p:
        t = await p.call(Callee(actions=[Press("9"), Press("2")]))
    assert t.executed == ["read", "read", "dialout"]
    assert t.errors == []
    assert t.hangup_count == 1


async def test_the_ask_example_runs_through_the_emulator() -> None:
    from rtcontrol.emulator import Callee, Press, Silence
    from rtcontrol.testing import EmulatedPlatform

    namespace: dict[str, Any] = {}
    exec(
        compile(python_block("Prompts with retries, a voice, dependencies"), "README.md", "exec"),
        namespace,
    )
    agents = namespace["AGENTS"]
    phonebook = {n: Callee(answer_delay=1.0, hangup_after=2.0) for n in agents.values()}
    async with EmulatedPlatform(
        namespace["app"], speed=400.0, phonebook=phonebook, strict=True
    ) as p:
        t = await p.call(Callee(actions=[Press("7"), Silence(), Press("2")]))
    assert t.executed == ["read", "read", "read", "dialout"]
    assert t.said[1].startswith("That is not a valid choice.")
    assert t.said[2].startswith("We did not hear you.")
    assert t.ran[-1].params["targets"][0]["number"] == agents["2"]


async def test_the_first_ivr_path_runs(tmp_path: Any, monkeypatch: Any) -> None:
    """Steps 2 and 3 of "Your first IVR in 10 minutes", as written."""
    import functools
    import sys

    from rtcontrol.testing import EmulatedPlatform

    section = README.read_text().split("## Your first IVR in 10 minutes\n", 1)[1]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    ivr, test = (textwrap_dedent(b) for b in blocks[:2])
    (tmp_path / "myivr.py").write_text(ivr)
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("myivr", None)
    namespace: dict[str, Any] = {}
    exec(compile(test, "README.md", "exec"), namespace)
    await namespace["test_french"](functools.partial(EmulatedPlatform, strict=True))


def textwrap_dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text)
