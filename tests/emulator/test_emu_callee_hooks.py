"""The call's callee hooks: ``executor(name)`` and ``ring()``, instead of patches.

A scripted :class:`Callee` has neither hook and runs the platform's own executors and
ringing (the rest of ``tests/emulator`` pins that); any callee with both takes them over
(:class:`~rtcontrol.emulator.call.CalleeHooks`), the softphone's :class:`LiveCallee`
first. Waits are on the call's transcript or its events, never sleeps.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from typing import Any

from emu_helpers import SPEED, EmuFactory, ScriptedApp, cmd, tts

from rtcontrol.emulator import Callee, EmulatedCall, Emulator, LiveCallee
from rtcontrol.emulator.call import CalleeHooks
from rtcontrol.emulator.callee import Answer
from rtcontrol.emulator.execute import EXECUTORS, Executor, Outcome
from rtcontrol.emulator.runtime import CommandContext

LIVE = "+33600000099"
WAIT = 30.0


def test_importing_the_emulator_patches_no_executor() -> None:
    """In a fresh interpreter: the executors table is the same before and after the
    whole emulator (live callees, control API, page) is imported."""
    code = (
        "import json\n"
        "from rtcontrol.emulator import execute\n"
        "before = {k: id(v) for k, v in execute.EXECUTORS.items()}\n"
        "import rtcontrol.emulator, rtcontrol.emulator.live, rtcontrol.emulator.control\n"
        "import rtcontrol.devpage.run\n"
        "after = {k: id(v) for k, v in execute.EXECUTORS.items()}\n"
        "print(json.dumps([before == after, execute.EXECUTORS['read'] is execute._read,\n"
        "                  execute.EXECUTORS['record'] is execute._record,\n"
        "                  hasattr(rtcontrol.emulator.live, 'install')]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == [True, True, True, False]


def test_who_has_the_hooks() -> None:
    assert isinstance(LiveCallee(), CalleeHooks)
    assert not isinstance(Callee(), CalleeHooks)
    live = LiveCallee()
    assert live.executor("play") is None  # the platform's own
    assert live.executor("read") is not None
    assert live.executor("record") is not None
    assert live.executor("read") is not EXECUTORS["read"]


class Robot(Callee):
    """A callee with both hooks: it answers when told, and plays every prompt at once."""

    decision: Answer
    go: asyncio.Event
    rings: list[str]
    asked: list[str]

    def __init__(self, decision: Answer = "answer") -> None:
        super().__init__(name="robot")
        object.__setattr__(self, "decision", decision)
        object.__setattr__(self, "go", asyncio.Event())
        object.__setattr__(self, "rings", [])
        object.__setattr__(self, "asked", [])

    async def ring(self) -> Answer:
        self.rings.append("ringing")
        try:
            await self.go.wait()
        except asyncio.CancelledError:
            self.rings.append("cancelled")
            raise
        return self.decision

    def executor(self, name: str) -> Executor | None:
        self.asked.append(name)
        if name != "play":
            return None

        async def instant(ctx: CommandContext, p: dict[str, Any]) -> Outcome:
            ctx.callee("skips the prompt")
            return "SKIPPED", ""

        return instant


def _outbound(emu: Emulator, app: ScriptedApp, callee: Callee, timeout: int = 100) -> EmulatedCall:
    number = "+33600000001"
    emu.phonebook[number] = callee
    request = emu.realtime(emu.create_app(app.url).hash, {"number": number, "timeout": timeout})
    return emu.call_for_request(request)


async def test_an_executor_hook_replaces_one_command_and_leaves_the_others(
    make_emu: EmuFactory,
) -> None:
    app = ScriptedApp(
        cmd("play", 1, media_id=tts("A long prompt. " * 40)),
        cmd("read", 2, media_id=tts("Press 1."), max_digits=1, attempts=1, timeout_ms=1000),
    )
    emu = make_emu(app)
    robot = Robot()
    robot.go.set()
    call = _outbound(emu, app, robot)
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert robot.rings == ["ringing"]
    assert robot.asked == ["play", "read"]
    reports = [(r["call_status"], r["command"], r["command_result"]) for r in app.requests]
    # play: the hook's result; read: the platform's own (a silent callee times out)
    assert reports == [
        ("UP", "", ""),
        ("UP", "play", "SKIPPED"),
        ("UP", "read", "TIMEOUT"),
        ("HANGUP", "hangup", ""),
    ]
    assert "skips the prompt" in t.render()


async def test_a_ring_hook_that_declines_sends_the_unanswered_status(
    make_emu: EmuFactory,
) -> None:
    app = ScriptedApp()
    emu = make_emu(app)
    robot = Robot("busy")
    call = _outbound(emu, app, robot)
    assert call.ringing
    await call.wait_until(lambda t: "dialing" in t.render())
    assert app.requests == []  # nothing reaches the app while it rings
    robot.go.set()
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert [r["call_status"] for r in app.requests] == ["BUSY"]
    assert (t.ended_by, call.ringing) == ("unanswered", False)


async def test_a_ring_hook_that_never_decides_is_cancelled_at_the_timeout(
    make_emu: EmuFactory,
) -> None:
    app = ScriptedApp()
    emu = make_emu(app, speed=SPEED)  # 30 s of ringing in 0.3 s
    robot = Robot()
    call = _outbound(emu, app, robot, timeout=30)
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert robot.rings == ["ringing", "cancelled"]
    assert [r["call_status"] for r in app.requests] == ["NOANSWER"]
    assert t.ended_by == "unanswered"


async def test_a_cancel_while_a_ring_hook_rings_stops_it(make_emu: EmuFactory) -> None:
    app = ScriptedApp()
    emu = make_emu(app)
    robot = Robot()
    call = _outbound(emu, app, robot)
    await call.wait_until(lambda t: "dialing" in t.render())
    assert emu.break_call(call.callid) is False  # nothing to break while ringing
    assert emu.hangup_call(call.callid) is True
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert robot.rings == ["ringing", "cancelled"]
    assert app.requests == []
    assert t.ended_by == "cancel"
    assert "cancelled while ringing" in t.render()


# ---------------------------------------------------------------- the softphone's callee


async def _stream(emu: Emulator, callid: int) -> list[str]:
    """The types of a call's events, replayed from its start until ``call.ended``."""
    types = []
    with emu.bus.subscribe(callid, since=0) as events:
        async with asyncio.timeout(WAIT):
            async for event in events:
                types.append(event.type)
                if event.type == "call.ended":
                    return types
    raise AssertionError(f"no call.ended: {types}")


def _ring_live(emu: Emulator, app: ScriptedApp, timeout: int = 300) -> EmulatedCall:
    emu.live_numbers.add(LIVE)
    request = emu.realtime(emu.create_app(app.url).hash, {"number": LIVE, "timeout": timeout})
    call = emu.call_for_request(request)
    assert isinstance(call.callee, LiveCallee)
    return call


async def test_a_live_outbound_call_rings_until_picked_up_then_takes_keys(
    make_emu: EmuFactory,
) -> None:
    # a 40 s prompt at real speed: the key sent once the read starts lands in it
    prompt = tts("Press 1 for sales. " * 30)
    app = ScriptedApp(cmd("read", "ask", media_id=prompt, max_digits=1, attempts=1))
    emu = make_emu(app, speed=1)
    call = _ring_live(emu, app)
    assert emu.ringing == {call.callid: call}
    assert emu.call_info(call.callid)["state"] == "ringing"
    await call.wait_until(lambda t: "dialing" in t.render())
    assert app.requests == []
    assert emu.answer(call.callid, "answer") is True
    assert emu.answer(call.callid, "answer") is False  # decided already
    await call.wait_command("read")
    assert emu.ringing == {}
    assert emu.call_info(call.callid)["state"] == "up"
    assert isinstance(call.callee, LiveCallee)
    assert call.callee.line.press("1") is True
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert [(r["call_status"], r["command"], r["command_result"]) for r in app.requests] == [
        ("UP", "", ""),
        ("UP", "read", "1"),
        ("HANGUP", "hangup", ""),
    ]
    assert t.hangup_count == 1
    # the stream: rings, then starts (answered) before the first POST, then ends
    types = await _stream(emu, call.callid)
    assert types[0] == "call.ringing"
    assert types.count("call.started") == 1
    assert types.index("call.started") < types.index("post")
    assert types[-1] == "call.ended"


async def test_a_live_call_declined_by_the_person(make_emu: EmuFactory) -> None:
    app = ScriptedApp()
    emu = make_emu(app, speed=1)
    call = _ring_live(emu, app)
    await call.wait_until(lambda t: "dialing" in t.render())
    assert emu.answer(call.callid, "rejected") is True
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert [r["call_status"] for r in app.requests] == ["REJECTED"]
    assert t.ended_by == "unanswered"
    assert emu.answer(call.callid, "answer") is False
    assert "call.started" not in await _stream(emu, call.callid)


async def test_a_live_call_unanswered_at_the_timeout_cannot_be_picked_up_after(
    make_emu: EmuFactory,
) -> None:
    app = ScriptedApp()
    emu = make_emu(app, speed=SPEED)  # 30 s of ringing in 0.3 s
    call = _ring_live(emu, app, timeout=30)
    async with asyncio.timeout(WAIT):
        t = await call.wait()
    assert [r["call_status"] for r in app.requests] == ["NOANSWER"]
    assert t.ended_by == "unanswered"
    assert isinstance(call.callee, LiveCallee)
    assert call.callee.line.pick_up() is False  # the ringing is over
    assert emu.ringing == {}


async def test_shutdown_while_a_live_call_rings_posts_nothing(make_emu: EmuFactory) -> None:
    app = ScriptedApp()
    emu = make_emu(app, speed=1)
    call = _ring_live(emu, app)
    await call.wait_until(lambda t: "dialing" in t.render())
    async with asyncio.timeout(WAIT):
        await emu.aclose()
        t = await call.wait()
    assert app.requests == []
    assert t.ended_by == "cancel"
    assert (await _stream(emu, call.callid))[0] == "call.ringing"
