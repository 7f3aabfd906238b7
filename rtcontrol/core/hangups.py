"""The end of a call: ``on_hangup`` exactly once, after the reply (K2, K3, K8).

A terminal callback (HANGUP, or any status that is not known to be live) is
acknowledged only once its effect is durable:

1. under the call's lock the record is marked ended, with a *hang-up ticket* that
   holds the terminal request; the call is indexed in ``rtc:hangups`` by the time
   after which another worker may take the run over;
2. the reply (``{}``) goes out;
3. ``on_hangup`` runs in the background, with a budget of its own
   (``RTCONTROL_HANGUP_BUDGET``, 30 s), not the 4 s reply budget;
4. the ticket is marked done and the index entry removed.

If the store cannot be used at step 1, the callback gets **503** (a platform that
retries gets another chance) and this worker keeps the request and retries it,
with backoff, until the store takes it. A worker that dies during ``on_hangup``
leaves its ticket due: a *janitor* in every worker runs it again. That makes
``on_hangup`` at-least-once in that one case, with ``ended`` and the ticket as
the guard and ``call.idempotency_key`` the same on the re-run; exactly once
otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable
from dataclasses import replace
from typing import Any, Protocol

from ..errors import StoreError
from ..events import CallTerminated, Disposition, HangupHandled
from ..protocol import RTRequest
from ..validate import encode_record
from . import keys
from .call import Call
from .journal import Journal
from .parts import Decision, EngineParts
from .records import CallRecord, HangupTicket, HoldTicket
from .transaction import brief

__all__ = ["Hangups"]

app_log = logging.getLogger("rtcontrol.app")
handler_log = logging.getLogger("rtcontrol.handler")

#: Seconds past the hang-up budget before another worker may take a run over.
GRACE = 5.0
#: Seconds between two janitor passes (with jitter).
JANITOR_EVERY = 2.0
REFUSED_BODY = b'{"error":"store unavailable: hang-up kept for retry"}'
#: Seconds between two looks at a flow running behind a hold on another worker.
RUNNING_COPY_POLL = 0.05


class SlowRuns(Protocol):
    """The slow handlers running behind holds (``Deliveries``)."""

    def cancel(self, callid: int) -> None: ...

    def runs_here(self, callid: int, token: str) -> bool: ...

    def alive(self, callid: int, token: str) -> Awaitable[bool]: ...


class Hangups:
    def __init__(self, engine: EngineParts, slow: SlowRuns) -> None:
        self.engine = engine
        #: The slow handlers running behind holds (stopped when their call ends).
        self.slow = slow
        self._janitor: asyncio.Task[None] | None = None
        self._kept: set[int] = set()
        #: When a refused terminal callback was first seen (bounds the binding wait).
        self._first_seen: dict[int, float] = {}
        self._runs: set[int] = set()

    # ------------------------------------------------------------------ the callback

    async def begin(self, req: RTRequest, record: CallRecord | None) -> Decision:
        """Mark the call ended (under its lock) and plan ``on_hangup``."""
        engine = self.engine
        answered = record is not None
        if record is None:
            record = await self._record_for(req)
        record.ended = True
        hold = record.hold
        elsewhere: HoldTicket | None = None
        spec = engine.registry.flow(record.flow)
        if (
            hold is not None
            and spec is not None
            and spec.script is not None
            and not self.slow.runs_here(req.callid, hold.token)
        ):
            # A straight-line flow runs code behind the hold on another worker: its
            # next command (and what it journaled meanwhile) is still to come. The
            # ticket stays, so that worker saves the journal for the flow's end.
            elsewhere = hold
        record.interrupt = record.pending = None
        record.hold = elsewhere
        due = engine.clock.wall() + engine.settings.hangup_budget + GRACE
        record.hangup = HangupTicket(req.model_dump(mode="json"), due)
        self.slow.cancel(req.callid)
        text = encode_record(record.to_json(), record.state, "call record")
        flow, state, journal = record.flow, record.state, record.journal

        def after() -> None:
            engine.events.emit(CallTerminated(req.callid, flow, str(req.call_status), answered))
            self.run_later(req, flow, state, attempt=1, journal=journal, behind=elsewhere)

        self._first_seen.pop(req.callid, None)
        return Decision(
            b"{}", Disposition.HANGUP, "on_hangup", text, after=after, cleanup=record.cleanup
        )

    async def _record_for(self, req: RTRequest) -> CallRecord:
        """A call that ends on its first callback (busy, no answer, an unknown status):
        its flow (and data, for a started call) still get ``on_hangup``."""
        engine = self.engine
        ref = keys.parse_command_id(req.command_id)
        if ref is not None and engine.registry.flow(ref.flow) is not None:
            return CallRecord(flow=ref.flow, app=req.app, seq=ref.seq)
        if req.request_hash is not None:
            binding = await engine.bindings.take(req.request_hash)
            if binding is None and await engine.bindings.in_flight():
                until = engine.clock.monotonic() + engine.timing.budget / 2
                binding = await engine.bindings.wait(req.request_hash, until)
                now = engine.clock.monotonic()
                since = self._first_seen.setdefault(req.callid, now)
                waited = now - since
                if binding is None and await engine.bindings.in_flight():
                    if waited < engine.settings.outbound_bind_wait:
                        # not durable yet: refused (503) and kept, retried once bound
                        raise StoreError("its start_call has not recorded the flow yet")
                    app_log.error(
                        "callid=%s: outbound call (request %s) ended before start_call "
                        "recorded its flow: on_hangup of the default flow",
                        req.callid,
                        req.request_hash,
                    )
            if binding is not None:
                record = CallRecord(flow=binding.flow, app=req.app, state=binding.data)
                record.cleanup = (keys.request_key(req.request_hash),)
                return record
        return CallRecord(flow=engine.registry.first_flow(req), app=req.app)

    async def index(self, callid: int) -> None:
        """Index the ended call until its ``on_hangup`` is done (crash recovery).

        Part of making the hang-up durable: a failure raises, and the hang-up is
        then refused and kept for retry."""
        engine = self.engine
        due = engine.clock.wall() + engine.settings.hangup_budget + GRACE
        await engine.store.index_add(
            keys.HANGUP_INDEX, str(callid), due, ttl=max(engine.settings.ended_ttl, 86400.0)
        )

    def keep(self, req: RTRequest, exc: BaseException) -> Decision:
        """The terminal event could not be made durable: 503, and retry it here."""
        app_log.error(
            "callid=%s: hang-up not recorded yet (%s): kept by this worker and retried",
            req.callid,
            brief(exc),
        )
        if req.callid not in self._kept:
            self._kept.add(req.callid)
            self.engine.spawn(self._retry(req))
        return Decision(REFUSED_BODY, Disposition.REFUSED, "on_hangup", status=503)

    async def _retry(self, req: RTRequest) -> None:
        engine = self.engine
        give_up = engine.clock.monotonic() + engine.settings.ended_ttl
        delay = 0.2
        try:
            while engine.clock.monotonic() < give_up:
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                reply = await engine.handle_callback(req)
                if reply.status == 200:
                    app_log.info("callid=%s: kept hang-up recorded", req.callid)
                    return
            app_log.error(
                "callid=%s: hang-up dropped after %.0fs", req.callid, engine.settings.ended_ttl
            )
        finally:
            self._kept.discard(req.callid)

    # ------------------------------------------------------------------ on_hangup

    def run_later(
        self,
        req: RTRequest,
        flow: str,
        state: dict[str, Any],
        *,
        attempt: int,
        journal: Journal | None = None,
        behind: HoldTicket | None = None,
    ) -> None:
        if req.callid in self._runs:
            return
        self._runs.add(req.callid)
        task = self.engine.spawn(self._run(req, flow, state, attempt, journal, behind))
        task.add_done_callback(lambda _: self._runs.discard(req.callid))

    async def _run(
        self,
        req: RTRequest,
        flow_name: str,
        state: dict[str, Any],
        attempt: int,
        journal: Journal | None = None,
        behind: HoldTicket | None = None,
    ) -> None:
        engine = self.engine
        flow = engine.registry.flow(flow_name) or engine.registry.flows["main"]
        handler = engine.registry.hook(flow, "on_hangup")
        ok = True
        if flow.script is not None:  # the flow's pending await raises: its finally blocks run
            if behind is not None:
                journal = await self._after_running_copy(req.callid, behind, journal)
            try:
                final = await flow.script.end(req, journal, engine.settings.hangup_budget)
                if final is not None:  # on_hangup sees the state the flow ended with
                    state = final
            except Exception:
                ok = False
                handler_log.exception("callid=%s: ending flow %s failed", req.callid, flow.name)
        if handler is not None:
            call = Call(
                engine.services,
                req,
                flow=flow.name,
                step="on_hangup",
                state=state,
                variables=dict(req.variables),
                idempotency_key=f"{req.callid}:on_hangup",
            )
            budget = engine.settings.hangup_budget
            try:
                await asyncio.wait_for(handler(call), timeout=budget)
            except TimeoutError:
                ok = False
                handler_log.error(
                    "callid=%s: on_hangup of %s still running after its %.0fs budget "
                    "(RTCONTROL_HANGUP_BUDGET): cancelled",
                    req.callid,
                    flow.name,
                    budget,
                )
            except Exception:
                ok = False
                handler_log.exception("callid=%s: on_hangup of %s failed", req.callid, flow.name)
        engine.events.emit(HangupHandled(req.callid, flow.name, ok, attempt))
        await self._complete(req.callid)

    async def _after_running_copy(
        self, callid: int, hold: HoldTicket, journal: Journal | None
    ) -> Journal | None:
        """Wait (within half the hang-up budget, and the hold's own limit) until the
        worker running the flow behind ``hold`` has saved the journal it reached; then
        the flow ends here at its true next await, and what it ran meanwhile (a
        ``once()``) is not run again. A worker that died leaves the journal as it was."""
        engine = self.engine
        until = min(hold.until, engine.clock.wall() + engine.settings.hangup_budget / 2)
        while engine.clock.wall() < until:  # another process: the store is the only signal
            if not await self.slow.alive(callid, hold.token):
                break
            await asyncio.sleep(RUNNING_COPY_POLL)
        try:
            raw = await engine.store.get(keys.call_key(callid))
        except (StoreError, OSError) as exc:
            app_log.warning("callid=%s: journal not read again: %s", callid, brief(exc))
            return journal
        if isinstance(raw, dict) and raw.get("journal") is not None:
            return CallRecord.from_json(raw).journal
        return journal

    async def _complete(self, callid: int) -> None:
        engine = self.engine
        for attempt in range(5):
            try:
                async with engine.locks.hold(callid) as txn:
                    record = txn.record
                    if record is not None and record.hangup is not None:
                        record.hangup = replace(record.hangup, done=True)
                        record.state = {}
                        record.journal = None
                        record.hold = None
                        text = encode_record(record.to_json(), record.state, "call record")
                        await txn.commit(text, ttl=engine.settings.ended_ttl)
                await engine.store.index_remove(keys.HANGUP_INDEX, str(callid))
                return
            except (StoreError, OSError, TimeoutError) as exc:
                app_log.warning(
                    "callid=%s: hang-up completion not saved (try %d): %s",
                    callid,
                    attempt + 1,
                    brief(exc),
                )
                await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        app_log.error(
            "callid=%s: hang-up completion not saved: another worker may run on_hangup again",
            callid,
        )

    # ------------------------------------------------------------------ the janitor

    def ensure_janitor(self) -> None:
        """Start this worker's janitor (once, lazily, on the first callback)."""
        if self._janitor is None or self._janitor.done():
            self._janitor = self.engine.spawn(self._sweep_forever())

    @property
    def janitor(self) -> asyncio.Task[None] | None:
        return self._janitor

    def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(JANITOR_EVERY * (0.5 + random.random()))
            with contextlib.suppress(StoreError, OSError, TimeoutError):
                await self.sweep()

    async def sweep(self) -> int:
        """Take over the ``on_hangup`` runs whose worker is gone. Returns how many."""
        engine = self.engine
        now = engine.clock.wall()
        due = await engine.store.index_range(keys.HANGUP_INDEX, float("-inf"), now, limit=20)
        taken = 0
        for member, _ in due:
            callid = int(member)
            if callid in self._runs:
                continue
            async with engine.locks.hold(callid) as txn:
                record = txn.record
                ticket = record.hangup if record is not None else None
                if record is None or ticket is None or ticket.done:
                    await engine.store.index_remove(keys.HANGUP_INDEX, member)
                    continue
                if ticket.due > now:
                    continue
                again = engine.clock.wall() + engine.settings.hangup_budget + GRACE
                record.hangup = replace(ticket, due=again, attempt=ticket.attempt + 1)
                await txn.save(
                    encode_record(record.to_json(), record.state, "call record"),
                    ttl=engine.settings.ended_ttl,
                )
                await engine.store.index_add(
                    keys.HANGUP_INDEX, member, again, ttl=engine.settings.ended_ttl
                )
            app_log.warning(
                "callid=%s: on_hangup of %s did not complete on its worker: running it again "
                "(attempt %d, same idempotency key)",
                callid,
                record.flow,
                ticket.attempt + 1,
            )
            self.run_later(
                RTRequest.model_validate(ticket.request),
                record.flow,
                record.state,
                attempt=ticket.attempt + 1,
                journal=record.journal,
            )
            taken += 1
        return taken
