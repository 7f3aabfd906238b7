"""Commands that connect a call to other parties: ``dialout`` and the two conferences.

``dialout`` rings its targets one after the other, each for its ``timeout``, using the
emulator's phonebook (a softphone number, ``"live"``, rings the page only for outbound
calls: a dialout leg to it is answered by the phonebook's callee for it, or the default).
The first that answers hears the ``whisper``, then both legs are bridged until one side
hangs up, which ends the call (HANGUP POST carrying ``dialout`` and
``dialout_answered_result``). When nobody answers, the command completes with the last
target's dial status (``dialout_status`` table) and the flow continues. A break during
the bridge hangs up the leg and hands the call back to the app (INFERENCE).

Conference rooms are keyed by ``str(id)`` (so ``5`` and ``"5"`` meet) and shared by every
call of the emulator. A member leaves with ``*`` (a ``Leave`` action), when it becomes
the last member after someone else left and ``auto_leave_when_alone`` is set, or by
hanging up.
"""

from __future__ import annotations

import math
from typing import Any

from .callee import HangUp, Leave, Press
from .rooms import Member, Room, Rooms
from .runtime import CommandContext, EndCall, Leg

__all__ = ["Member", "Room", "Rooms", "conference", "dialout"]


async def _pin(ctx: CommandContext, p: dict[str, Any]) -> bool:
    gap = ctx.settings.digit_gap
    for attempt in range(1, p["pin_max_tries"] + 1):
        await ctx.sleep(ctx.media(p["pin_prompt"]))
        action = ctx.take()
        if isinstance(action, HangUp):
            ctx.hang_up_in(action.after)
            await ctx.sleep(math.inf)
        if isinstance(action, Press):
            entered = action.digits.split("#", 1)[0]
            await ctx.sleep(action.after + len(action.digits) * gap)
            ctx.callee(f"enters PIN {entered!r} (try {attempt})")
            if entered == p["pin_code"]:
                await ctx.sleep(ctx.media(p["pin_valid"]))
                return True
        else:
            ctx.callee(f"enters no PIN (try {attempt})")
            await ctx.sleep(float(p["pin_wait"]))
        await ctx.sleep(ctx.media(p["pin_error"]))
    return False


async def conference(ctx: CommandContext, p: dict[str, Any]) -> tuple[str, str]:
    """``conference`` and ``simple_conference`` (which has no prompts and no PIN)."""
    full = "welcome" in p
    room_id = str(p["id"])
    if full:
        await ctx.sleep(ctx.media(p["welcome"]))
        if p["pin_code"] and not await _pin(ctx, p):
            ctx.platform(f"conference {room_id}: too many wrong PINs")
            return "", ctx.settings.conference_pin_error
    member = Member(ctx.callid, auto_leave=p["auto_leave_when_alone"])
    rooms = ctx.services.rooms
    count = rooms.join(room_id, member)
    ctx.platform(f"joins conference {room_id!r} ({count} in the room)")
    try:
        action = ctx.take()
        leave_after: float | None = None
        if isinstance(action, Leave):
            leave_after = action.after
        elif isinstance(action, Press) and "*" in action.digits:
            leave_after = action.after + action.digits.index("*") * ctx.settings.digit_gap
        elif isinstance(action, HangUp):
            ctx.hang_up_in(action.after)
        if await ctx.wait(member.alone, leave_after):
            ctx.platform(f"conference {room_id!r}: alone, leaves automatically")
            if full:
                await ctx.sleep(ctx.media(p["auto_leave_announce"]))
        else:
            ctx.callee(f"presses '*' to leave conference {room_id!r}")
    finally:
        rooms.leave(room_id, member)
    return ctx.settings.default_result, ""


async def _bridge(ctx: CommandContext, p: dict[str, Any], leg: Leg) -> None:
    ctx.services.legs[leg.callid] = leg
    try:
        await ctx.sleep(ctx.media(p["whisper"]))
        ctx.platform(f"dialout: bridged with {leg.number} (leg callid {leg.callid})")
        ctx.hangup_result = ctx.settings.dialout_answered_result
        stay = leg.callee.hangup_after
        remaining = None if stay is None else max(0.0, leg.answered_at + stay - ctx.clock.now())
        if await ctx.wait(leg.hung_up, remaining):
            ctx.platform(f"dialout: leg {leg.callid} was hung up; both legs end")
        else:
            ctx.platform(f"dialout: {leg.number} hangs up; both legs end")
        raise EndCall("bridge")
    finally:
        leg.ended = True


async def dialout(ctx: CommandContext, p: dict[str, Any]) -> tuple[str, str]:
    s = ctx.settings
    status = s.dialout_status["noanswer"]
    for target in p["targets"]:
        number, timeout = target["number"], float(target["timeout"])
        callee = ctx.services.lookup(number)
        ctx.platform(f"dialout: ringing {number} (timeout {timeout:g}s)")
        if ctx.services.is_live(number):
            # The softphone takes the calls it is rung for by calls.realtime; a dialout
            # leg to its number is answered by the callee the phonebook gives instead.
            who = f"callee {callee.name!r}" if callee.name else "the default callee"
            ctx.platform(
                f"dialout: {number} rings the softphone for outbound calls only: {who} "
                "takes this leg"
            )
        if callee.answer == "answer" and callee.answer_delay < timeout:
            await ctx.sleep(callee.answer_delay)
            ctx.callee(f"{number} answers")
            leg = Leg(ctx.services.next_callid(), number, callee, answered_at=ctx.clock.now())
            await _bridge(ctx, p, leg)
        behaviour = "noanswer" if callee.answer == "answer" else callee.answer
        await ctx.sleep(timeout if behaviour == "noanswer" else min(callee.answer_delay, timeout))
        status = s.dialout_status[behaviour]
        ctx.platform(f"dialout: {number} {status}")
    return status, ""
