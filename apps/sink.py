"""Where the examples put what they collect: a list in memory, and JSON lines on disk.

The list is per process; the file (named by an environment variable) is the shared
record when several workers run. A real app would write to its database here.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Self


class JsonLines:
    """Records kept in ``records`` and appended to ``path`` as JSON lines."""

    #: Environment variable naming the file, for :meth:`from_env`.
    ENV: ClassVar[str] = ""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else None
        self.records: list[dict[str, Any]] = []

    @classmethod
    def from_env(cls) -> Self:
        return cls(os.environ.get(cls.ENV) or None)

    async def add(self, record: dict[str, Any]) -> None:
        self.records.append(record)
        if self.path is not None:
            line = json.dumps(record, ensure_ascii=False) + "\n"
            await asyncio.to_thread(_append, self.path, line)


def _append(path: Path, line: str) -> None:
    with path.open("a", encoding="utf-8") as f:
        f.write(line)
