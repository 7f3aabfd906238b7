"""Every ``::`` code block in the docstrings of ``rtcontrol/testing/*.py`` runs, as written.

A block is executed in a fresh namespace, then each ``test_*`` function it defines is
called (awaited when async; given the ``callr_platform`` factory when it asks for it).
A block that defines no test fails: an example must show its result.
"""

from __future__ import annotations

import ast
import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

import rtcontrol.testing

PACKAGE = Path(rtcontrol.testing.__file__).parent


def docstrings(path: Path) -> list[tuple[str, str]]:
    """(where, docstring) of the module and of every class and function in it."""
    tree = ast.parse(path.read_text(), str(path))
    found = [(path.stem, ast.get_docstring(tree, clean=True) or "")]
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            found.append((f"{path.stem}.{node.name}", ast.get_docstring(node, clean=True) or ""))
    return found


def code_blocks(doc: str) -> list[str]:
    """The literal blocks of a reST docstring: the indented lines after a line ending in ``::``."""
    blocks: list[str] = []
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if not line.rstrip().endswith("::"):
            continue
        indent = len(line) - len(line.lstrip())
        body: list[str] = []
        for following in lines[i + 1 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= indent:
                break
            body.append(following)
        text = textwrap.dedent("\n".join(body)).strip("\n")
        if text:
            blocks.append(text + "\n")
    return blocks


EXAMPLES = [
    pytest.param(block, id=f"{where}-{n}")
    for path in sorted(PACKAGE.glob("*.py"))
    for where, doc in docstrings(path)
    for n, block in enumerate(code_blocks(doc), 1)
]


def test_the_extractor_finds_the_blocks() -> None:
    doc = "Intro::\n\n    x = 1\n\n    y = 2\n\nAfter.\n\nAgain::\n\n    z = 3\n"
    assert code_blocks(doc) == ["x = 1\n\ny = 2\n", "z = 3\n"]
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    with_examples = {e.id.split("-")[0].split(".")[0] for e in EXAMPLES}  # type: ignore[union-attr]
    assert with_examples == modules  # each module of the kit shows itself in use


@pytest.mark.parametrize("block", EXAMPLES)
async def test_the_example_runs(block: str, callr_platform: Any) -> None:
    namespace: dict[str, Any] = {"__name__": "rtcontrol_testing_example"}
    exec(compile(block, "<docstring example>", "exec"), namespace)
    tests = [f for name, f in namespace.items() if name.startswith("test_") and callable(f)]
    assert tests, "the example defines no test_* function"
    for test in tests:
        wants = "callr_platform" in inspect.signature(test).parameters
        result = test(**({"callr_platform": callr_platform} if wants else {}))
        if inspect.isawaitable(result):
            await result
