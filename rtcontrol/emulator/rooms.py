"""Conference rooms shared by every call of one emulator.

Rooms are keyed by ``str(id)`` (so ``5`` and ``"5"`` meet). A room exists while someone
is in it; when a member leaves and the last one left has ``auto_leave`` set, that one is
told it is alone. The ``conference`` commands themselves live in :mod:`.bridge`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

__all__ = ["Member", "Room", "Rooms"]


@dataclass(eq=False)
class Member:
    callid: int
    auto_leave: bool
    alone: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class Room:
    id: str
    members: list[Member] = field(default_factory=list)


class Rooms:
    """All conference rooms of one emulator; a room exists while someone is in it."""

    def __init__(self) -> None:
        self._rooms: dict[str, Room] = {}

    def get(self, room_id: str) -> Room | None:
        return self._rooms.get(room_id)

    def members(self, room_id: str) -> list[int]:
        """Callids currently in the room (for tests and the transcript)."""
        room = self._rooms.get(room_id)
        return [m.callid for m in room.members] if room else []

    def join(self, room_id: str, member: Member) -> int:
        room = self._rooms.setdefault(room_id, Room(room_id))
        room.members.append(member)
        return len(room.members)

    def leave(self, room_id: str, member: Member) -> None:
        room = self._rooms.get(room_id)
        if room is None or member not in room.members:
            return
        room.members.remove(member)
        if len(room.members) == 1 and room.members[0].auto_leave:
            room.members[0].alone.set()
        if not room.members:
            del self._rooms[room_id]
