"""K1/K2: replays see the first run's values; a report is applied to the command it
reports, never to another one."""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from typing import Any

import pytest

from rtcontrol import App, LiveCall, tts

from .helpers import (
    CALL,
    SpyStore,
    call_key,
    first,
    is_fallback,
    logged,
    media,
    report,
)


async def test_a_lost_write_never_feeds_a_report_to_another_command(
    make_app: Callable[..., App], store: SpyStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis lost the last write (restart from its last fsync): the stored journal waits
    at read("first"); the platform reports read("second") (its id is one ahead, which the
    engine accepts). The report of "second" must not become the digits of "first"."""
    app = make_app()
    seen: list[tuple[str, Any]] = []

    @app.inbound_call
    async def flow(call: LiveCall) -> None:
        a = await call.read(tts("first"), max_digits=4)
        seen.append(("first", a))
        b = await call.read(tts("second"), max_digits=4)
        seen.append(("second", b))
        await call.play(tts(f"you typed {a} then {b}"))

    r0 = await app.handle_callback(first(CALL))
    snapshot = store._data[call_key(CALL)]  # the record as saved after the first reply
    r1 = await app.handle_callback(report(CALL, r0, "1111"))
    assert media(r1) == "second"
    store._data[call_key(CALL)] = snapshot  # the store lost that write
    r2 = await app.handle_callback(report(CALL, r1, "2222"))
    print(seen, r2.body, logged(caplog, 30))
    # The first run saw first=1111. Whatever the engine does now (fallback, or going on),
    # no run of the flow may see first == "2222" (the report of another command).
    assert ("first", "2222") not in seen
    assert is_fallback(r2) or media(r2) == "you typed 1111 then 2222"


class Lookup:
    """A callable object (a configured client), passed to once()."""

    def __init__(self, base: str) -> None:
        self.base = base

    async def __call__(self, digits: str) -> str:
        return f"{self.base}/{digits}"


async def fetch(base: str, digits: str) -> str:
    return f"{base}/{digits}"


@pytest.mark.parametrize("kind", ["partial", "callable-object"])
async def test_once_of_a_partial_or_callable_object_replays_on_another_worker(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture, kind: str
) -> None:
    """Each worker (process) builds its own client object: once() names it by repr(),
    which holds a memory address, so the replay on another worker never matches."""
    a, b = make_app(), make_app()
    for app in (a, b):
        # each worker (process) has its own copy of the function / client object
        own = types.FunctionType(fetch.__code__, fetch.__globals__, "fetch")
        own.__qualname__ = fetch.__qualname__
        fn = functools.partial(own, "crm") if kind == "partial" else Lookup("crm")

        def register(app: App, fn: Any) -> None:
            @app.inbound_call(name="support")
            async def support(call: LiveCall) -> None:
                digits = await call.read(tts("number"), max_digits=4)
                customer = await call.once(fn, digits)
                await call.play(tts(f"Hello {customer}"))
                await call.read(tts("menu"), max_digits=1)
                await call.play(tts("bye"))

        register(app, fn)

    r0 = await a.handle_callback(first(CALL))
    r1 = await a.handle_callback(report(CALL, r0, "42"))
    assert media(r1) == "Hello crm/42"
    r2 = await b.handle_callback(report(CALL, r1))  # b replays the once() from the journal
    print(logged(caplog))
    assert not is_fallback(r2), logged(caplog)
    assert media(r2) == "menu"


async def test_once_with_other_arguments_on_replay_is_a_determinism_error(
    make_app: Callable[..., App], caplog: pytest.LogCaptureFixture
) -> None:
    """The replay calls once(lookup, "B") where the first run called once(lookup, "A"):
    it silently gets A's result. Expected: DeterminismError (as for a command whose
    parameters changed)."""
    a, b = make_app(), make_app()
    sources = iter(["A", "B"])
    got: list[str] = []

    async def lookup(key: str) -> str:
        return f"value of {key}"

    for app in (a, b):

        @app.inbound_call(name="f")
        async def f(call: LiveCall) -> None:
            key = next(sources)  # unjournaled input (clock, env, ...)
            value = await call.once(lookup, key)
            got.append(value)
            await call.play(tts("one"))
            await call.play(tts(f"{key}: {value}"))

    r0 = await a.handle_callback(first(CALL))
    r1 = await b.handle_callback(report(CALL, r0))
    print(got, r1.body)
    assert is_fallback(r1), f"replay went on with {media(r1)!r}"


async def test_status_seen_by_a_resumed_flow_is_the_callback_that_resumed_it(
    make_app: Callable[..., App],
) -> None:
    """LiveCall.status is documented as "the call status of the callback that resumed
    the flow last". The worker holding the coroutine never updates it; a replaying
    worker sees the current one: two workers, two values (K1)."""
    seen: dict[str, list[str]] = {"a": [], "b": []}
    a, b = make_app(), make_app(flow_cache=0)
    for name, app in (("a", a), ("b", b)):

        def register(app: App, out: list[str]) -> None:
            @app.inbound_call(name="f")
            async def f(call: LiveCall) -> None:
                await call.play(tts("one"))
                out.append(str(call.status))
                await call.play(tts("two"))

        register(app, seen[name])

    r0 = await a.handle_callback(first(CALL))  # INCOMING_CALL
    await a.handle_callback(report(CALL, r0, status="UP"))  # a resumes
    s0 = await b.handle_callback(first(CALL + 1))
    await b.handle_callback(report(CALL + 1, s0, status="UP"))  # b replays
    print(seen)
    assert seen["a"] == seen["b"] == ["UP"]
