"""The one lock -> read -> change -> write of a call, and the time arithmetic around it.

Every path that changes a call's record (a callback, an interrupt, a slow handler's
delivery, ``on_hangup`` completing) goes through :class:`CallLocks`:

* the lock has a short lease (``RTCONTROL_LOCK_LEASE``, 1 s) renewed while its
  holder works, so a crashed worker blocks its call for about a second, not for
  the whole handler budget;
* a write refused or failed always frees the lock;
* :class:`Timing` holds all the waits: how long a callback may wait for the lock,
  how much of the budget is kept for the write that follows the handler (the
  reply must leave inside the deadline, store write included).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from ..errors import StoreError, StoreUnavailable
from ..settings import Settings
from ..store import Store
from ..store.base import Encoded, LockToken
from .keys import call_key, lock_key
from .ports import Clock
from .records import CallRecord

__all__ = ["MIN_LAST_TRIP", "CallLocks", "Timing", "Txn"]

_log = logging.getLogger("rtcontrol.app")

#: Smallest share of the budget kept for the store write after a handler.
MIN_WRITE_RESERVE = 0.05
#: Seconds past the budget a live callback's store work may still take.
REPLY_MARGIN = 0.5
#: Seconds after receipt by which any live reply leaves (the platform waits 5 s).
HARD_LIMIT = 4.9
#: The least time a store phase gets, even past the deadline (a last round trip).
MIN_LAST_TRIP = 0.1


class Timing:
    """Deadlines and waits, derived from the settings and the store's observed speed."""

    def __init__(self, settings: Settings) -> None:
        self.budget = settings.handler_budget
        self.min_lease = settings.lock_lease
        self.lock_wait = settings.lock_wait
        self.break_timeout = settings.break_timeout
        #: Smoothed store round trip, in seconds (updated by every callback).
        self.store_rtt = 0.0

    @property
    def lease(self) -> float:
        """A lock's lease: ``RTCONTROL_LOCK_LEASE``, or four store round trips when the
        store is slower than that (a renewal must land before the lease ends)."""
        return max(self.min_lease, 4.0 * self.store_rtt)

    def observe(self, seconds: float) -> None:
        """One store round trip took ``seconds``."""
        self.store_rtt += (seconds - self.store_rtt) * (0.2 if seconds < self.store_rtt else 0.5)

    def write_reserve(self) -> float:
        """Time kept at the end of the budget for the write that follows a handler."""
        return min(max(MIN_WRITE_RESERVE, 2.0 * self.store_rtt + 0.02), self.budget / 2)

    def handler_deadline(self, received: float, last_trip: float = 0.0) -> float:
        """When a handler must have finished for its reply (and write) to be on time.

        ``last_trip``: how long this callback's lock-and-read took. The write that
        follows may be as slow (a store that just became slow), so the reserve
        covers it too, up to half the budget.
        """
        reserve = min(max(self.write_reserve(), last_trip + 0.02), self.budget / 2)
        return received + self.budget - reserve

    def reply_deadline(self, received: float) -> float:
        return received + self.budget

    def hard_deadline(self, received: float) -> float:
        """The latest a live reply may leave: the budget plus a margin for the write
        that follows a handler finishing at its deadline, within the platform's 5 s
        (spec 5.4, FACT: reply within 5 s of each POST)."""
        return received + max(self.budget, min(self.budget + REPLY_MARGIN, HARD_LIMIT))

    def lock_wait_for(self, received: float, now: float, *, terminal: bool) -> float:
        """How long a callback may wait for its call's lock.

        A live callback waits at most ``lock_wait``, and never so long that its
        reply (a hold, at worst) would be late. A terminal one (HANGUP, whose reply
        is ignored) outwaits any holder (a callback, an interrupt's break): a late
        ``{}`` costs nothing, a hang-up not recorded must be retried.
        """
        if terminal:
            return self.lock_wait_outside()
        left = self.reply_deadline(received) - now - self.write_reserve()
        return max(min(left, self.lock_wait), 0.001)

    def lock_wait_outside(self) -> float:
        """Wait of an operation no caller is waiting on (interrupt, delivery, hang-up)."""
        return self.budget + self.break_timeout + self.lease


class Txn:
    """A held lock on one call, with the record read under it."""

    __slots__ = (
        "_closed",
        "_locks",
        "_renewing",
        "callid",
        "raw",
        "record",
        "renewed",
        "token",
        "took",
    )

    def __init__(self, locks: CallLocks, callid: int, token: LockToken, raw: Any) -> None:
        self._locks = locks
        self.callid = callid
        self.token = token
        self.raw = raw
        self.record: CallRecord | None = CallRecord.from_json(raw) if raw else None
        self._closed = False
        #: Seconds the lock-and-read took (a measure of the store's speed right now).
        self.took = 0.0
        #: Loop time of the last (re)newal of the lease.
        self.renewed = locks.clock.monotonic()
        self._renewing = False
        locks.opened(self)

    # -- lease renewal: the CallLocks' renewer calls this past a third of the lease

    async def renew(self) -> None:
        if self._renewing:
            return
        self._renewing = True
        locks = self._locks
        sent = locks.clock.monotonic()  # the new lease runs from about now
        try:
            held = await locks.store.renew(
                lock_key(self.callid), self.token, lease=locks.timing.lease
            )
        except (StoreError, OSError) as exc:
            if not self._closed:
                _log.warning("callid=%s: lock renewal failed: %s", self.callid, brief(exc))
            return  # tried again at the next pass: the lease may still run
        finally:
            self._renewing = False
        if self._closed:  # committed or released meanwhile: nothing was lost
            return
        if held:
            self.renewed = sent
        else:
            _log.warning("callid=%s: lock lease lost while working on the call", self.callid)

    @property
    def closed(self) -> bool:
        return self._closed

    def _close(self) -> None:
        self._closed = True
        self._locks.closed(self)

    # -- ending the transaction

    async def commit(self, text: str | None, *, ttl: float) -> None:
        """Write the encoded record (``None`` deletes it) and unlock, in one round trip.

        Raises StoreError/TimeoutError if the write failed; the lock is freed either way.
        """
        self._close()
        locks = self._locks
        value = None if text is None else Encoded(text)
        started = locks.clock.monotonic()
        try:
            await locks.store.set_and_release(
                call_key(self.callid),
                value,
                ttl=ttl,
                lock_key=lock_key(self.callid),
                token=self.token,
            )
        except StoreUnavailable:
            self._release_later()
            raise
        except StoreError:
            # The lease ran out before the write (a slow store, a blocked loop). If
            # nobody changed the call meanwhile, take the lock again and write.
            await self._recommit(value, ttl)
        except BaseException:  # cancelled (the reply cannot wait any longer) or worse
            self._release_later()
            raise
        locks.timing.observe(locks.clock.monotonic() - started)

    async def _recommit(self, value: Encoded | None, ttl: float) -> None:
        locks = self._locks
        token, raw = await locks.store.acquire_and_get(
            lock_key(self.callid), call_key(self.callid), lease=locks.timing.lease, wait=0.05
        )
        self.token = token
        # ``self.raw`` is the record as read: handlers only ever touch its ``state``.
        if _mark(raw) != _mark(self.raw):
            await self.release()
            raise StoreError(f"call {self.callid} changed while its lock had lapsed: not saved")
        _log.warning("callid=%s: lock lease lapsed before the write; taken again", self.callid)
        await locks.store.set_and_release(
            call_key(self.callid), value, ttl=ttl, lock_key=lock_key(self.callid), token=token
        )

    def _release_later(self) -> None:
        """Free the lock in the background: whoever gave up on the write must not wait
        for the same slow store again (the lease frees it anyway)."""
        self._locks.spawn(self.release())

    async def save(self, text: str, *, ttl: float) -> None:
        """Write the encoded record and keep the lock (an interrupt then sends its break)."""
        await self._locks.store.set(call_key(self.callid), Encoded(text), ttl=ttl)

    async def release(self) -> None:
        """Unlock without writing. Never raises: a lock we cannot free ends with its lease."""
        self._close()
        try:
            await self._locks.store.release(lock_key(self.callid), self.token)
        except (StoreError, OSError) as exc:
            _log.warning("callid=%s: could not release the lock: %s", self.callid, brief(exc))


class CallLocks:
    """Opens transactions on calls."""

    def __init__(self, store: Store, timing: Timing, clock: Clock, spawn: Any) -> None:
        self.store = store
        self.timing = timing
        self.clock = clock
        #: Runs a coroutine in the background, tracked (the App's ``track``).
        self.spawn = spawn
        #: Transactions holding a lock now; one renewer keeps their leases alive
        #: (a timer per engine, not per callback: most callbacks end in microseconds).
        self._open: set[Txn] = set()
        self._renewer: asyncio.TimerHandle | None = None

    def opened(self, txn: Txn) -> None:
        self._open.add(txn)
        if self._renewer is None:
            loop = asyncio.get_running_loop()
            self._renewer = loop.call_later(self.timing.lease / 4, self._renew_due)

    def closed(self, txn: Txn) -> None:
        self._open.discard(txn)

    def _renew_due(self) -> None:
        self._renewer = None
        if not self._open:
            return
        now = self.clock.monotonic()
        lease = self.timing.lease
        for txn in list(self._open):
            if now - txn.renewed >= lease / 3:
                self.spawn(txn.renew())
        loop = asyncio.get_running_loop()
        self._renewer = loop.call_later(lease / 4, self._renew_due)

    async def open(self, callid: int, *, wait: float) -> Txn:
        """Lock the call and read its record in one round trip.

        Raises LockTimeout, StoreError or TimeoutError. Stores that do not bound
        their own operations get an outer timer.
        """
        store = self.store
        started = self.clock.monotonic()
        op = store.acquire_and_get(
            lock_key(callid), call_key(callid), lease=self.timing.lease, wait=wait
        )
        if store.bounded:
            token, raw = await op
        else:
            token, raw = await asyncio.wait_for(op, timeout=wait + self.timing.budget)
        elapsed = self.clock.monotonic() - started
        # A round trip (more when the lock was contended: the estimate then errs on the
        # safe side, a longer lease and a larger write reserve).
        self.timing.observe(min(elapsed, self.timing.budget / 2))
        txn = Txn(self, callid, token, raw)
        txn.took = elapsed
        txn.renewed = started  # the lease runs from when the acquire was sent
        return txn

    @asynccontextmanager
    async def hold(self, callid: int, *, wait: float | None = None) -> AsyncIterator[Txn]:
        """``async with locks.hold(callid) as txn``: the lock is always freed."""
        txn = await self.open(
            callid, wait=self.timing.lock_wait_outside() if wait is None else wait
        )
        try:
            yield txn
        finally:
            if not txn.closed:
                await txn.release()


def _mark(raw: Any) -> tuple[Any, ...]:
    """The fields another writer would have changed (everything but ``state``)."""
    if not isinstance(raw, dict):
        return (None,)
    return tuple(
        repr(raw.get(k))
        for k in ("flow", "seq", "current", "interrupt", "hold", "pending", "hangup", "ended")
    )


def brief(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
