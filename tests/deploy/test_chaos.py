"""Chaos soak: nginx (shipped site) -> 3 uvicorn workers -> a delay proxy -> Redis.

A load generator plays the CALLR platform over HTTP through nginx: a few hundred
concurrent calls of ``chaos_app`` (reads, plays, a 1.5 s step, a step slower than the
handler budget), each POSTing its callbacks until the app hangs up or the caller does,
then its HANGUP POST. Meanwhile, every cycle of faults (48 s): a worker SIGKILLed and
restarted 2 s later, another SIGTERMed (it drains) and restarted, Redis killed and
restarted 1 s later on its AOF, Redis slowed down by 100-400 ms per direction for 10 s.

Then every call is checked (``chaos_rig.check``): it ended with a HANGUP the app
acknowledged; every reply was a 200 within 5 s (the one excuse: a reply a SIGKILL cut
while it was being written, which nginx cannot retry); no fallback; the commands
followed the flow; no step ran twice with different idempotency keys; ``on_hangup``
ran once (again: only re-runs with the same key are allowed).

Short form by default (one cycle of faults, about 65 s of wall time); longer on demand::

    RTCONTROL_CHAOS_SECONDS=600 make chaos     # or: pytest -m chaos -s tests/deploy

``RTCONTROL_CHAOS_CALLS`` sets the concurrency (200), ``RTCONTROL_CHAOS_SEED`` replays
the same callers. ``-s`` prints the summary; a failure lists each violation with its
call's timeline (POSTs and the workers' step executions) and nginx's log lines.

The test ``test_slow_replies_never_eject_every_worker`` pins the nginx part (K12):
read timeouts, 503s and dead workers never leave nginx without a worker.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from chaos_rig import (
    DEADLINE,
    Platform,
    Report,
    Stack,
    VirtualCall,
    check,
    fault_plan,
    nearest_fault,
    nginx_errors_by_uri,
    nginx_evidence,
    percentile,
    read_sink,
    run_faults,
    timeline,
    wait_for_hangups,
    worker_lines,
)
from deploy_rig import SITE_CONF, Nginx, nginx_exe, skip_or_fail
from starlette.types import Receive, Scope, Send

from rtcontrol.emulator import LocalServer

#: One cycle of faults lasts this long (see chaos_rig.fault_plan); the load runs for
#: whole cycles: RTCONTROL_CHAOS_SECONDS=600 makes 12.
CYCLE = 48.0
CYCLES = max(1, round(float(os.environ.get("RTCONTROL_CHAOS_SECONDS", str(CYCLE))) / CYCLE))
CONCURRENCY = int(os.environ.get("RTCONTROL_CHAOS_CALLS", "200"))
SEED = int(os.environ.get("RTCONTROL_CHAOS_SEED") or random.randrange(2**31))
#: Seconds over which the calls are placed at the start.
RAMP = 5.0
#: Seconds to wait, after the last call, for every on_hangup to be in the sink: a run
#: cut by a crash is taken over by another worker's janitor once the hang-up budget
#: (30 s) and its grace (5 s) are over, and the janitor passes every 2 s.
HANGUP_WAIT = 40.0
#: Violations and call timelines shown when the soak fails.
SHOW_VIOLATIONS, SHOW_CALLS = 40, 8


def _requirements(config: pytest.Config) -> str:
    exe = nginx_exe()
    if exe is None:
        skip_or_fail(config, "nginx not installed (Debian package `nginx`)")
    if shutil.which("redis-server") is None:
        skip_or_fail(config, "redis-server not found on PATH")
    return exe


def _ms(values: list[float], q: float) -> str:
    if not values:
        return "-"
    value = percentile(values, q)
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


async def _outcomes(stack: Stack) -> Counter[str]:
    """Callbacks by outcome, summed over the workers (each since its last start)."""
    total: Counter[str] = Counter()
    async with httpx.AsyncClient(trust_env=False, timeout=5) as client:
        for worker in stack.workers:
            try:
                text = (await client.get(worker.url + "/metrics")).text
            except httpx.HTTPError:
                continue
            for line in text.splitlines():
                if line.startswith("rtcontrol_callbacks_total{") and 'outcome="' in line:
                    outcome = line.split('outcome="', 1)[1].split('"', 1)[0]
                    total[outcome] += int(float(line.rsplit(" ", 1)[1]))
    return total


def _summary(
    platform: Platform,
    stack: Stack,
    report: Report,
    extra: dict[str, Any],
) -> str:
    calls = list(platform.calls.values())
    t0 = platform.t0
    exchanges = [ex for c in calls for ex in c.exchanges]
    latencies = [ex.latency for ex in exchanges if ex.latency is not None and ex.http]
    late = [ex for ex in exchanges if ex.latency is None or ex.latency > DEADLINE]
    access = [line for line in stack.nginx.access_lines() if line[5].startswith("/callback")]
    statuses = Counter(line[1] for line in access)
    passed_on = {line[5] for line in access if "," in line[2]}
    late_passed_on = sum(1 for ex in late if ex.uri in passed_on)
    in_nginx = [float(line[4]) for line in access]
    ids = [str(c.get("command_id")) for call in calls for c in call.commands]
    hold_ids = [i for i in ids if i.endswith(":@hold")]
    replay_ids = [i for i in ids if i.endswith(":@replay")]
    ended = Counter(c.ended_by for c in calls)
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(extra["outcomes"].items()) if v)
    faults = "; ".join(
        f"{f.start - t0:.1f}s {f.what} ({f.end - f.start:.2f}s{', ' + f.note if f.note else ''})"
        for f in stack.faults
    )
    kinds = ", ".join(f"{k} {v}" for k, v in report.by_kind().most_common()) or "none"
    f = report.figures
    lines = [
        "chaos soak: nginx (shipped site, 1 process) -> "
        f"{len(stack.workers)} uvicorn workers (chaos_app) -> delay proxy -> "
        f"Redis (AOF everysec), loopback; seed {SEED}",
        f"  load: {CONCURRENCY} concurrent calls for {CYCLES * CYCLE:.0f} s "
        f"({CYCLES} cycle(s) of faults); peak concurrent {platform.peak}; wall "
        f"{extra['wall']:.1f} s; driver: {extra['cpu']:.0f} s of CPU, event-loop lag max "
        f"{platform.loop_lag * 1000:.0f} ms; load average (1 min) at the end "
        f"{extra['load']:.1f} on {os.cpu_count()} CPUs",
        f"  calls: {len(calls)} placed; ended by {dict(ended)}; HANGUP acknowledged "
        f"{sum(c.hangup_acked for c in calls)}",
        f"  callbacks: {len(exchanges)} POSTs ({sum(ex.resend for ex in exchanges)} re-sent "
        f"after a failure, {len(report.excused)} failures excused as cut by a SIGKILL); "
        f"nginx statuses {dict(statuses)}; passed to another worker by nginx: {len(passed_on)}",
        f"  reply latency (platform side): p50 {_ms(latencies, 0.5)}, p99 "
        f"{_ms(latencies, 0.99)}, max {_ms(latencies, 1.0)}; later than {DEADLINE:g} s or "
        f"none: {len(late)} ({late_passed_on} of them passed to another worker by nginx after "
        f"a kill or a refusal); time in nginx p50 {_ms(in_nginx, 0.5)}, p99 {_ms(in_nginx, 0.99)}, "
        f"max {_ms(in_nginx, 1.0)}",
        f"  holds: {len(hold_ids)} slow-handler holds, {len(replay_ids)} replay holds; breaks "
        f"received: {sum(c.breaks for c in calls)} ({dict(platform.rpc)}); fallbacks: "
        f"{report.by_kind().get('fallback', 0)}",
        f"  executions (sink): {f['step_runs']} steps, {f['hangup_runs']} on_hangup; "
        f"re-runs with the same key: steps {f['reruns_same_key']}, on_hangup "
        f"{f['hangup_reruns_same_key']}; waited {extra['hangup_wait']:.1f} s for on_hangup",
        f"  worker outcomes (each since its last start): {outcomes or '-'}",
        f"  redis proxy: {extra['proxy']}",
        f"  faults: {faults}",
        f"  violations: {len(report.violations)} ({kinds})",
    ]
    lines += [f"  note: {note}" for note in report.notes]
    return "\n".join(lines)


def _details(
    platform: Platform,
    stack: Stack,
    report: Report,
    sink: list[Any],
    *,
    violations: int | None = SHOW_VIOLATIONS,
    calls: int | None = SHOW_CALLS,
) -> str:
    """The violations, then the full timeline of the calls concerned (POSTs, step
    executions, nginx's log lines, the workers' log lines naming the call)."""
    t0 = platform.t0
    out = ["", "violations (time from the start of the load):"]
    for v in report.violations[:violations]:
        where = nearest_fault(stack.faults, v.at, t0)
        out.append(f"  [{v.kind}] callid={v.callid} at {v.at - t0:.3f}s ({where}): {v.detail}")
    shown: list[int] = []
    for kind in report.by_kind():  # one call per kind first, then more
        shown += [v.callid for v in report.violations if v.kind == kind][:1]
    shown += [v.callid for v in report.violations]
    errors = nginx_errors_by_uri(stack.nginx.errors())
    access = stack.nginx.access_lines()
    logs = worker_lines({w.name: w.log for w in stack.workers})
    for callid in list(dict.fromkeys(shown))[:calls]:
        call: VirtualCall | None = platform.calls.get(callid)
        if call is None:
            continue
        out += ["", timeline(call, sink, t0, _pid_namer(stack))]
        uris = {ex.uri for ex in call.exchanges}
        names = {f"127.0.0.1:{w.port}": w.name for w in stack.workers}
        out += ["    nginx: " + line for line in nginx_evidence(access, uris, names)]
        out += ["    nginx error: " + e for uri in sorted(uris) for e in errors.get(uri, [])]
        out += ["    worker log: " + line for line in logs.get(callid, [])]
    if report.excused:
        out += ["", "excused (reply cut by a SIGKILL):", *report.excused[:violations]]
    return "\n".join(out)


def _pid_namer(stack: Stack) -> Any:
    return lambda pid: stack.pids.get(pid, f"pid {pid}")


@pytest.mark.chaos
@pytest.mark.nginx
@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(CYCLES * CYCLE + 240)
async def test_chaos_soak(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    exe = _requirements(request.config)
    stack = Stack(exe, tmp_path)
    wall, cpu = time.monotonic(), time.process_time()
    try:
        await asyncio.to_thread(stack.start)
        platform = Platform(stack.nginx.url, stack.auth, seed=SEED, faults=stack.faults)
        async with LocalServer(platform.rpc_app(), port=stack.rpc_port):
            platform.t0 = time.time()
            chaos = asyncio.create_task(
                run_faults(fault_plan(stack, CYCLES, CYCLE), stack.faults, platform.t0)
            )
            try:
                await platform.run(CONCURRENCY, CYCLES * CYCLE, RAMP)
                await asyncio.wait_for(asyncio.shield(chaos), timeout=90)
            finally:
                chaos.cancel()
                await asyncio.gather(chaos, return_exceptions=True)
            hangup_wait = await wait_for_hangups(stack.sink, platform.calls, within=HANGUP_WAIT)
        extra = {
            "outcomes": await _outcomes(stack),
            "proxy": await asyncio.to_thread(stack.proxy.stats),
            "hangup_wait": hangup_wait,
            "wall": time.monotonic() - wall,
            "cpu": time.process_time() - cpu,
            "load": os.getloadavg()[0],
        }
        sink = read_sink(stack.sink)
        report = check(
            list(platform.calls.values()),
            sink,
            stack.nginx.access_lines(),
            platform.t0,
            _pid_namer(stack),
        )
        summary = _summary(platform, stack, report, extra)
        print("\n" + summary)
        if report.violations:
            full = tmp_path / "chaos-report.txt"
            everything = _details(platform, stack, report, sink, violations=None, calls=None)
            full.write_text(summary + "\n" + everything + "\n")
            details = _details(platform, stack, report, sink)
            print(details + f"\n\nevery violation and every call concerned: {full}")
            pytest.fail(
                f"{len(report.violations)} violations (all of them in {full})\n{summary}\n"
                f"{details}\n{stack.diagnostics()}",
                pytrace=False,
            )
        assert platform.peak >= CONCURRENCY * 0.9, summary
    finally:
        await asyncio.to_thread(stack.close)


# ---------------------------------------------------------------- nginx alone (K12)


def _site_seconds(directive: str) -> float:
    found = re.search(rf"(?m)^\s*{directive}\s+(\d+)(ms|s);", SITE_CONF.read_text())
    assert found is not None, f"{directive} not found in {SITE_CONF}"
    return float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)


async def _upstream(scope: Scope, receive: Receive, send: Send) -> None:
    """A stand-in worker: ``/slow`` answers after nginx's read timeout, ``/busy`` 503."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    status = 200
    if scope["path"].startswith("/slow"):
        await asyncio.sleep(_site_seconds("proxy_read_timeout") + 1.0)
    elif scope["path"].startswith("/busy"):
        status = 503
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.nginx
@pytest.mark.timeout(60)
async def test_slow_replies_never_eject_every_worker(request: pytest.FixtureRequest) -> None:
    """K12, with the shipped site and worker list: a read timeout on every worker, and
    503s, leave nginx with all its workers (never ``502 no live upstreams``); a late
    reply is not passed to another worker; a dead worker's callbacks go to another one;
    a worker's 503 reaches the platform as it is, even with a dead worker in the list
    (retried, it became the dead worker's 502)."""
    exe = nginx_exe()
    if exe is None:
        skip_or_fail(request.config, "nginx not installed (Debian package `nginx`)")
    servers = [LocalServer(_upstream) for _ in range(3)]
    for server in servers:
        await server.start()
    nginx = Nginx(exe, [s.port for s in servers])

    async def statuses(client: httpx.AsyncClient, path: str, n: int = 6) -> list[int]:
        return [
            (await client.post(f"{nginx.url}{path}?{i}", content=b"{}")).status_code
            for i in range(n)
        ]

    try:
        await asyncio.to_thread(nginx.start)
        async with httpx.AsyncClient(trust_env=False, timeout=30) as client:
            slow = await asyncio.gather(
                *(client.post(f"{nginx.url}/slow?{i}", content=b"{}") for i in range(3))
            )
            after_timeouts = await statuses(client, "/fast")
            busy = await statuses(client, "/busy")
            after_503 = await statuses(client, "/fast2")
            await servers[0].stop()  # a dead worker: connections refused
            busy_with_a_dead_worker = await statuses(client, "/busy2")
            after_death = await statuses(client, "/fast3")
        log = {line[5]: line for line in nginx.access_lines()}
        errors = "\n".join(nginx.errors())
        assert [r.status_code for r in slow] == [504] * 3
        # a late reply is never passed to another worker (read timeout > retry window)
        assert all("," not in log[f"/slow?{i}"][2] for i in range(3)), log
        assert after_timeouts == [200] * 6, errors
        assert "no live upstreams" not in errors
        assert busy == [503] * 6
        assert all("," not in log[f"/busy?{i}"][2] for i in range(6)), log  # not retried
        assert after_503 == [200] * 6, errors
        assert busy_with_a_dead_worker == [503] * 6, log
        assert after_death == [200] * 6, errors
        # the dead worker's share went to another worker
        assert any("," in log[f"/fast3?{i}"][2] for i in range(6)), log
    finally:
        await asyncio.to_thread(nginx.close)
        for server in servers[1:]:
            await server.stop()
