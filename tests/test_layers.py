"""The layers, checked from the source: who may import whom, and no import cycle.

The import graph is read with ``ast`` from every module of ``rtcontrol``, type-only
imports (``if TYPE_CHECKING:``) and imports inside functions included: a lazy or
type-only import is still a dependency.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent / "rtcontrol"

#: Third-party packages of the web and HTTP layers.
WEB = ("fastapi", "starlette", "uvicorn", "httpx")
#: What each package may not import (prefixes of module names).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "rtcontrol.core": (
        *WEB,
        "rtcontrol.app",
        "rtcontrol.adapters",
        "rtcontrol.web",
        "rtcontrol.endpoint",
        "rtcontrol.rpc",
        "rtcontrol.emulator",
        "rtcontrol.testing",
        "rtcontrol.cli",
        "rtcontrol.demo",
    ),
    "rtcontrol.adapters": ("rtcontrol.app", "rtcontrol.rpc", "rtcontrol.emulator", "rtcontrol.cli"),
    "rtcontrol.store": ("rtcontrol.core", "rtcontrol.app", "rtcontrol.adapters", *WEB),
    "rtcontrol.emulator": ("rtcontrol.core", "rtcontrol.app", "rtcontrol.adapters"),
    "rtcontrol.app": (*WEB, "rtcontrol.emulator", "rtcontrol.cli", "rtcontrol.testing"),
}
#: Leaves: the wire-level modules import nothing above them.
LEAVES = (
    "rtcontrol.errors",
    "rtcontrol.protocol",
    "rtcontrol.media",
    "rtcontrol.commands",
    "rtcontrol.results",
    "rtcontrol.settings",
    "rtcontrol.validate",
    "rtcontrol.events",
)
ABOVE_LEAVES = (
    "rtcontrol.core",
    "rtcontrol.app",
    "rtcontrol.store",
    "rtcontrol.adapters",
    "rtcontrol.rpc",
)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, resolved to absolute names."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                prefix = ".".join(base)
                target = f"{prefix}.{node.module}" if node.module else prefix
            else:
                target = node.module or ""
            submodules = {f"{target}.{alias.name}" for alias in node.names}
            submodules = {m for m in submodules if _is_module(m)}
            # `from . import keys` imports the module keys, not (only) its package
            found.update(submodules)
            if len(submodules) < len(node.names):
                found.add(target)
    return found


def _is_module(name: str) -> bool:
    path = ROOT.parent / name.replace(".", "/")
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in ROOT.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges[name] = {m for m in imports_of(path) if m in modules and m != name}
    return edges


def test_the_graph_sees_every_module() -> None:
    edges = graph()
    assert "rtcontrol.core.engine" in edges
    assert "rtcontrol.core.transaction" in edges["rtcontrol.core.engine"]
    assert "rtcontrol.core.call" in edges["rtcontrol.core.flow"]


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_rules(package: str) -> None:
    forbidden = FORBIDDEN[package]
    broken = []
    for path in ROOT.rglob("*.py"):
        name = module_name(path)
        if name != package and not name.startswith(package + "."):
            continue
        for imported in sorted(imports_of(path)):
            if any(imported == f or imported.startswith(f + ".") for f in forbidden):
                broken.append(f"{name} imports {imported}")
    assert broken == []


def test_leaves_import_nothing_above_them() -> None:
    broken = []
    for leaf in LEAVES:
        path = ROOT.parent / (leaf.replace(".", "/") + ".py")
        for imported in imports_of(path):
            if any(imported == a or imported.startswith(a + ".") for a in ABOVE_LEAVES):
                broken.append(f"{leaf} imports {imported}")
    assert broken == []


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components larger than one module."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return cycles


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert find_cycles(edges) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_type_only_and_lazy_imports_are_edges(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "m.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    import typed_only\n"
        "def f():\n    import lazy\n"
    )
    tree = ast.parse(module.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert names == {"typed_only", "lazy"}
    # and the real graph has the engine's type-only imports
    assert "rtcontrol.core.call" in imports_of(ROOT / "core" / "flow.py")


def test_no_import_cycle_anywhere() -> None:
    assert find_cycles(graph()) == []


def test_importing_rtcontrol_and_building_an_app_loads_no_web_framework() -> None:
    code = (
        "import sys, json\n"
        "import rtcontrol\n"
        "app = rtcontrol.App(allow_no_auth=True)\n"
        "@app.on_inbound\n"
        "async def start(call):\n"
        "    return rtcontrol.hangup()\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{list(WEB)!r} or m.startswith(('rtcontrol.adapters', 'rtcontrol.emulator', "
        "'rtcontrol.rpc', 'rtcontrol.cli')))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []


def test_the_engine_loads_no_web_framework_nor_http_client() -> None:
    code = (
        "import sys, json\n"
        "import rtcontrol.core.engine\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"{list(WEB)!r} or m.startswith(('rtcontrol.adapters', 'rtcontrol.rpc', "
        "'rtcontrol.emulator')))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == []
