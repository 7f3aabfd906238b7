"""Straight-line flows deployed for real on loopback: nginx -> two uvicorn workers -> Redis.

The workers serve ``apps.menu_straight`` (through ``tests/deploy/straight_app.py``,
which only counts the flow's starts per call and answers ``GET /starts``). nginx runs
the shipped site config, round-robin over the two workers, one nginx worker process:
callbacks of one call placed alone alternate between the workers, so every callback
is answered by the worker that did not answer the one before, which must rebuild the
call's coroutine from the journal in Redis (its cached copy, if any, is behind).

* Whole calls (four callers) give the transcript the step-style ``apps.menu`` gives on
  one worker; nginx's access log shows each call's callbacks alternating; both
  workers started each call's flow (the second one by replaying the journal).
* A worker holding a call's current coroutine is killed with SIGKILL between two
  callbacks; the other worker (its copy one step behind) finishes the call.

nginx and redis-server are required: missing, the tests skip, and fail under CI=true.
"""

from __future__ import annotations

import asyncio
import importlib
import itertools
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from deploy_rig import CALLBACK, LOGIN, PASSWORD, Nginx, UvicornWorker, nginx_exe, skip_or_fail
from deploy_rig import worker_env as make_env
from redis_server import RedisServer

from rtcontrol.emulator import (
    Callee,
    Emulator,
    HangUp,
    Press,
    ScaledClock,
    Silence,
    Transcript,
)
from rtcontrol.testing import EmulatedPlatform, random_credentials

pytestmark = [pytest.mark.nginx, pytest.mark.redis, pytest.mark.slow]

DEPLOY_DIR = Path(__file__).resolve().parent
#: Virtual seconds per real second (the longest call, three silent prompts: ~35 s).
SPEED = 8.0
SALES, SUPPORT = "+33100000001", "+33100000002"
#: The agents answer after 1 s and hang up 3 s later (the bridge ends the call).
PHONEBOOK = {number: Callee(answer_delay=1.0, hangup_after=3.0) for number in (SALES, SUPPORT)}
CALLERS = {
    "press 1": [Press("1")],
    "invalid key, then 2": [Press("5"), Press("2")],
    "silence x3": [Silence(), Silence(), Silence()],
    "invalid key, then hang-up mid-prompt": [Press("7"), HangUp(after=2.0)],
}


@dataclass
class Stack:
    redis: RedisServer
    workers: list[UvicornWorker]
    nginx: Nginx

    def address(self, worker: UvicornWorker) -> str:
        return f"127.0.0.1:{worker.port}"

    def diagnostics(self) -> str:
        parts = ["--- nginx errors:\n" + "\n".join(self.nginx.errors()[-30:])]
        parts += [f"--- {w.name} log:\n{w.output()}" for w in self.workers]
        return "\n".join(parts)


@pytest.fixture
def stack(
    request: pytest.FixtureRequest,
    redis_server_factory: Callable[..., RedisServer],
    tmp_path: Path,
) -> Iterator[Stack]:
    exe = nginx_exe()
    if exe is None:
        skip_or_fail(request.config, "nginx not installed (Debian package `nginx`)")
    redis = redis_server_factory()
    env = make_env(
        RTCONTROL_STORE_URL=redis.url,
        RTCONTROL_CALLBACK_LOGIN=LOGIN,
        RTCONTROL_CALLBACK_PASSWORD=PASSWORD,
        RTCONTROL_WORKERS="2",
    )
    workers = [
        UvicornWorker(
            "straight_app:app", env, app_dir=DEPLOY_DIR, log_dir=tmp_path, name=f"worker{i}"
        )
        for i in (1, 2)
    ]
    nginx = Nginx(exe, [w.port for w in workers], workers=1)
    try:
        for worker in workers:
            worker.start()
        nginx.start()
        yield Stack(redis, workers, nginx)
    finally:
        nginx.close()
        for worker in workers:
            worker.close()


# --------------------------------------------------------------------------- helpers


def heard(t: Transcript) -> dict[str, Any]:
    """What the caller heard and did (callids, hashes and times left out)."""
    return {
        "replies": [(r["command"], r["params"]) for r in t.replies if r],
        "reports": [
            (r["call_status"], r["command"], r["command_result"], r["command_error"])
            for r in t.requests
        ],
        "executed": t.executed,
        "ended_by": t.ended_by,
        "hangups": t.hangup_count,
        "errors": t.errors,
    }


async def one_worker(actions: list[Any]) -> Transcript:
    """The same caller on the step-style menu, one worker in this process."""
    app = importlib.import_module("apps.menu").build(**random_credentials())
    async with EmulatedPlatform(app, speed=400.0, phonebook=PHONEBOOK) as p:
        return await p.call(Callee(actions=list(actions)))


async def callbacks(nginx: Nginx, at_least: int) -> list[list[str]]:
    """The upstreams nginx tried for each callback, once at least ``at_least`` are logged
    (nginx writes a request's line once its reply is sent; 20 s at most)."""
    deadline = time.monotonic() + 20.0
    while True:
        found = [line[2].split(", ") for line in nginx.access_lines() if line[-1] == CALLBACK]
        if len(found) >= at_least:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"nginx logged {len(found)} callbacks, expected {at_least}")
        await asyncio.sleep(0.02)


async def starts(stack: Stack, callid: int) -> dict[str, int]:
    """How many times each live worker started the flow of ``callid``."""
    out: dict[str, int] = {}
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for worker in stack.workers:
            if worker.proc is None or worker.proc.poll() is not None:
                continue
            data = (await client.get(worker.url + "/starts")).json()
            out[stack.address(worker)] = int(data["starts"].get(str(callid), 0))
    return out


def is_fallback(t: Transcript) -> bool:
    """The fallback reply names no flow ("N:-:...") or says goodbye after it ("@bye")."""
    ids = [str(r.get("command_id")) for r in t.replies if isinstance(r, dict) and r]
    return any(":-:" in i or i.endswith(":@bye") for i in ids)


# --------------------------------------------------------------------------- the tests


@pytest.mark.timeout(180)
async def test_every_callback_on_the_other_worker_behind_nginx(stack: Stack) -> None:
    workers = {stack.address(w) for w in stack.workers}
    logged = len(await callbacks(stack.nginx, 0))
    async with Emulator(clock=ScaledClock(SPEED), phonebook=PHONEBOOK) as emu:
        app_hash = emu.create_app(stack.nginx.url + CALLBACK, login=LOGIN, password=PASSWORD).hash
        for caller, actions in CALLERS.items():
            reference = await one_worker(actions)
            t = await asyncio.wait_for(
                emu.place_call(app_hash, Callee(actions=list(actions))), timeout=60
            )
            where = f"{caller}:\n{t.render()}\n{stack.diagnostics()}"
            assert heard(t) == heard(reference), where
            assert not is_fallback(t), where
            assert all(e.status == 200 for e in t.events if e.kind == "reply"), where
            tried = (await callbacks(stack.nginx, logged + len(t.requests)))[logged:]
            logged += len(t.requests)
            assert all(len(u) == 1 for u in tried), tried  # no callback passed on
            served = [u[0] for u in tried]
            assert set(served) == workers, served
            assert all(a != b for a, b in itertools.pairwise(served)), served
            # Both workers started the flow: the one without the first callback by
            # replaying the journal. With their caches, once per call each (plus at
            # most one replay to raise the hang-up at the call's pending await).
            started = await starts(stack, t.callid)
            assert set(started) == workers, started
            assert 2 <= sum(started.values()) <= 3, (caller, started)


@pytest.mark.timeout(180)
async def test_a_worker_killed_mid_call_the_other_finishes_it(stack: Stack) -> None:
    actions = [Press("7"), Press("8"), Press("1")]
    reference = await one_worker(actions)
    async with Emulator(clock=ScaledClock(SPEED / 2), phonebook=PHONEBOOK) as emu:
        app_hash = emu.create_app(stack.nginx.url + CALLBACK, login=LOGIN, password=PASSWORD).hash
        call = emu.start_call(app_hash, Callee(actions=list(actions)))
        # The reply to the second callback came: its worker holds the call's current
        # coroutine (the other one's copy is a step behind). Kill that one.
        await asyncio.wait_for(call.wait_command("read", 2), timeout=30)
        before = await callbacks(stack.nginx, 2)
        victim = next(w for w in stack.workers if stack.address(w) == before[1][-1])
        survivor = next(w for w in stack.workers if w is not victim)
        await asyncio.to_thread(victim.kill)
        killed_after = len(await callbacks(stack.nginx, 0))
        t = await asyncio.wait_for(call.wait(), timeout=60)
    where = f"{t.render()}\n{stack.diagnostics()}"
    assert heard(t) == heard(reference), where
    assert t.executed == ["read", "read", "read", "dialout"], where
    assert t.ended_by == "bridge", where
    assert not is_fallback(t), where
    assert all(e.status == 200 for e in t.events if e.kind == "reply"), where
    tried = await callbacks(stack.nginx, len(t.requests))
    assert len(tried) == len(t.requests), tried
    served = [u[-1] for u in tried]  # the worker that answered
    assert served[:2] == [stack.address(survivor), stack.address(victim)], served
    after = served[killed_after:]
    assert len(after) >= 2, served  # at least the last report and the HANGUP POST
    assert set(after) == {stack.address(survivor)}, tried
    # nginx still sends the dead worker its turn (max_fails=0): refused, passed on.
    assert any(u == [stack.address(victim), stack.address(survivor)] for u in tried[2:]), tried
    started = await starts(stack, t.callid)
    assert started == {stack.address(survivor): 1}, started  # its copy caught up
