"""The engine: one RT.Request in, one :class:`~rtcontrol.core.ports.Reply` out, in time.

Per callback, in order (the decision table of :meth:`Engine._decide`):

1. restore a report held back by a replay hold (``replies.unwrap``);
2. lock the call and read its record (one store round trip, ``transaction``);
3. an ended call gets ``{}``; a terminal status ends the call (``hangups``);
4. only the report of the call's *current* command is new: a copy of an answered
   report gets its original reply byte for byte, any other report runs nothing
   and changes nothing (fault kind K1);
5. pick what runs: a recorded interrupt for the command that just reported, a
   built-in step (hold ended, apology ended), or the flow's step named in the
   echoed ``command_id``;
6. run it against the budget (``runner``); past it the caller hears the hold and
   the handler finishes in the background (``delivery``);
7. check what goes out with the one validator (``rtcontrol.validate``): a command
   that is not valid, variables that the platform could not echo back, state the
   store cannot keep: the fallback, with one log line naming the cause;
8. write the record and unlock (one round trip), and return the exact bytes.

If the store cannot be used, the caller is put on a short hold whose ``variables``
carry the report, so the callback is replayed, not lost, once the store answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from ..commands import Command, hangup
from ..errors import (
    CallEnded,
    CallNotFound,
    FlowError,
    OutputError,
    RegistrationError,
    StoreError,
)
from ..events import (
    CallbackAnswered,
    CallHeld,
    CallInterrupted,
    CallStarted,
    Disposition,
    EventBus,
    HoldReason,
)
from ..protocol import CallStatus, RTRequest, is_terminal
from ..settings import Settings
from ..store import Store
from ..validate import check_command, check_outgoing, encode_record
from . import keys
from .call import Call, CallServices
from .cancel import abandon
from .delivery import Deliveries
from .flow import FlowSpec, Handler
from .hangups import Hangups
from .keys import request_key
from .outbound import Binding, Bindings
from .parts import Decision
from .ports import CallControl, Clock, Reply, SystemClock
from .records import Action, ActionKind, CallRecord, HoldTicket, Interrupt
from .registry import Registry, step_name
from .replies import (
    EMPTY,
    REPLAY_HOLD,
    RESERVED,
    ReplayEnvelope,
    encode,
    strip_reserved,
    unwrap,
    wrap,
)
from .runner import current_scope, finished_by, start
from .straight import RUN_STEP, current_live, script_action
from .transaction import MIN_LAST_TRIP, CallLocks, Timing, Txn, brief
from .watchdog import Watchdog

__all__ = ["Decision", "Engine"]

T = TypeVar("T")

app_log = logging.getLogger("rtcontrol.app")
handler_log = logging.getLogger("rtcontrol.handler")
callback_log = logging.getLogger("rtcontrol.callback")


class Engine:
    """Turns callbacks into replies. Built by the ``App``; tested without HTTP."""

    def __init__(
        self,
        *,
        settings: Settings,
        store: Store,
        registry: Registry,
        services: CallServices,
        control: Callable[[], CallControl],
        hold: Command,
        fallback: Command,
        events: EventBus | None = None,
        clock: Clock | None = None,
        spawn: Callable[[Any], asyncio.Task[Any]] | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.registry = registry
        self.services = services
        self.control = control
        self.hold = hold
        self.fallback = fallback
        self.bye = hangup()
        self.events = events or EventBus()
        self.clock = clock or SystemClock()
        self.spawn = spawn or _spawn
        self.timing = Timing(settings)
        self.locks = CallLocks(store, self.timing, self.clock, self.spawn)
        self.bindings = Bindings(store, settings, self.clock)
        registry.sessions.size = settings.flow_cache
        registry.sessions.idle = min(settings.call_ttl, SESSION_IDLE)
        registry.journal_limit = settings.journal_limit
        registry.services = services
        self.deliveries = Deliveries(self)
        self.hangups = Hangups(self, self.deliveries)
        self.watchdog = Watchdog(settings.blocking_warn, registry.handler_codes)
        self._background_loop: asyncio.AbstractEventLoop | None = None
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()
        self._unknown_statuses: set[str] = set()

    # ----------------------------------------------------------------- entry point

    async def handle_callback(
        self, request: RTRequest, *, received_at: float | None = None
    ) -> Reply:
        """Answer one callback. Never raises for a handler's fault.

        ``received_at`` (epoch seconds, from the proxy's ``X-Request-Start``): the
        budget counts from then, so time spent in the proxy, or on a worker that died
        before nginx passed the callback on, is not counted twice. Honoured only
        within the budget (``RTCONTROL_REQUEST_START``)."""
        started = self.clock.monotonic()
        if received_at is not None and self.settings.request_start:
            spent = self.clock.wall() - received_at
            if 0.0 < spent < self.settings.handler_budget:
                started -= spent
        self._inflight += 1
        self._idle.clear()
        try:
            req, envelope = unwrap(request)
            decision = await self._handle(req, envelope, started)
        finally:
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        self.events.emit(
            CallbackAnswered(
                req.callid,
                req.command_id,
                decision.step,
                str(req.call_status),
                decision.disposition,
                self.clock.monotonic() - started,
                req.request_hash if req.is_first else None,
            )
        )
        return Reply(decision.body, decision.status)

    def start_background(self) -> None:
        """Start this worker's janitor and watchdog (at start-up, or on the first callback)."""
        loop = asyncio.get_running_loop()
        if self._background_loop is not loop:
            self.watchdog.stop()
        self._background_loop = loop
        self.hangups.ensure_janitor()
        self.watchdog.start(loop)

    def stop_background(self) -> None:
        self.registry.sessions.clear()
        self.hangups.stop()
        self.watchdog.stop()
        self._background_loop = None

    def safe_reply(self, request: RTRequest) -> Reply:
        """The fallback command, built from the request alone (an internal error)."""
        if is_terminal(request.call_status):
            return Reply(EMPTY)
        return Reply(self._fallback_body(request, seq=0))

    async def wait_idle(self) -> None:
        """Wait until no callback is being processed (graceful shutdown)."""
        await self._idle.wait()

    async def _handle(
        self, req: RTRequest, envelope: ReplayEnvelope | None, started: float
    ) -> Decision:
        terminal = is_terminal(req.call_status)
        if terminal and not isinstance(req.call_status, CallStatus):
            self._unknown_status(req)
        if self._background_loop is not asyncio.get_running_loop():
            self.start_background()
        wait = self.timing.lock_wait_for(started, self.clock.monotonic(), terminal=terminal)
        # A callback's store work is bounded by one deadline: the reply must leave in
        # time whatever the store does (a reconnect, a script sent again after a
        # restart, a lapsed lease taken again are each one more bounded round trip).
        # A terminal callback waits for the lock as long as a holder may keep it, but
        # its write is bounded too: past the deadline it is refused and kept (K2). An
        # in-process store answers at once: no timer (about 4 us each).
        bounded = self.store.shared or not self.store.bounded
        write_by = self.timing.hard_deadline(started) if bounded else None
        hard = None if terminal else write_by
        # A terminal callback's lock: as long as a holder may keep it, plus a round
        # trip's worth of the budget (a store that stops answering gets it refused, kept).
        lock_by = self.clock.monotonic() + wait + self.timing.budget if terminal else hard
        try:
            txn = await self._within(
                lock_by if bounded else None, self.locks.open(req.callid, wait=wait)
            )
        except (StoreError, TimeoutError, OSError) as exc:
            return self._not_ready(req, envelope, exc)
        try:
            decision = await self._within(hard, self._decide(req, envelope, txn, started))
        except (StoreError, TimeoutError, OSError) as exc:  # the store blinked mid-way
            self.spawn(txn.release())  # the reply does not wait for a slow store
            return self._not_ready(req, envelope, exc)
        except BaseException:
            await txn.release()
            raise
        if decision.text is None:
            if hard is not None:  # the reply does not wait for a slow store
                self.spawn(txn.release())
            else:
                await txn.release()
        else:
            ended = decision.disposition is Disposition.HANGUP
            ttl = self.settings.ended_ttl if ended else self.settings.call_ttl
            try:
                # the write gets what is left of the same deadline
                await self._within(write_by, self._commit(req, txn, decision.text, ttl, ended))
            except (StoreError, TimeoutError, OSError) as exc:
                self.spawn(txn.release())  # the reply does not wait for a slow store
                if decision.cancel is not None:
                    decision.cancel()
                app_log.error("callid=%s: could not save the call: %s", req.callid, brief(exc))
                if ended:  # not durable: refuse to acknowledge, keep it for retry
                    return self.hangups.keep(req, exc)
                # Not durable, so not sent: the report is held and replayed (the step, if
                # it runs again, gets the same idempotency key).
                return self._not_ready(req, envelope, exc)
            cleanup = decision.cleanup or (txn.record.cleanup if txn.record else ())
            if cleanup:
                self.spawn(self._cleanup(cleanup))
        if decision.after is not None:
            decision.after()
        return decision

    async def _commit(
        self, req: RTRequest, txn: Txn, text: str | None, ttl: float, ended: bool
    ) -> None:
        if ended:  # indexed first: a worker that dies now leaves it to the janitor
            await self.hangups.index(req.callid)
        await txn.commit(text, ttl=ttl)

    async def _within(self, deadline: float | None, work: Awaitable[T]) -> T:
        """``work``, cancelled at ``deadline`` (engine clock; None: unbounded) with
        TimeoutError, but always given at least a last round trip."""
        if deadline is None:
            return await work
        left = max(deadline - self.clock.monotonic(), MIN_LAST_TRIP)
        try:
            async with asyncio.timeout(left):
                return await work
        except TimeoutError as exc:
            if str(exc):
                raise
            raise TimeoutError("the store did not answer before the reply deadline") from None

    async def _cleanup(self, keys_: tuple[str, ...]) -> None:
        """Delete what the durable record made useless (an outbound binding)."""
        try:
            await self.store.delete(*keys_)
        except (StoreError, OSError) as exc:  # it expires by itself
            app_log.info("cleanup of %s failed: %s", keys_, brief(exc))

    # ----------------------------------------------------------------- decisions

    async def _decide(
        self, req: RTRequest, envelope: ReplayEnvelope | None, txn: Txn, started: float
    ) -> Decision:
        record = txn.record
        if record is not None and record.ended:
            return Decision(EMPTY, Disposition.IGNORED, "-")
        if is_terminal(req.call_status):
            return await self.hangups.begin(req, record)
        ref = keys.parse_command_id(req.command_id)
        disposition = Disposition.REPLY
        if record is None:
            made = await self._new_record(req, ref, envelope, started)
            if isinstance(made, Decision):
                return made
            record, disposition = made
            txn.record = record
        elif req.command_id != record.current or type(req.command_id) is not type(record.current):
            early = self._not_current(req, ref, record)
            if early is not None:
                return early
        flow = self.registry.flow(record.flow)
        if flow is None:
            app_log.error(
                "callid=%s: flow %r is not registered (removed by a deploy?): the fallback",
                req.callid,
                record.flow,
            )
            return await self._finish(
                req, record, self.fallback, req.variables, "-", Disposition.FALLBACK
            )
        variables = _own_copy(req.variables)
        deadline = self.timing.handler_deadline(started, txn.took)
        interrupt = record.interrupt
        if interrupt is not None and _same_id(interrupt.target, req.command_id):
            if flow.script is not None and ref is not None and ref.step == keys.HOLD_STEP:
                held = await self._interrupt_behind_hold(req, record, interrupt)
                if held is not None:
                    return held
            record.interrupt = record.hold = record.pending = None
            if flow.script is not None:  # the action reaches the flow's pending await
                return await self._run(
                    req,
                    record,
                    flow,
                    RUN_STEP,
                    flow.script,
                    variables,
                    deadline,
                    Disposition.INTERRUPT,
                    interrupted=True,
                    action=interrupt.action,
                )
            return await self._run_action(
                req, record, flow, interrupt.action, ref, variables, deadline
            )
        if ref is not None and ref.step in keys.BUILTIN_STEPS:
            return await self._builtin(req, ref, record, flow, variables, deadline)
        if flow.script is not None:
            return await self._run(
                req, record, flow, RUN_STEP, flow.script, variables, deadline, disposition
            )
        step = self._step_name(req, ref)
        handler = self._resolve(flow, step)
        return await self._run(req, record, flow, step, handler, variables, deadline, disposition)

    def _not_current(
        self, req: RTRequest, ref: keys.StepRef | None, record: CallRecord
    ) -> Decision | None:
        """A report that is not the current command's (K1): None when it is new after all."""
        known = record.replies.get(keys.report_key(req.command_id))
        if known is not None:
            return Decision(known.encode(), Disposition.DUPLICATE, "-")
        current = keys.parse_command_id(record.current) if record.current is not None else None
        ahead = (
            ref is not None
            and current is not None
            and current.seq < ref.seq <= current.seq + MAX_LOST_WRITES
            and ref.flow in (record.flow, "-")  # every id we send names the call's flow
        )
        if ahead and record.journal is not None:
            # A straight-line call's journal is behind the platform: no report may be
            # fed to another command than the one it answers.
            app_log.error(
                "callid=%s: report %r is ahead of the stored straight-line call (the store "
                "lost a write): its journal cannot go on; answering with the fallback",
                req.callid,
                req.command_id,
            )
            return Decision(
                self._fallback_body(req, seq=ref.seq if ref else 0), Disposition.FALLBACK, "-"
            )
        if record.current is None or ahead:
            # Ahead of the record: the store lost our last write (Redis restarted between
            # a callback's lock and its save). The echoed id is the truth: go on from it.
            app_log.warning(
                "callid=%s: report %r is ahead of the stored call: continuing from it",
                req.callid,
                req.command_id,
            )
            return None
        app_log.warning(
            "callid=%s: stale report for command %r (the call runs %r): nothing runs",
            req.callid,
            req.command_id,
            record.current,
        )
        last = next(reversed(record.replies.values()), None) if record.replies else None
        if last is not None:  # the command the platform should be running, again
            return Decision(last.encode(), Disposition.STALE, "-")
        return Decision(self.hold_only(req), Disposition.STALE, "-")

    async def _new_record(
        self,
        req: RTRequest,
        ref: keys.StepRef | None,
        envelope: ReplayEnvelope | None,
        started: float,
    ) -> tuple[CallRecord, Disposition] | Decision:
        if req.is_first:
            binding = None
            if req.request_hash is not None:
                bound = await self._binding(req, envelope, started)
                if isinstance(bound, Decision):
                    return bound
                binding = bound
            flow = binding.flow if binding is not None else self.registry.first_flow(req)
            record = CallRecord(flow=flow, app=req.app, state=binding.data if binding else {})
            if binding is not None and req.request_hash is not None:
                record.cleanup = (request_key(req.request_hash),)  # once recorded
            if binding is not None and binding.data:  # kept if start() leaves bad state
                record.initial = json.loads(json.dumps(binding.data))
            self.events.emit(CallStarted(req.callid, flow, req.is_outbound))
            return record, Disposition.REPLY
        if ref is not None and self.registry.flow(ref.flow) is not None:
            app_log.warning(
                "callid=%s: unknown to the store; resuming flow %s at step %s from the echoed "
                "command_id (per-call state was lost)",
                req.callid,
                ref.flow,
                ref.step,
            )
            self.events.emit(CallStarted(req.callid, ref.flow, req.is_outbound, recovered=True))
            record = CallRecord(flow=ref.flow, app=req.app, seq=ref.seq, current=req.command_id)
            return record, Disposition.RECOVERED
        if ref is not None and ref.step == keys.BYE_STEP:
            return Decision(self._bye_body(req, ref), Disposition.REPLY, keys.BYE_STEP)
        app_log.error(
            "callid=%s: unknown call and command_id %r names no flow: answering with the fallback",
            req.callid,
            req.command_id,
        )
        return Decision(
            self._fallback_body(req, seq=ref.seq if ref else 0), Disposition.FALLBACK, "-"
        )

    async def _binding(
        self, req: RTRequest, envelope: ReplayEnvelope | None, started: float
    ) -> Binding | Decision | None:
        """The flow and data ``start_call`` recorded for this outbound call (K4)."""
        assert req.request_hash is not None
        binding = await self.bindings.take(req.request_hash)
        if binding is not None or not await self.bindings.in_flight():
            return binding
        until = started + self.timing.budget / 2
        binding = await self.bindings.wait(req.request_hash, until)
        if binding is not None:
            return binding
        now = self.clock.wall()
        since = envelope.since if envelope is not None and envelope.since else now
        if now - since < self.settings.outbound_bind_wait and await self.bindings.in_flight():
            holds = envelope.holds if envelope is not None else 0
            app_log.info(
                "callid=%s: outbound call waits for its start_call to record its flow", req.callid
            )
            self.events.emit(CallHeld(req.callid, "start", HoldReason.BINDING))
            return Decision(self._replay_body(req, holds + 1, since), Disposition.REPLAY, "start")
        app_log.error(
            "callid=%s: outbound call (request %s) has no flow recorded by start_call after "
            "%.1fs: running the default outbound flow with empty state",
            req.callid,
            req.request_hash,
            now - since,
        )
        return None

    def _step_name(self, req: RTRequest, ref: keys.StepRef | None) -> str:
        if req.is_first:
            return "start"
        if ref is None or ref.step == keys.NO_STEP:
            return "on_result"
        return ref.step

    def _resolve(self, flow: FlowSpec, step: str) -> Handler | None:
        if step == "on_result":
            return self.registry.hook(flow, "on_result")
        return flow.step(step)

    async def _builtin(
        self,
        req: RTRequest,
        ref: keys.StepRef,
        record: CallRecord,
        flow: FlowSpec,
        variables: dict[str, Any],
        deadline: float,
    ) -> Decision:
        if ref.step == keys.BYE_STEP:
            return await self._finish(req, record, self.bye, variables, ref.step, Disposition.REPLY)
        if ref.step == keys.HOLD_STEP:
            pending = record.pending
            if pending is not None:
                record.pending = record.hold = None
                return await self._finish(
                    req, record, pending.command, pending.variables, ref.step, Disposition.DELIVERED
                )
            hold = record.hold
            if hold is not None and self.clock.wall() < hold.until:
                if await self.deliveries.alive(req.callid, hold.token):
                    return await self._hold(req, record, hold.step, HoldReason.SLOW_HANDLER)
                if hold.request is not None:
                    return await self._rerun(req, record, flow, hold, deadline)
                app_log.error(
                    "callid=%s: the worker running %s.%s behind the hold is gone: the fallback",
                    req.callid,
                    flow.name,
                    hold.step,
                )
            else:
                app_log.error("callid=%s: slow handler lost or timed out", req.callid)
            record.hold = None
            return await self._finish(
                req, record, self.fallback, variables, ref.step, Disposition.FALLBACK
            )
        # REPLAY_STEP without replay data: nothing to replay, continue with the fallback
        return await self._finish(
            req, record, self.fallback, variables, ref.step, Disposition.FALLBACK
        )

    async def _rerun(
        self, req: RTRequest, record: CallRecord, flow: FlowSpec, hold: HoldTicket, deadline: float
    ) -> Decision:
        """The worker running a slow step died: run the step again, here, from the report
        that started it (the handler sees the same values and the same idempotency key)."""
        assert hold.request is not None
        original = RTRequest.model_validate(hold.request)
        app_log.warning(
            "callid=%s: the worker running %s.%s behind the hold is gone: running it again "
            "(same idempotency key)",
            req.callid,
            flow.name,
            hold.step,
        )
        record.hold = None
        if hold.step == "on_break":
            handler = self.registry.hook(flow, "on_break")
        else:
            handler = self._resolve(flow, hold.step)
        return await self._run(
            original,
            record,
            flow,
            hold.step,
            handler,
            _own_copy(original.variables),
            deadline,
            Disposition.RECOVERED,
            interrupted=hold.interrupted,
            report=req,
        )

    async def _run_action(
        self,
        req: RTRequest,
        record: CallRecord,
        flow: FlowSpec,
        action: Action,
        ref: keys.StepRef | None,
        variables: dict[str, Any],
        deadline: float,
    ) -> Decision:
        if action.kind is ActionKind.COMMAND and action.command is not None:
            return await self._finish(
                req,
                record,
                action.command,
                variables,
                "interrupt",
                Disposition.INTERRUPT,
                flow=flow,
            )
        if action.kind is ActionKind.STEP and action.step is not None:
            step = action.step
            handler = flow.step(step)
        else:
            handler = self.registry.hook(flow, "on_break")
            step = "on_break"
            if handler is None:  # no break hook: the step reads the early result
                step = self._step_name(req, ref)
                handler = self._resolve(flow, step)
        return await self._run(
            req,
            record,
            flow,
            step,
            handler,
            variables,
            deadline,
            Disposition.INTERRUPT,
            interrupted=True,
        )

    async def _run(
        self,
        req: RTRequest,
        record: CallRecord,
        flow: FlowSpec,
        step: str,
        handler: Handler | None,
        variables: dict[str, Any],
        deadline: float,
        disposition: Disposition,
        *,
        interrupted: bool = False,
        report: RTRequest | None = None,
        action: Action | None = None,
    ) -> Decision:
        """Run one handler against the deadline; past it, hold and finish later.

        ``report``: the callback being answered, when it is not ``req`` (a step run
        again from its hold ticket answers the hold's report)."""
        if handler is None:
            handler_log.error(
                "callid=%s: flow %s has no step %r: answering with the fallback",
                req.callid,
                flow.name,
                step,
            )
            return await self._finish(
                req, record, self.fallback, variables, step, Disposition.FALLBACK, report=report
            )
        call = Call(
            self.services,
            req,
            flow=flow.name,
            step=step,
            state=record.state,
            variables=variables,
            interrupted=interrupted,
            journal=record.journal,
            action=action,
        )
        task, scope = start(handler, call, f"{flow.name}.{step}")
        scope.flow = flow.name
        if not await finished_by(task, deadline):
            token = secrets.token_hex(6)
            until = self.clock.wall() + self.settings.background_timeout
            record.hold = HoldTicket(token, until, step, _request_json(req), interrupted)
            decision = await self._hold(report or req, record, step, HoldReason.SLOW_HANDLER)
            decision.after = lambda: self.deliveries.start(call, task, scope, token)
            decision.cancel = lambda: _cancel(task)  # no hold recorded: nobody delivers
            return decision
        try:
            result = task.result()
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # TimeoutError, a CancelledError it raised: its error
            record.journal = None  # a failed straight-line flow is not replayed again
            if isinstance(exc, FlowError | OutputError):  # the reason says it all
                handler_log.error(
                    "callid=%s: %s: %s; answering with the fallback",
                    req.callid,
                    type(exc).__name__,
                    exc,
                )
            else:
                handler_log.exception(
                    "callid=%s: handler %s.%s raised; answering with the fallback",
                    req.callid,
                    flow.name,
                    step,
                )
            record.state = await self._state_before(req, record)  # a failed step changes none
            return await self._finish(
                req,
                record,
                self.fallback,
                call.variables,
                step,
                Disposition.FALLBACK,
                report=report,
            )
        if call._journal_next is not None:  # a straight-line flow's journal goes with it
            record.journal = call._journal_next
        if scope.action is not None:  # the handler interrupted its own call
            return await self._own_interrupt(
                req, record, flow, scope.action, result, call, deadline
            )
        return await self._finish(
            req, record, result, call.variables, step, disposition, flow=flow, report=report
        )

    async def _own_interrupt(
        self,
        req: RTRequest,
        record: CallRecord,
        flow: FlowSpec,
        action: Action,
        result: Any,
        call: Call,
        deadline: float,
    ) -> Decision:
        """``interrupt()`` from inside the call's own handler: no command runs to break,
        so the action replaces the handler's reply (and no break is sent)."""
        if action.kind is ActionKind.COMMAND and action.command is not None:
            return await self._finish(
                req,
                record,
                action.command,
                call.variables,
                call.step,
                Disposition.INTERRUPT,
                flow=flow,
            )
        if action.kind is ActionKind.STEP and action.step is not None:
            return await self._run(
                req,
                record,
                flow,
                action.step,
                flow.step(action.step),
                call.variables,
                deadline,
                Disposition.INTERRUPT,
                interrupted=True,
            )
        return await self._finish(
            req, record, result, call.variables, call.step, Disposition.REPLY, flow=flow
        )

    # ----------------------------------------------------------------- replies

    def outgoing(
        self,
        command: Any,
        variables: Any,
        flow: FlowSpec | None,
        received: dict[str, Any] | None = None,
    ) -> tuple[Command, dict[str, Any]]:
        """The one check of what a handler wants to send (K7). Raises OutputError."""
        checked = check_command(command)
        if checked.step is not None and flow is not None and flow.step(checked.step) is None:
            raise OutputError(
                f"sent a command to step {checked.step!r}, which flow {flow.name} does not have"
            )
        if not isinstance(variables, dict):
            raise OutputError(f"set call.variables to a {type(variables).__name__}, not a dict")
        if RESERVED in variables:
            variables = strip_reserved(variables)
        # What came in passed the same rules on the way in: flat JSON scalars equal to
        # them need no second look (nested values may have been changed in place, and
        # equality is not identity: Decimal(10) == 10).
        if variables != received or any(type(v) not in _SCALARS for v in variables.values()):
            check_outgoing(variables, self.settings.max_body)
        return checked, variables

    async def _finish(
        self,
        req: RTRequest,
        record: CallRecord,
        command: Any,
        variables: Any,
        step: str,
        disposition: Disposition,
        *,
        flow: FlowSpec | None = None,
        report: RTRequest | None = None,
    ) -> Decision:
        """Check, encode and remember the reply; fall back (once) on a violation."""
        answered = report or req
        try:
            command, variables = self.outgoing(command, variables, flow, req.variables)
            body = self._reply_body(answered, record, command, variables, disposition)
            text = encode_record(
                record.to_json(), record.state, "left call.state that cannot be stored"
            )
        except OutputError as exc:
            handler_log.error(
                "callid=%s: handler %s.%s %s; answering with the fallback",
                req.callid,
                record.flow,
                step,
                exc,
            )
            record.state = await self._state_before(req, record)
            command, variables = self.fallback, strip_reserved(req.variables)
            disposition = Disposition.FALLBACK
            body = self._reply_body(answered, record, command, variables, disposition)
            text = encode_record(record.to_json(), record.state, "call record")
        return Decision(body, disposition, step, text)

    def _reply_body(
        self,
        req: RTRequest,
        record: CallRecord,
        command: Command,
        variables: dict[str, Any],
        disposition: Disposition,
    ) -> bytes:
        record.seq = _next_seq(record, req)
        target = command.step
        if command is self.fallback or (disposition is Disposition.FALLBACK and target is None):
            target = None if command.ends_call else (command.step or keys.BYE_STEP)
        command_id = keys.encode_command_id(record.seq, record.flow, target)
        body = encode(command, command_id, variables)
        record.remember(keys.report_key(req.command_id), body)
        record.current = command_id
        return body

    async def _state_before(self, req: RTRequest, record: CallRecord) -> dict[str, Any]:
        """State to keep when a handler left it unstorable: what the call had before.

        Handlers change ``call.state`` in place, so it is read again from the store
        (the call is still locked, so this is the state before the step); a call's
        first step falls back to the ``start_call`` data.
        """
        if record.initial is not None:
            return dict(record.initial)
        try:
            raw = await self.store.get(keys.call_key(req.callid))
        except (StoreError, OSError) as exc:
            app_log.error("callid=%s: could not read the state back: %s", req.callid, brief(exc))
            raw = None
        state = raw.get("state") if isinstance(raw, dict) else None
        return dict(state) if isinstance(state, dict) else {}

    async def _interrupt_behind_hold(
        self, req: RTRequest, record: CallRecord, interrupt: Interrupt
    ) -> Decision | None:
        """An interrupt broke the hold of a straight-line flow still running code
        between two awaits. It must reach the flow's next await, not the command
        before: the caller is held again and the interrupt waits for that hold, whose
        break the flow's delivery sends. None: the flow's next command is there (the
        action applies to it now), or nothing runs it any more (the hold's usual end)."""
        hold = record.hold
        if record.pending is not None or hold is None or self.clock.wall() >= hold.until:
            return None
        if not await self.deliveries.alive(req.callid, hold.token):
            return None
        decision = await self._hold(req, record, hold.step, HoldReason.SLOW_HANDLER)
        record.interrupt = Interrupt(record.current, interrupt.action, rearmed=True)
        decision.text = encode_record(record.to_json(), record.state, "call record")
        return decision

    async def _hold(
        self, req: RTRequest, record: CallRecord, step: str, reason: HoldReason
    ) -> Decision:
        record.seq = _next_seq(record, req)
        command_id = keys.encode_command_id(record.seq, record.flow, keys.HOLD_STEP)
        body = encode(self.hold, command_id, req.variables)
        record.remember(keys.report_key(req.command_id), body)
        record.current = command_id
        self.events.emit(CallHeld(req.callid, step, reason))
        try:
            text = encode_record(record.to_json(), record.state, "call.state")
        except OutputError:  # the slow handler's delivery reports it; keep the last good state
            record.state = await self._state_before(req, record)
            text = encode_record(record.to_json(), record.state, "call record")
        return Decision(body, Disposition.HOLD, step, text)

    def hold_only(self, req: RTRequest) -> bytes:
        """A hold that changes nothing: its report comes back as a stale one."""
        return encode(self.hold, keys.encode_command_id(0, "-", keys.HOLD_STEP), req.variables)

    def _fallback_body(self, req: RTRequest, *, seq: int) -> bytes:
        target = None if self.fallback.ends_call else keys.BYE_STEP
        command_id = keys.encode_command_id(seq + 1, "-", target)
        return encode(self.fallback, command_id, req.variables)

    def _bye_body(self, req: RTRequest, ref: keys.StepRef) -> bytes:
        command_id = keys.encode_command_id(ref.seq + 1, ref.flow, None)
        return encode(self.bye, command_id, req.variables)

    def _replay_body(self, req: RTRequest, holds: int, since: float) -> bytes:
        ref = keys.parse_command_id(req.command_id)
        command_id = keys.encode_command_id(0, ref.flow if ref else "-", keys.REPLAY_STEP)
        return encode(REPLAY_HOLD, command_id, wrap(req, holds, since), reserved=True)

    def _not_ready(
        self, req: RTRequest, envelope: ReplayEnvelope | None, exc: BaseException
    ) -> Decision:
        """The store could not be used: hold and replay, or refuse a terminal event."""
        if is_terminal(req.call_status):
            return self.hangups.keep(req, exc)
        ref = keys.parse_command_id(req.command_id)
        if ref is not None and ref.step == keys.BYE_STEP:  # the apology ended: no state needed
            return Decision(self._bye_body(req, ref), Disposition.REPLY, keys.BYE_STEP)
        holds = envelope.holds if envelope is not None else 0
        if holds >= self.settings.max_replays:
            app_log.error(
                "callid=%s: store unavailable after %d holds (%s): answering with the fallback",
                req.callid,
                holds,
                brief(exc),
            )
            return Decision(self._fallback_body(req, seq=0), Disposition.FALLBACK, "-")
        level = app_log.warning if _is_lock_timeout(exc) else app_log.error
        level("callid=%s: holding the caller, store not ready: %s", req.callid, brief(exc))
        since = envelope.since if envelope is not None and envelope.since else self.clock.wall()
        self.events.emit(CallHeld(req.callid, keys.REPLAY_STEP, HoldReason.STORE))
        return Decision(
            self._replay_body(req, holds + 1, since), Disposition.REPLAY, keys.REPLAY_STEP
        )

    def _unknown_status(self, req: RTRequest) -> None:
        status = str(req.call_status)[:40]
        if status not in self._unknown_statuses and len(self._unknown_statuses) < 100:
            self._unknown_statuses.add(status)
            app_log.warning(
                "callid=%s: unknown call_status %r: treated as terminal (the call ends, "
                "on_hangup runs)",
                req.callid,
                status,
            )

    # ----------------------------------------------------------------- interrupts

    async def interrupt(self, callid: int, then: Command | str | Callable[..., Any] | None) -> bool:
        """See ``App.interrupt``."""
        if current_live.get() == callid:
            raise RegistrationError(
                "a straight-line flow cannot interrupt its own call: await the command it "
                "wants next instead"
            )
        scope = current_scope()
        if scope is not None and scope.callid == callid:
            # From the call's own handler: nothing runs on the platform to break.
            action = to_action(then)
            step = action.step or (action.command.step if action.command else None)
            flow = self.registry.flow(scope.flow)
            if step is not None and (flow is None or flow.step(step) is None):
                raise RegistrationError(f"flow {scope.flow} has no step {step!r}")
            scope.action = action
            return False
        self.control()  # no API credentials: say so now, before anything is recorded
        async with self.locks.hold(callid) as txn:
            record = txn.record
            if record is None:
                raise CallNotFound(f"call {callid} is not known to the store", callid=callid)
            if record.ended:
                raise CallEnded(f"call {callid} has ended", callid=callid)
            flow = self.registry.flow(record.flow)
            if flow is None and not (then is None or isinstance(then, Command)):
                raise RegistrationError(
                    f"call {callid} runs flow {record.flow!r}, which this App does not "
                    "register: interrupt from an App built with the same flows (the same "
                    "build()), or pass then=a command"
                )
            if flow is not None and flow.script is not None:
                action = script_action(then)  # a command, or a sub-flow found by name
            else:
                action = to_action(then)
                step = action.step or (action.command.step if action.command else None)
                if step is not None and (flow is None or flow.step(step) is None):
                    raise RegistrationError(f"flow {record.flow} has no step {step!r}")
            current = keys.parse_command_id(record.current or "")
            replaced = (
                record.interrupt is not None and _same_id(record.interrupt.target, record.current)
            ) or (  # a slow handler's delivery already broke this hold
                record.pending is not None
                and current is not None
                and current.step == keys.HOLD_STEP
            )
            # A re-armed interrupt still owes its break to the delivery it waits for.
            rearmed = replaced and record.interrupt is not None and record.interrupt.rearmed
            record.interrupt = Interrupt(record.current, action, rearmed)
            await txn.save(
                encode_record(record.to_json(), record.state, "call record"),
                ttl=self.settings.call_ttl,
            )
            if replaced:
                app_log.info("callid=%s: interrupt replaced a pending one", callid)
                return True
            broke = await self.send_break(callid)
        self.events.emit(CallInterrupted(callid, record.current, broke))
        return broke

    async def send_break(self, callid: int) -> bool:
        """``calls.realtime_break``, retried only when the request surely never left.

        Called with the call's lock held and the break's target as the current
        command: the platform cannot move past that command while we hold the lock
        (its report waits for it), so a retry can only stop that same command.
        """
        from ..errors import ApiError, ConfigurationError, OutcomeUnknown, TransportError

        try:
            control = self.control()
        except ConfigurationError as exc:  # no API credentials: the hold ends by itself
            app_log.warning("callid=%s: cannot send calls.realtime_break: %s", callid, exc)
            return False
        for attempt in range(3):
            try:
                return bool(
                    await control.realtime_break(callid, timeout=self.settings.break_timeout)
                )
            except OutcomeUnknown as exc:
                app_log.warning(
                    "callid=%s: break may not have reached the platform: %s", callid, brief(exc)
                )
                return False
            except TransportError as exc:
                app_log.warning(
                    "callid=%s: break not sent (try %d): %s", callid, attempt + 1, brief(exc)
                )
                await asyncio.sleep(0.05 * (attempt + 1))
            except ApiError as exc:
                app_log.warning("callid=%s: break refused: %s", callid, brief(exc))
                return False
        return False


def to_action(then: Command | str | Callable[..., Any] | None) -> Action:
    if then is None:
        return Action(ActionKind.BREAK)
    if isinstance(then, Command):
        return Action(ActionKind.COMMAND, command=check_command(then))
    return Action(ActionKind.STEP, step=step_name(then))


#: Seconds a suspended straight-line coroutine is kept without a callback: past it the
#: call most likely ended on another worker (its next callback, if any, replays).
SESSION_IDLE = 600.0

#: How far an echoed id may be ahead of the stored call and still be ours: the store
#: lost that many writes (Redis restarted from its last fsync, one second of writes).
MAX_LOST_WRITES = 3

#: JSON scalar types.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _request_json(req: RTRequest) -> dict[str, Any]:
    data: dict[str, Any] = req.model_dump(mode="json")
    return data


def _own_copy(variables: dict[str, Any]) -> dict[str, Any]:
    """The handler's own copy of ``variables``: changes to it, nested ones included,
    never reach the request (whose variables the fallback sends as they came)."""
    if any(type(v) in (dict, list) for v in variables.values()):
        copied: dict[str, Any] = json.loads(json.dumps(variables))
        return copied
    return dict(variables)


def _same_id(a: int | str | None, b: int | str | None) -> bool:
    return a == b and type(a) is type(b)


def _is_lock_timeout(exc: BaseException) -> bool:
    from ..errors import LockTimeout

    return isinstance(exc, LockTimeout)


def _next_seq(record: CallRecord, req: RTRequest) -> int:
    """Sequence number of the next command: past the stored one and the echoed one."""
    ref = keys.parse_command_id(req.command_id)
    return max(record.seq, ref.seq if ref is not None else 0) + 1


def _spawn(coro: Any) -> asyncio.Task[Any]:
    return asyncio.ensure_future(coro)


def _cancel(task: asyncio.Future[Any]) -> None:
    abandon(task)
