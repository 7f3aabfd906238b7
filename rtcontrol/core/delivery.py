"""Slow handlers: finishing behind the hold, and delivering their command (K6).

A handler still running at its deadline keeps running; the caller hears the hold.
When it finishes, its command becomes the call's *pending* command and a
``calls.realtime_break`` ends the hold early; if the break never arrives, the
hold ends by itself and its report delivers the pending command.

Markers are written only with, or after, the side effect they stand for:

* while the handler runs, this worker keeps a short-lived *alive* key for the
  call (renewed every lease). A hold whose worker died is noticed when the hold
  ends (the key is gone): the caller gets the fallback at once, not after the
  60 s background timeout;
* every failure while finishing (the handler raised, returned something that is
  not a command, left state or variables that cannot be stored or sent, the
  store blinked) ends in a delivered command (the fallback when needed) or, if the
  store stays unreachable, in the alive key running out. No task dies unobserved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import replace
from typing import Any

from ..commands import Command
from ..errors import FlowError, OutputError, RtcontrolError, StoreError
from ..events import CommandDelivered
from ..validate import encode_record
from . import keys
from .call import Call
from .cancel import abandon
from .parts import EngineParts
from .records import ActionKind, CallRecord, Pending
from .runner import Scope
from .transaction import Txn, brief

__all__ = ["Deliveries"]

app_log = logging.getLogger("rtcontrol.app")
handler_log = logging.getLogger("rtcontrol.handler")

#: Attempts to store a finished command when the store fails, spread over a few seconds.
ATTEMPTS = 5


class Deliveries:
    def __init__(self, engine: EngineParts) -> None:
        self.engine = engine
        #: callid -> hold token -> the task finishing that slow handler here.
        self._running: dict[int, dict[str, asyncio.Task[None]]] = {}

    def start(self, call: Call, task: asyncio.Future[Any], scope: Scope, token: str) -> None:
        """Finish ``task`` in the background (called once the hold is durable)."""
        runner = self.engine.spawn(self._finish(call, task, scope, token))
        callid = call.id
        self._running.setdefault(callid, {})[token] = runner

        def forget(t: asyncio.Task[None]) -> None:
            runs = self._running.get(callid)
            if runs is not None and runs.get(token) is t:
                del runs[token]
                if not runs:
                    del self._running[callid]
            if t.cancelled():  # even if it was cancelled before it ever ran
                abandon(task)

        runner.add_done_callback(forget)

    def cancel(self, callid: int) -> None:
        """The call ended: stop every slow handler of the call running here."""
        for runner in self._running.pop(callid, {}).values():
            runner.cancel()

    @property
    def running(self) -> int:
        return sum(len(runs) for runs in self._running.values())

    def runs_here(self, callid: int, token: str) -> bool:
        """Is this worker running the slow handler of this very hold?"""
        return token in self._running.get(callid, {})

    async def alive(self, callid: int, token: str) -> bool:
        """Is a worker still running the slow handler of this very hold?"""
        if token in self._running.get(callid, {}):
            return True
        try:
            return await self.engine.store.get(keys.hold_key(callid, token)) is not None
        except (StoreError, OSError):
            return True  # cannot tell: hold again rather than cut a live handler short

    async def _keep_alive(self, callid: int, token: str) -> None:
        store, lease = self.engine.store, self.engine.timing.lease
        while True:
            with contextlib.suppress(StoreError, OSError):
                await store.set(keys.hold_key(callid, token), 1, ttl=3 * lease)
            await asyncio.sleep(lease)

    async def _finish(
        self, call: Call, task: asyncio.Future[Any], scope: Scope, token: str
    ) -> None:
        engine = self.engine
        where = f"{call.flow}.{call.step}"
        keeper = asyncio.ensure_future(self._keep_alive(call.id, token))
        try:
            command = await self._outcome(call, task, scope, where)
        finally:
            keeper.cancel()
        try:
            await self._deliver(call, token, command)
        finally:
            with contextlib.suppress(StoreError, OSError):
                await engine.store.delete(keys.hold_key(call.id, token))

    async def _outcome(
        self, call: Call, task: asyncio.Future[Any], scope: Scope, where: str
    ) -> Command:
        engine = self.engine
        timeout = engine.settings.background_timeout
        try:
            result = await asyncio.wait_for(asyncio.shield(task), timeout=timeout)
        except asyncio.CancelledError:
            abandon(task)
            raise
        except TimeoutError:
            abandon(task)
            if task.done() and not task.cancelled():  # raised by the handler itself
                handler_log.exception(
                    "callid=%s: handler %s raised behind the hold", call.id, where
                )
            else:
                handler_log.error(
                    "callid=%s: handler %s still running after %.0fs behind a hold; "
                    "answering with the fallback",
                    call.id,
                    where,
                    timeout,
                )
            return engine.fallback
        except FlowError as exc:
            handler_log.error(
                "callid=%s: %s behind the hold: %s; the fallback",
                call.id,
                type(exc).__name__,
                exc,
            )
            return engine.fallback
        except Exception:
            handler_log.exception(
                "callid=%s: handler %s raised behind the hold; the fallback", call.id, where
            )
            return engine.fallback
        action = scope.action  # the handler interrupted its own call: the action wins
        if action is not None and action.kind is ActionKind.COMMAND and action.command is not None:
            result = action.command
        elif action is not None and action.kind is ActionKind.STEP and action.step is not None:
            flow = engine.registry.flow(call.flow)
            handler = flow.step(action.step) if flow is not None else None
            if handler is None:
                handler_log.error(
                    "callid=%s: no step %r to run; the fallback", call.id, action.step
                )
                return engine.fallback
            step_call = Call(
                call.app,
                call.request,
                flow=call.flow,
                step=action.step,
                state=call.state,
                variables=call.variables,
                interrupted=True,
            )
            try:
                result = await asyncio.wait_for(handler(step_call), timeout=timeout)
            except Exception:
                handler_log.exception(
                    "callid=%s: step %s raised behind the hold; the fallback", call.id, action.step
                )
                return engine.fallback
        if isinstance(result, Command):
            return result
        handler_log.error(
            "callid=%s: handler %s returned %s, not a command; the fallback",
            call.id,
            where,
            type(result).__name__,
        )
        return engine.fallback

    async def _save_ended(self, txn: Txn, record: CallRecord, call: Call) -> None:
        engine = self.engine
        record.hold = None
        if call._journal_next is not None:
            record.journal = call._journal_next
        await txn.save(
            encode_record(record.to_json(), record.state, "call record"),
            ttl=engine.settings.ended_ttl,
        )
        flow = engine.registry.flow(record.flow)
        if flow is not None and flow.script is not None:
            flow.script.cache.drop(call.id)

    async def _deliver(self, call: Call, token: str, command: Command) -> None:
        engine = self.engine
        callid = call.id
        for attempt in range(ATTEMPTS):
            try:
                async with engine.locks.hold(callid) as txn:
                    record = txn.record
                    if (
                        record is not None
                        and record.ended
                        and record.hold is not None
                        and record.hold.token == token
                    ):
                        # The call ended on another worker while a straight-line flow
                        # ran here behind the hold: save the journal it reached, for
                        # the flow's end over there; this copy is dropped.
                        await self._save_ended(txn, record, call)
                        return
                    if (
                        record is None
                        or record.ended
                        or record.hold is None
                        or record.hold.token != token
                    ):
                        app_log.info(
                            "callid=%s: slow handler finished after the call moved on", callid
                        )
                        return
                    interrupt = record.interrupt
                    flow = engine.registry.flow(record.flow)
                    script = flow is not None and flow.script is not None
                    broken = False  # a break was sent for this hold already
                    if interrupt is not None and interrupt.target == record.current:
                        if not script:
                            # An interrupt broke this hold meanwhile: its action wins,
                            # and one break was sent already.
                            app_log.info(
                                "callid=%s: slow handler finished after an interrupt", callid
                            )
                            return
                        # A straight-line flow: the interrupt applies at the await of
                        # this command (pending, never run), which the hold's report
                        # reaches; a re-armed one left the break to this delivery. A
                        # flow that failed has no await left: its fallback wins.
                        broken = not interrupt.rearmed
                        failed = call._journal_next is None
                        record.interrupt = None if failed else replace(interrupt, rearmed=False)
                    if script and call._journal_next is None:
                        record.journal = None  # a failed flow is not replayed again
                    try:
                        checked, variables = engine.outgoing(command, call.variables, flow)
                        record.pending = Pending(_to_bye(engine, checked), variables)
                        record.state = call.state
                        if call._journal_next is not None:  # a straight-line flow's journal
                            record.journal = call._journal_next
                        text = encode_record(
                            record.to_json(), record.state, "left call.state that cannot be stored"
                        )
                    except OutputError as exc:
                        handler_log.error(
                            "callid=%s: handler %s.%s %s; answering with the fallback",
                            callid,
                            call.flow,
                            call.step,
                            exc,
                        )
                        record.state = _stored_state(txn.raw)
                        record.pending = Pending(
                            _to_bye(engine, engine.fallback), call.request.variables
                        )
                        text = encode_record(record.to_json(), record.state, "call record")
                    await txn.save(text, ttl=engine.settings.call_ttl)
                    ref = keys.parse_command_id(record.current or "")
                    via_break = False
                    if ref is not None and ref.step == keys.HOLD_STEP and not broken:
                        via_break = await engine.send_break(callid)
                engine.events.emit(CommandDelivered(callid, record.pending.command.name, via_break))
                return
            except (RtcontrolError, OSError, TimeoutError) as exc:
                app_log.warning(
                    "callid=%s: delivery of %s.%s failed (try %d): %s",
                    callid,
                    call.flow,
                    call.step,
                    attempt + 1,
                    brief(exc),
                )
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        app_log.error(
            "callid=%s: could not deliver %s.%s: the hold ends and the call gets the fallback",
            callid,
            call.flow,
            call.step,
        )


def _to_bye(engine: EngineParts, command: Command) -> Command:
    """A fallback delivered later still says goodbye after its apology."""
    if command is engine.fallback and command.step is None and not command.ends_call:
        bye = replace(command, step=keys.BYE_STEP)
        object.__setattr__(bye, "_checked", True)
        return bye
    return command


def _stored_state(raw: Any) -> dict[str, Any]:
    state = raw.get("state") if isinstance(raw, dict) else None
    return dict(state) if isinstance(state, dict) else {}
