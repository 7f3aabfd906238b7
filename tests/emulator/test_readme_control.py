"""The README's control API table and callee script reference, checked against the code:
every route documented with its body's keys, ``ControlClient``'s constructor, and the
callee script example loaded as ``rtcontrol emulator --callee`` loads it."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from rtcontrol.emulator import (
    Callee,
    ControlClient,
    Emulator,
    HangUp,
    Leave,
    Press,
    Silence,
    Speak,
)
from rtcontrol.emulator.control import (
    Decline,
    Digits,
    InboundCall,
    NewApp,
    OutboundCall,
    Phone,
    Speech,
    _Body,
    build_control_app,
)
from rtcontrol.emulator.scripts import CalleeScript, _Action, load_script

README = Path(__file__).resolve().parents[2] / "README.md"

#: The routes that take a body, and its model.
BODIES: dict[tuple[str, str], type[_Body]] = {
    ("POST", "/apps"): NewApp,
    ("PUT", "/phonebook/{}"): Phone,
    ("POST", "/calls"): InboundCall,
    ("POST", "/calls/outbound"): OutboundCall,
    ("POST", "/calls/{}/dtmf"): Digits,
    ("POST", "/calls/{}/speech"): Speech,
    ("POST", "/calls/{}/decline"): Decline,
}


def section(heading: str) -> str:
    text = README.read_text()
    return text.split(f"### {heading}\n", 1)[1].split("\n#", 1)[0]


def _path(text: str) -> str:
    path = text.split("?", 1)[0].removeprefix("/control/v1") or "/"
    return re.sub(r"\{[^}]*\}", "{}", path)


def documented_routes() -> dict[tuple[str, str], str]:
    """``(method, path) -> body cell`` of the README's control API table."""
    rows = section("The emulator as a service, and a browser softphone").splitlines()
    found: dict[tuple[str, str], str] = {}
    for row in rows:
        if not row.startswith("| `") or "/control/v1" not in row:
            continue
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        items = re.findall(r"`([^`]+)`", cells[0])
        method, first = items[0].split(" ", 1)
        for path in [first, *items[1:]]:
            found[(method, _path(path))] = cells[1]
    return found


def model_keys(model: type[_Body]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


async def test_every_route_is_in_the_table_with_its_bodys_keys() -> None:
    async with Emulator() as emu:
        app = build_control_app(emu)
    routes = {
        (method, _path(route.path))
        for route in app.routes
        for method in getattr(route, "methods", ()) or ()
        if method != "HEAD"
    }
    documented = documented_routes()
    assert set(documented) == routes
    assert set(BODIES.values()) == set(_Body.__subclasses__())  # a new body: document it
    for route, body in documented.items():
        model = BODIES.get(route)
        if model is None:
            assert body == "", f"{route} takes no body"
            continue
        for key in model_keys(model):
            assert f'"{key}"' in body, f"{route}: {key} is not documented"
        quoted = set(re.findall(r'"(\w+)"\??:?', model.shape)) - {"live", "busy", "rejected"}
        assert quoted <= model_keys(model), f"{model.__name__}.shape names {quoted}"


def test_the_phonebook_body_is_an_object_wherever_the_readme_names_it() -> None:
    text = README.read_text()
    assert 'with `"live"`' not in text
    assert '(`PUT /control/v1/phonebook/{number}` with `{"callee": "live"}`)' in text


def test_control_clients_constructor_is_documented() -> None:
    text = section("The emulator as a service, and a browser softphone")
    signature = inspect.signature(ControlClient.__init__)
    shown = "ControlClient(base_url, *, transport=None, timeout=30.0)"
    assert shown in text
    names = [p for p in signature.parameters if p != "self"]
    assert (
        shown
        == f"ControlClient({names[0]}, *, "
        + ", ".join(f"{n}={signature.parameters[n].default!r}" for n in names[1:])
        + ")"
    )


def yaml_example() -> str:
    match = re.search(r"```yaml\n(.*?)```", section("Callee scripts"), re.S)
    assert match, "no yaml block under Callee scripts"
    return match.group(1)


def test_the_callee_script_example_loads_as_the_emulator_loads_it(tmp_path: Path) -> None:
    script = tmp_path / "callees.yaml"
    script.write_text(yaml_example())
    default, phonebook = load_script(script)
    assert default == Callee(
        answer_delay=1,
        actions=[Press("7"), Press("1", 0.5, True), Silence(), Speak(4), HangUp(2)],
        when_done="hangup",
    )
    assert phonebook == {
        "+33100000002": Callee(answer_delay=3, hangup_after=20, name="sales agent"),
        "+33100000003": Callee("busy"),
        "+33100000004": Callee(actions=[Leave(30)], hangup_during="dialout", hangup_delay=1.5),
    }


@pytest.mark.parametrize(
    "key",
    sorted(set(CalleeScript.model_fields) | set(_Action.model_fields) | {"default", "phonebook"}),
)
def test_every_key_of_a_callee_script_is_documented(key: str) -> None:
    text = section("Callee scripts")
    assert f"`{key}`" in text or f'"{key}"' in text or f"{key}:" in yaml_example()
