"""The callback engine: one RT.Request in, one reply body out, within the deadline.

Per callback, in order:

1. lock the call and read its record (one store round trip);
2. answer a duplicate from the reply cache, or an ended call with ``{}``;
3. pick what runs: a recorded interrupt for the command that just reported,
   a built-in step (hold ended, apology ended), or the flow's step named in the
   echoed ``command_id``;
4. run the handler against the budget; past it, reply with the hold command and
   let the handler finish in the background (its command is delivered through
   ``calls.realtime_break``);
5. write the record and unlock (one round trip), and return the exact bytes.

If the store cannot be reached or the call is locked past the deadline, the
caller is put on a short hold whose ``variables`` carry the original report, so
the callback is replayed, not lost, once the store answers again.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic_core import to_json

from . import records as rec
from .commands import Command, wait
from .context import Call
from .errors import LockTimeout, RtcontrolError, StoreError
from .flow import FlowSpec, Handler
from .logs import app_log, handler_log, log_callback
from .protocol import CallStatus, RTRequest
from .records import CallRecord, StepRef

if TYPE_CHECKING:
    from .app import App
    from .store import Store

T = TypeVar("T")

__all__ = ["Dispatcher", "command_from_json", "command_to_json"]

RESERVED = "_rtc"  # key of rtcontrol's own data inside ``variables``
EMPTY_REPLY = b"{}"
REPLAY_HOLD = wait(1)


def command_to_json(command: Command) -> dict[str, Any]:
    return {"name": command.name, "params": dict(command.params), "step": command.step}


def command_from_json(data: Mapping[str, Any]) -> Command:
    return Command(data["name"], MappingProxyType(dict(data["params"])), data.get("step"))


def encode_reply(
    command: Command,
    command_id: int | str,
    variables: Mapping[str, Any],
    *,
    replay: bool = False,
) -> bytes:
    if (
        RESERVED in variables and not replay
    ):  # rtcontrol's own key: a handler cannot forge replay data
        variables = {k: v for k, v in variables.items() if k != RESERVED}
    return to_json(
        {
            "command": command.name,
            "command_id": command_id,
            "params": dict(command.params),
            "variables": variables,
        }
    )


class _Outcome(Exception):
    """Raised inside processing to answer at once with a fixed reply."""

    def __init__(self, reply: bytes, outcome: str, *, save: bool = True) -> None:
        self.reply = reply
        self.outcome = outcome
        self.save = save


class Dispatcher:
    """Turns callbacks into replies for one :class:`~rtcontrol.app.App`."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.settings = app.settings
        self.store = app.store
        self.metrics = app.metrics
        self._background: dict[int, asyncio.Task[None]] = {}
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # ----------------------------------------------------------------- entry point

    async def handle(self, req: RTRequest) -> bytes:
        """Answer one callback. Never raises for a handler's fault."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self.settings.handler_budget
        self._inflight += 1
        self._idle.clear()
        try:
            req, replays = _unwrap_replay(req)
            reply, outcome, step = await self._handle(req, replays, deadline)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        elapsed = loop.time() - started
        self.metrics.callback(outcome, elapsed)
        log_callback(
            req.callid, req.command_id, step, str(req.call_status), outcome, elapsed * 1000
        )
        return reply

    async def wait_idle(self) -> None:
        """Wait until no callback is being processed (graceful shutdown)."""
        await self._idle.wait()

    async def _handle(
        self, req: RTRequest, replays: int, deadline: float
    ) -> tuple[bytes, str, str]:
        s = self.settings
        callid = req.callid
        lkey, ckey = rec.lock_key(callid), rec.call_key(callid)
        lease = s.handler_budget + 5.0
        try:
            remaining = max(deadline - _now(), 0.001)
            # A lock left by a crashed worker lasts its whole lease: hold the caller
            # (and replay) after lock_wait rather than spend the budget waiting.
            wait = min(remaining, s.lock_wait)
            if isinstance(req.call_status, CallStatus) and req.call_status.ended:
                # The reply to a hang-up is ignored: wait out a holder (a slow callback,
                # an interrupt's break) rather than lose on_hangup.
                remaining = wait = max(remaining, s.handler_budget + s.break_timeout + 1.0)
            token, raw = await _bounded(
                self.store,
                self.store.acquire_and_get(lkey, ckey, lease=lease, wait=wait),
                remaining,
            )
        except (StoreError, TimeoutError, OSError) as exc:
            return self._replay_hold(req, replays, exc)
        record: CallRecord | None = None
        ttl = s.call_ttl
        try:
            record = CallRecord.from_json(raw) if raw else None
            try:
                reply, outcome, step, record = await self._process(req, record, deadline)
            except _Outcome as early:
                if not early.save:
                    record = None
                reply, outcome, step = early.reply, early.outcome, "-"
            if record is not None and record.ended:
                ttl = s.ended_ttl
        except BaseException:
            await self._release_quietly(lkey, token)
            raise
        if record is None:
            await self._release_quietly(lkey, token)
            return reply, outcome, step
        try:
            await _bounded(
                self.store,
                self.store.set_and_release(
                    ckey, record.to_json(), ttl=ttl, lock_key=lkey, token=token
                ),
                max(deadline + 0.5 - _now(), 0.2),
            )
        except (StoreError, TimeoutError, OSError) as exc:
            # The handler already ran: send its reply; the echoed command_id keeps the
            # call routable even though this step's state was not saved.
            app_log.error("callid=%s: could not save call state: %s", callid, _brief(exc))
            if isinstance(exc, TimeoutError):  # the write may not have run: free the call
                await self._release_quietly(lkey, token)
        return reply, outcome, step

    async def _release_quietly(self, lkey: str, token: str) -> None:
        try:
            await self.store.release(lkey, token)
        except (StoreError, OSError) as exc:
            app_log.warning("could not release %s: %s", lkey, _brief(exc))

    # ----------------------------------------------------------------- processing

    async def _process(
        self, req: RTRequest, record: CallRecord | None, deadline: float
    ) -> tuple[bytes, str, str, CallRecord]:
        key = rec.fingerprint(req.command_id, req.command, str(req.call_status))
        ref = rec.parse_command_id(req.command_id)
        outcome = "reply"
        if record is not None:
            if record.last_key == key and record.last_reply is not None:
                raise _Outcome(record.last_reply.encode(), "duplicate", save=False)
            if record.ended:
                raise _Outcome(EMPTY_REPLY, "ignored", save=False)
        ended = isinstance(req.call_status, CallStatus) and req.call_status.ended
        if record is None:
            record, outcome = await self._new_record(req, ref, ended)
        flow = self.app.flow_spec(record.flow)

        if ended:
            await self._hang_up(req, record, flow)
            return EMPTY_REPLY, "hangup", "on_hangup", record

        variables = {k: v for k, v in req.variables.items() if k != RESERVED}
        result: Command | None
        interrupt = record.interrupt
        if interrupt is not None and interrupt.get("target") == req.command_id:
            record.interrupt = record.hold = record.pending = None
            result, step, outcome = await self._run_interrupt(
                req, record, flow, interrupt["then"], ref, variables, deadline
            )
            if result is None:  # the interrupt's step was slow: hold like any step
                return self._reply_hold(req, record, key, variables, step=step)
        elif ref is not None and ref.step in rec.BUILTIN_STEPS:
            result, step, outcome = self._builtin(req.callid, ref, record)
            if result is None:  # hold ended and nothing to deliver yet
                return self._reply_hold(req, record, key, variables)
            if outcome == "delivered" and record.pending is not None:
                variables = record.pending.get("variables", variables)
                record.pending = record.hold = None
        else:
            step = self._step_name(req, ref)
            handler = self._resolve(flow, step)
            result, outcome = await self._run(
                req, record, flow, step, handler, variables, deadline, outcome
            )
            if result is None:  # slow handler: hold, deliver later
                return self._reply_hold(req, record, key, variables, step=step)
        return self._reply(req, record, key, result, variables, step, outcome)

    async def _new_record(
        self, req: RTRequest, ref: StepRef | None, ended: bool
    ) -> tuple[CallRecord, str]:
        if req.is_first or (ended and (ref is None or not self.app.has_flow(ref.flow))):
            flow, data = await self.app.route_first(req)
            self.metrics.active_calls.inc()
            return CallRecord(flow=flow, app=req.app, state=data), "reply"
        if ref is not None and self.app.has_flow(ref.flow):
            app_log.warning(
                "callid=%s: unknown to the store; resuming flow %s at step %s from the echoed "
                "command_id (per-call state was lost)",
                req.callid,
                ref.flow,
                ref.step,
            )
            return CallRecord(flow=ref.flow, app=req.app, seq=ref.seq), "recovered"
        if ref is not None and ref.step == rec.BYE_STEP:
            # A fallback's apology ended (its flow is unknown, "-"): hang up, needing no state.
            raise _Outcome(self.bye_reply(req, ref), "reply", save=False)
        app_log.error(
            "callid=%s: unknown call and command_id %r names no flow: answering with the fallback",
            req.callid,
            req.command_id,
        )
        raise _Outcome(self.fallback_reply(req, seq=_seq_of(ref)), "fallback", save=False)

    def _step_name(self, req: RTRequest, ref: StepRef | None) -> str:
        if req.is_first:
            return "start"
        if ref is None or ref.step == rec.NO_STEP:
            return "on_result"
        return ref.step

    def _resolve(self, flow: FlowSpec, step: str) -> Handler | None:
        if step == "on_result":
            return self.app.hook(flow, "on_result")
        return flow.step(step)

    def _builtin(
        self, callid: int, ref: StepRef, record: CallRecord
    ) -> tuple[Command | None, str, str]:
        if ref.step == rec.BYE_STEP:
            return self.app.bye, ref.step, "reply"
        if ref.step == rec.HOLD_STEP:
            if record.pending is not None:
                return command_from_json(record.pending["command"]), ref.step, "delivered"
            if record.hold is not None and time.time() < float(record.hold.get("until", 0)):
                return None, ref.step, "hold"
            app_log.error("callid=%s: slow handler lost or timed out", callid)
            record.hold = None
            return self.app.fallback, ref.step, "fallback"
        # REPLAY_STEP without replay data: nothing to replay, continue with the fallback
        return self.app.fallback, ref.step, "fallback"

    async def _run_interrupt(
        self,
        req: RTRequest,
        record: CallRecord,
        flow: FlowSpec,
        then: Mapping[str, Any],
        ref: StepRef | None,
        variables: dict[str, Any],
        deadline: float,
    ) -> tuple[Command | None, str, str]:
        kind = then.get("kind")
        if kind == "command":
            return command_from_json(then["command"]), "interrupt", "interrupt"
        if kind == "step":
            step = str(then["step"])
            handler = flow.step(step)
        else:
            handler = self.app.hook(flow, "on_break")
            step = "on_break"
            if handler is None:  # no break hook: the step reads the early result
                step = self._step_name(req, ref)
                handler = self._resolve(flow, step)
        result, outcome = await self._run(
            req, record, flow, step, handler, variables, deadline, "interrupt", interrupted=True
        )
        return result, step, outcome  # None: still running, hold

    async def _run(
        self,
        req: RTRequest,
        record: CallRecord,
        flow: FlowSpec,
        step: str,
        handler: Handler | None,
        variables: dict[str, Any],
        deadline: float,
        outcome: str,
        *,
        interrupted: bool = False,
    ) -> tuple[Command | None, str]:
        """Run one handler against the deadline; None means "still running, hold"."""
        if handler is None:
            handler_log.error(
                "callid=%s: flow %s has no step %r: answering with the fallback",
                req.callid,
                flow.name,
                step,
            )
            self.metrics.handler_errors.inc()
            return self.app.fallback, "fallback"
        call = Call(
            self.app,
            req,
            flow=flow.name,
            step=step,
            state=record.state,
            variables=variables,
            interrupted=interrupted,
        )
        task: asyncio.Task[Any] = asyncio.ensure_future(handler(call))
        if not await _finished_by(task, deadline):
            token = secrets.token_hex(6)
            record.hold = {
                "token": token,
                "until": time.time() + self.settings.background_timeout,
                "step": step,
            }
            self._spawn_background(req.callid, task, call, token)
            return None, "hold"
        try:
            result = task.result()
        except Exception:  # TimeoutError included: a handler's own timeout is its error
            return self._handler_failed(req, flow, step), "fallback"
        checked = self._check_result(req, flow, step, result)
        if checked is None:
            return self.app.fallback, "fallback"
        return checked, outcome

    def _handler_failed(self, req: RTRequest, flow: FlowSpec, step: str) -> Command:
        self.metrics.handler_errors.inc()
        handler_log.exception(
            "callid=%s: handler %s.%s raised; answering with the fallback",
            req.callid,
            flow.name,
            step,
        )
        return self.app.fallback

    def _check_result(
        self, req: RTRequest, flow: FlowSpec, step: str, result: Any
    ) -> Command | None:
        if not isinstance(result, Command):
            self.metrics.handler_errors.inc()
            handler_log.error(
                "callid=%s: handler %s.%s returned %s, not a command; return a command built "
                "with rtcontrol's builders (play, read, hangup...)",
                req.callid,
                flow.name,
                step,
                type(result).__name__,
            )
            return None
        if result.step is not None and flow.step(result.step) is None:
            self.metrics.handler_errors.inc()
            handler_log.error(
                "callid=%s: handler %s.%s sent a command to step %r, which flow %s does not have",
                req.callid,
                flow.name,
                step,
                result.step,
                flow.name,
            )
            return None
        return result

    # ----------------------------------------------------------------- replies

    def _reply(
        self,
        req: RTRequest,
        record: CallRecord,
        key: str,
        command: Command,
        variables: Mapping[str, Any],
        step: str,
        outcome: str,
    ) -> tuple[bytes, str, str, CallRecord]:
        record.seq = _next_seq(record, req)
        target = command.step
        if command is self.app.fallback or (outcome == "fallback" and target is None):
            target = None if command.ends_call else (command.step or rec.BYE_STEP)
        command_id = rec.encode_command_id(record.seq, record.flow, target)
        body = encode_reply(command, command_id, variables)
        record.current = command_id
        record.last_key = key
        record.last_reply = body.decode()
        return body, outcome, step, record

    def _reply_hold(
        self,
        req: RTRequest,
        record: CallRecord,
        key: str,
        variables: Mapping[str, Any],
        *,
        step: str = rec.HOLD_STEP,
    ) -> tuple[bytes, str, str, CallRecord]:
        hold = self.app.hold
        record.seq = _next_seq(record, req)
        command_id = rec.encode_command_id(record.seq, record.flow, rec.HOLD_STEP)
        body = encode_reply(hold, command_id, variables)
        record.current = command_id
        record.last_key = key
        record.last_reply = body.decode()
        return body, "hold", step, record

    def fallback_reply(self, req: RTRequest, *, seq: int = 0) -> bytes:
        """The fallback command as a reply, needing nothing but the request."""
        fallback = self.app.fallback
        target = None if fallback.ends_call else rec.BYE_STEP
        command_id = rec.encode_command_id(seq + 1, "-", target)
        variables = {k: v for k, v in req.variables.items() if k != RESERVED}
        return encode_reply(fallback, command_id, variables)

    def bye_reply(self, req: RTRequest, ref: StepRef) -> bytes:
        """Hang up after a fallback's apology: needs nothing but the request."""
        variables = {k: v for k, v in req.variables.items() if k != RESERVED}
        command_id = rec.encode_command_id(ref.seq + 1, ref.flow, None)
        return encode_reply(self.app.bye, command_id, variables)

    def _replay_hold(
        self, req: RTRequest, replays: int, exc: BaseException
    ) -> tuple[bytes, str, str]:
        """Hold the caller and carry the report in ``variables`` so it is replayed."""
        if isinstance(req.call_status, CallStatus) and req.call_status.ended:
            app_log.error("callid=%s: hang-up not recorded: %s", req.callid, _brief(exc))
            return EMPTY_REPLY, "hangup", "on_hangup"
        ref = rec.parse_command_id(req.command_id)
        if ref is not None and ref.step == rec.BYE_STEP:  # the apology ended: no state needed
            return self.bye_reply(req, ref), "reply", rec.BYE_STEP
        if replays >= self.settings.max_replays:
            app_log.error(
                "callid=%s: store unavailable after %d holds (%s): answering with the fallback",
                req.callid,
                replays,
                _brief(exc),
            )
            return self.fallback_reply(req, seq=0), "fallback", "-"
        level = app_log.warning if isinstance(exc, LockTimeout) else app_log.error
        level("callid=%s: holding the caller, store not ready: %s", req.callid, _brief(exc))
        variables = dict(req.variables)
        variables[RESERVED] = {
            "replay": [req.command, req.command_id, req.command_result, req.command_error],
            "n": replays + 1,
        }
        command_id = rec.encode_command_id(0, ref.flow if ref else "-", rec.REPLAY_STEP)
        return (
            encode_reply(REPLAY_HOLD, command_id, variables, replay=True),
            "replay",
            rec.REPLAY_STEP,
        )

    # ----------------------------------------------------------------- hang-up

    async def _hang_up(self, req: RTRequest, record: CallRecord, flow: FlowSpec) -> None:
        record.ended = True
        record.interrupt = record.hold = record.pending = None
        task = self._background.pop(req.callid, None)
        if task is not None:
            task.cancel()
        self.metrics.active_calls.dec()
        handler = self.app.hook(flow, "on_hangup")
        if handler is not None:
            variables = {k: v for k, v in req.variables.items() if k != RESERVED}
            call = Call(
                self.app,
                req,
                flow=flow.name,
                step="on_hangup",
                state=record.state,
                variables=variables,
            )
            try:
                await asyncio.wait_for(handler(call), timeout=self.settings.handler_budget)
            except Exception:
                self.metrics.handler_errors.inc()
                handler_log.exception("callid=%s: on_hangup of %s failed", req.callid, flow.name)
        record.state = {}
        record.last_key = rec.fingerprint(req.command_id, req.command, str(req.call_status))
        record.last_reply = EMPTY_REPLY.decode()

    # ----------------------------------------------------------------- slow handlers

    def _spawn_background(
        self, callid: int, task: asyncio.Task[Any], call: Call, token: str
    ) -> None:
        runner = asyncio.ensure_future(self._finish_later(callid, task, call, token))
        self._background[callid] = runner
        self.app.track(runner)

        def _forget(t: asyncio.Task[None]) -> None:
            if self._background.get(callid) is t:
                del self._background[callid]
            if t.cancelled():  # even if it was cancelled before it ever ran
                task.cancel()

        runner.add_done_callback(_forget)

    async def _finish_later(
        self, callid: int, task: asyncio.Task[Any], call: Call, token: str
    ) -> None:
        flow = self.app.flow_spec(call.flow)
        try:
            result = await asyncio.wait_for(task, timeout=self.settings.background_timeout)
            command = self._check_result(call.request, flow, call.step, result)
        except asyncio.CancelledError:
            task.cancel()
            raise
        except TimeoutError:
            if task.done() and not task.cancelled():  # raised by the handler, not our timeout
                command = self._handler_failed(call.request, flow, call.step)
            else:
                handler_log.error(
                    "callid=%s: handler %s.%s still running after %.0fs behind a hold; "
                    "answering with the fallback",
                    callid,
                    flow.name,
                    call.step,
                    self.settings.background_timeout,
                )
                command = None
        except Exception:
            command = self._handler_failed(call.request, flow, call.step)
        if command is None:
            command = self.app.fallback
        if command is self.app.fallback and command.step is None and not command.ends_call:
            command = replace(command, step=rec.BYE_STEP)  # delivered later, still says goodbye
        await self._deliver(callid, call, token, command)

    async def _deliver(self, callid: int, call: Call, token: str, command: Command) -> None:
        s = self.settings
        try:
            async with self.store.lock(
                rec.lock_key(callid), lease=s.break_timeout + 5.0, wait=s.handler_budget + 1.0
            ):
                raw = await self.store.get(rec.call_key(callid))
                record = CallRecord.from_json(raw) if raw else None
                if record is None or record.ended or (record.hold or {}).get("token") != token:
                    app_log.info("callid=%s: slow handler finished after the call moved on", callid)
                    return
                record.pending = {"command": command_to_json(command), "variables": call.variables}
                record.state = call.state
                await self.store.set(rec.call_key(callid), record.to_json(), ttl=s.call_ttl)
                ref = rec.parse_command_id(record.current or "")
                if ref is not None and ref.step == rec.HOLD_STEP:
                    await self.app.send_break(callid)
        except (RtcontrolError, OSError) as exc:
            # The hold ends by itself and the next callback delivers the pending command.
            app_log.warning("callid=%s: immediate delivery failed: %s", callid, _brief(exc))


def _unwrap_replay(req: RTRequest) -> tuple[RTRequest, int]:
    data = req.variables.get(RESERVED)
    if not isinstance(data, dict):
        return req, 0
    variables = {k: v for k, v in req.variables.items() if k != RESERVED}
    replay = data.get("replay")
    count = data.get("n", 0)
    n = count if isinstance(count, int) and not isinstance(count, bool) else 0
    if isinstance(req.call_status, CallStatus) and req.call_status.ended:
        return req.model_copy(update={"variables": variables}), n
    if not (isinstance(replay, list) and len(replay) == 4):
        return req.model_copy(update={"variables": variables}), n
    command, command_id, result, error = replay
    if not (isinstance(command_id, int | str) and not isinstance(command_id, bool)):
        return req.model_copy(update={"variables": variables}), n
    update = {
        "variables": variables,
        "command": str(command),
        "command_id": command_id,
        "command_result": str(result),
        "command_error": str(error),
    }
    return req.model_copy(update=update), n


async def _finished_by(task: asyncio.Task[Any], deadline: float) -> bool:
    """Wait for ``task`` until ``deadline`` without cancelling it; True if it finished.

    One future and one timer: cheaper than ``wait_for(shield(task))`` on every callback.
    """
    if task.done():
        return True
    loop = asyncio.get_running_loop()
    remaining = deadline - loop.time()
    if remaining <= 0:
        return False
    waiter: asyncio.Future[None] = loop.create_future()

    def wake(_: object = None) -> None:
        if not waiter.done():
            waiter.set_result(None)

    task.add_done_callback(wake)
    timer = loop.call_later(remaining, wake)
    try:
        await waiter
    finally:
        timer.cancel()
        task.remove_done_callback(wake)
    return task.done()


async def _bounded(store: Store, operation: Awaitable[T], limit: float) -> T:
    """Stores that bound their own operations (``bounded``) skip the extra timer."""
    if store.bounded:
        return await operation
    return await asyncio.wait_for(operation, timeout=limit)


def _next_seq(record: CallRecord, req: RTRequest) -> int:
    """Sequence number of the next command: past the stored one and the echoed one.

    The echoed id is ahead of the record when the store lost the last write (Redis
    died between a callback's lock and its save). Reusing that id would make every
    following callback look like a duplicate of the last one, answered forever.
    """
    ref = rec.parse_command_id(req.command_id)
    return max(record.seq, ref.seq if ref is not None else 0) + 1


def _seq_of(ref: StepRef | None) -> int:
    return ref.seq if ref is not None else 0


def _now() -> float:
    return asyncio.get_running_loop().time()


def _brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
