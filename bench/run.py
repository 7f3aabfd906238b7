"""rtcontrol benchmarks against the physical limit and hand-written endpoints (``make bench``).

Apps (bench/apps.py), all on ``POST /cb`` with the same ~300-byte RT.Request and reply:
B0 bare ASGI (fixed reply), B1 bare ASGI + json (in-process only), B2 Starlette,
B3 plain FastAPI with the same pydantic models, F rtcontrol (memory store),
FR rtcontrol with the Redis store.

Phases:
  wrk        throughput ceiling: server on CPU0, wrk on CPU1, interleaved rounds, median
  openloop   1,000 simulated calls, one callback every U(2,5) s, latency from schedule
  memory     bytes per active call in the memory store at 10,000 calls (tracemalloc)
  inprocess  app-layer µs per request without sockets, median of rounds; F/B3 ratio

Writes bench/results/<timestamp>.json and bench/results/latest.json, and (for a full
run) rewrites BENCHMARKS.md. ``--quick`` is a smoke run (seconds per phase).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apps, inprocess, openloop, payload, report, servers  # noqa: E402

PHASES = ("wrk", "openloop", "memory", "inprocess", "straight")
ALL_APPS = ("B0", "B1", "B2", "B3", "F", "FR")
WRK_APPS = ("B0", "B2", "B3", "F", "FR")
OPENLOOP_APPS = ("F", "FR", "B3")
INPROCESS_APPS = ("B0", "B1", "B2", "B3", "F", "FR")
STATEFUL = ("F", "FR")
# Disjoint call-id ranges per use, so runs never see each other's calls.
WRK_BASE = payload.CALLID_BASE  # 7,000,000 + pool
INPROCESS_BASE = payload.CALLID_BASE + 500_000
OPENLOOP_BASE = 9_000_000
GENERATOR_MAX_RATE = 400  # req/s per generator process (doc §2.1)
CV_LIMIT = 0.05  # doc §2.1: a throughput run set varying more than this is noisy


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------- environment


def machine_info(redis_url: str | None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    libs = {}
    for name in (
        "rtcontrol",
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "pydantic-core",
        "httptools",
        "uvloop",
        "redis",
        "hiredis",
        "orjson",
    ):
        try:
            libs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            libs[name] = None
    wrk_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=5)
        wrk_version = (out.stdout or out.stderr).splitlines()[0].split(" Copyright")[0]
    commit = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        commit = out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    redis_version = None
    if redis_url:
        with contextlib.suppress(Exception):
            import redis

            client = redis.Redis.from_url(redis_url, socket_timeout=2)
            redis_version = client.info("server").get("redis_version")
            client.close()
    return {
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "libraries": libs,
        "wrk": wrk_version,
        "redis_server": redis_version,
        "git_commit": commit,
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def redis_status(url: str) -> str | None:
    """None when the Redis mode can run, else why not."""
    if not apps.redis_available():
        return "rtcontrol/store/redis.py is not available yet"
    try:
        import redis

        client = redis.Redis.from_url(url, socket_timeout=2)
        client.ping()
        client.close()
    except Exception as exc:
        return f"Redis at {url} unreachable: {type(exc).__name__}: {exc}"
    return None


def cleanup_redis(url: str) -> int:
    """Delete the benchmark's keys (call ids of 7+ digits from 7,000,000) in its database."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5)
    removed = 0
    try:
        batch: list[bytes] = []
        # rtc:{7000000}:call, rtc:{7000000}:lock... (one hash tag per call)
        for key in client.scan_iter(match="rtc:[{][789]??????*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                removed += client.unlink(*batch)
                batch.clear()
        if batch:
            removed += client.unlink(*batch)
    finally:
        client.close()
    return removed


def fetch_metrics(server: servers.Server) -> dict[str, float]:
    """rtcontrol's callback counters by outcome (F and FR serve /metrics)."""
    counts: dict[str, float] = {}
    with urllib.request.urlopen(server.url + "/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("rtcontrol_callbacks_total{outcome="):
                label, value = line.rsplit(" ", 1)
                outcome = label.split('"')[1]
                if float(value):
                    counts[outcome] = float(value)
    return counts


# ----------------------------------------------------------------------- phases


def _cv(values: list[float]) -> float:
    """Coefficient of variation (population)."""
    return statistics.pstdev(values) / statistics.mean(values) if len(values) > 1 else 0.0


def phase_wrk(opts: argparse.Namespace, app_list: list[str], tmp: Path) -> dict[str, Any]:
    post_lua = payload.write_lua(tmp)
    calls = opts.pool
    out: dict[str, Any] = {
        "settings": {
            "duration_s": opts.wrk_duration,
            "warmup_s": opts.wrk_warmup,
            "rounds": opts.wrk_rounds,
            "extra_rounds_max": opts.wrk_extra,
            "connections": opts.connections,
            "pool_calls": calls,
            "command": servers.wrk_command_line(opts.connections, opts.wrk_duration),
            "server_command": shlex.join(servers.uvicorn_command("APP", 0))
            .replace("--port 0", "--port PORT")
            .replace("make_app", "make_<app>"),
        },
        "apps": {},
    }
    with servers.serving(app_list, opts.redis_url, tmp) as running:
        for name in app_list:
            server = running[name]
            url = server.url + apps.ROUTE
            if name in STATEFUL:
                failed = asyncio.run(
                    openloop.prime("127.0.0.1", server.port, base=WRK_BASE, calls=calls)
                )
                if failed:
                    raise RuntimeError(f"{name}: {failed} of {calls} first callbacks failed")
            log(f"wrk warm-up {name} ({opts.wrk_warmup:g}s)")
            servers.wrk(
                url,
                post_lua,
                duration=opts.wrk_warmup,
                connections=opts.connections,
                args=[str(WRK_BASE), str(calls), "1"],
            )
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in app_list}
        r = 0
        while True:
            if r >= opts.wrk_rounds:
                noisy = [n for n, rs in runs.items() if _cv([x["rps"] for x in rs]) > CV_LIMIT]
                if not noisy or r >= opts.wrk_rounds + opts.wrk_extra:
                    break
                log(f"wrk: CV > {CV_LIMIT:.0%} for {', '.join(noisy)}: one more round")
            r += 1
            # Each round answers a fresh pool of calls, primed before the clock starts:
            # every request is then the report of its call's current command, as the
            # platform sends them (a report of anything else is a stale one: not a step).
            base = WRK_BASE + 100_000 * r
            for name in app_list:
                server = running[name]
                if name in STATEFUL:
                    failed = asyncio.run(
                        openloop.prime("127.0.0.1", server.port, base=base, calls=calls)
                    )
                    if failed:
                        raise RuntimeError(f"{name}: {failed} of {calls} first callbacks failed")
                cpu0 = server.cpu_seconds()
                result = servers.wrk(
                    server.url + apps.ROUTE,
                    post_lua,
                    duration=opts.wrk_duration,
                    connections=opts.connections,
                    args=[str(base), str(calls), "1"],
                )
                cpu = server.cpu_seconds() - cpu0
                result["server_cpu_percent"] = round(100 * cpu / opts.wrk_duration, 1)
                result["server_cpu_us_per_request"] = round(cpu / result["requests"] * 1e6, 1)
                runs[name].append(result)
                lat = result["latency_us"]
                log(
                    f"wrk round {r}/{opts.wrk_rounds} {name}: {result['rps']:,.0f} req/s "
                    f"p50 {lat['p50'] / 1000:.2f} ms p99 {lat['p99'] / 1000:.2f} ms "
                    f"(server CPU {result['server_cpu_percent']}%)"
                )
        for name in STATEFUL:
            if name in running:
                out.setdefault("outcomes", {})[name] = fetch_metrics(running[name])
    for name, results in runs.items():
        rps = [x["rps"] for x in results]
        median_run = sorted(results, key=lambda x: x["rps"])[len(results) // 2]
        errors = sum(sum(x["errors"].values()) for x in results)
        cv = _cv(rps)
        out["apps"][name] = {
            "rps_median": round(statistics.median(rps), 1),
            "rps_runs": [round(x, 1) for x in rps],
            "cv": round(cv, 4),
            "noisy": cv > CV_LIMIT,
            "p50_ms": round(median_run["latency_us"]["p50"] / 1000, 3),
            "p99_ms": round(median_run["latency_us"]["p99"] / 1000, 3),
            "p999_ms": round(median_run["latency_us"]["p999"] / 1000, 3),
            "max_ms": round(median_run["latency_us"]["max"] / 1000, 3),
            "server_cpu_percent": median_run["server_cpu_percent"],
            "server_cpu_us_per_request": round(
                statistics.median(x["server_cpu_us_per_request"] for x in results), 1
            ),
            "errors": errors,
            "runs": results,
        }
    return out


def phase_openloop(opts: argparse.Namespace, app_list: list[str], tmp: Path) -> dict[str, Any]:
    out: dict[str, Any] = {
        "settings": {
            "calls": opts.ol_calls,
            "duration_s": opts.ol_duration,
            "ramp_s": opts.ol_ramp,
            "interval_s": "U(2, 5)",
            "command": (
                f"taskset -c {servers.LOAD_CPU} python -m bench.openloop --port PORT "
                f"--calls {opts.ol_calls} --duration {opts.ol_duration:g} --ramp {opts.ol_ramp:g}"
            ),
        },
        "apps": {},
    }
    with servers.serving(app_list, opts.redis_url, tmp) as running:
        for i, name in enumerate(app_list):
            server = running[name]
            # ~3.5 s between callbacks on average: keep each process under the rate limit.
            procs = max(1, math.ceil(opts.ol_calls / 3.5 / GENERATOR_MAX_RATE))
            log(
                f"open loop {name}: {opts.ol_calls} calls, {opts.ol_ramp:g}+{opts.ol_duration:g}s"
                f" ({procs} generator process{'es' if procs > 1 else ''})"
            )
            cpu0 = server.cpu_seconds()
            t0 = time.monotonic()
            running_gens = []
            for p in range(procs):
                share = opts.ol_calls // procs + (1 if p < opts.ol_calls % procs else 0)
                command = [
                    "taskset",
                    "-c",
                    servers.LOAD_CPU,
                    sys.executable,
                    "-m",
                    "bench.openloop",
                    "--raw",
                    "--port",
                    str(server.port),
                    "--calls",
                    str(share),
                    "--duration",
                    str(opts.ol_duration),
                    "--ramp",
                    str(opts.ol_ramp),
                    "--seed",
                    str(1 + p + 100 * i),
                    "--callid-base",
                    str(OPENLOOP_BASE + p * 20_000),
                ]
                running_gens.append(
                    subprocess.Popen(
                        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
                    )
                )
            parts = []
            for gen in running_gens:
                stdout, stderr = gen.communicate(timeout=opts.ol_duration + opts.ol_ramp + 120)
                if gen.returncode != 0:
                    raise RuntimeError(f"open loop {name} failed: {stderr[-2000:]}")
                parts.append(json.loads(stdout.strip().splitlines()[-1]))
            wall = time.monotonic() - t0
            result: dict[str, Any] = openloop.summarize(parts)
            result["server_cpu_percent"] = round(
                100 * (server.cpu_seconds() - cpu0) / max(wall, 1e-9), 1
            )
            if name in STATEFUL:
                result["outcomes"] = fetch_metrics(server)
            out["apps"][name] = result
            lat = result["latency_ms"]
            log(
                f"open loop {name}: {result['rate_per_s']} req/s p50 {lat['p50']} ms "
                f"p99 {lat['p99']} ms p99.9 {lat['p999']} ms max {lat['max']} ms "
                f"errors {result['errors']} (gen lag p99 {result['gen_lag_ms']['p99']} ms, "
                f"gen CPU {result['gen_cpu_percent']}%)"
            )
    return out


def phase_memory(opts: argparse.Namespace) -> dict[str, Any]:
    log(f"memory: {opts.mem_calls} calls through App.handle")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.memory", "--calls", str(opts.mem_calls)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory phase failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["command"] = f"python -m bench.memory --calls {opts.mem_calls}"
    log(f"memory: {result['bytes_per_call']} B per call ({result['kib_per_call']} KiB)")
    return result


def phase_straight(opts: argparse.Namespace) -> dict[str, Any]:
    args = ["--quick"] if opts.quick else []
    log("straight: step flow vs straight-line flow vs 20-command replay, through App")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.straight", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"straight phase failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout)
    result["command"] = "python -m bench.straight" + (" --quick" if opts.quick else "")
    log(f"straight: L/S {result['L/S']}, R20/S {result['R20/S']}")
    return result


def phase_inprocess(opts: argparse.Namespace, app_list: list[str]) -> dict[str, Any]:
    counts = dict.fromkeys(app_list, opts.ip_requests)
    if "FR" in counts:
        counts["FR"] = min(opts.ip_requests, opts.ip_requests_redis)
    rtc_apps: list[Any] = []

    async def go() -> dict[str, Any]:
        subjects = []
        for name in app_list:
            if name in STATEFUL:
                app = apps.make_rtcontrol(opts.redis_url if name == "FR" else None)
                if name == "FR":
                    await app.store.ping()
                rtc_apps.append(app)
                asgi = app.asgi(path=apps.ROUTE)
            else:
                asgi = apps.FACTORIES[name]()
            subjects.append(
                inprocess.Subject(
                    name,
                    asgi,
                    base=INPROCESS_BASE + len(subjects) * 10_000,
                    calls=opts.ip_pool,
                    stateful=name in STATEFUL,
                )
            )
        log(
            f"in-process: {', '.join(app_list)}; {opts.ip_rounds} rounds x "
            f"{opts.ip_requests} requests (FR {counts.get('FR', '-')})"
        )
        result = await inprocess.interleaved(
            subjects,
            requests=opts.ip_requests,
            rounds=opts.ip_rounds,
            warmup=min(2000, opts.ip_requests),
            counts=counts,
        )
        for app in rtc_apps:
            await app.shutdown()
        return result

    # Pin to the server core, like uvicorn in the other phases.
    old = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(servers.SERVER_CPU)})
    try:
        results = inprocess.run(go())
    finally:
        os.sched_setaffinity(0, old)
    for name, r in results.items():
        log(
            f"in-process {name}: {r['us_per_request']} CPU µs/request (rounds {r['rounds_us']}; "
            f"wall {r['wall_us_per_request']})"
        )
    return {
        "settings": {
            "rounds": opts.ip_rounds,
            "requests": opts.ip_requests,
            "requests_redis": counts.get("FR"),
            "pool_calls": opts.ip_pool,
            "loop": "uvloop",
            "pinned_cpu": servers.SERVER_CPU,
        },
        "apps": results,
    }


# ----------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="smoke run: seconds per phase")
    p.add_argument("--only", help=f"comma-separated phases out of {','.join(PHASES)}")
    for phase in PHASES:
        p.add_argument(f"--skip-{phase}", action="store_true", help=f"skip the {phase} phase")
    p.add_argument("--apps", help=f"comma-separated apps out of {','.join(ALL_APPS)}")
    p.add_argument("--no-redis", action="store_true", help="leave out FR (Redis store)")
    p.add_argument("--redis-url", default=apps.redis_url(), help="Redis for FR (%(default)s)")
    p.add_argument("--wrk-duration", type=float, default=10.0)
    p.add_argument("--wrk-warmup", type=float, default=3.0)
    p.add_argument("--wrk-rounds", type=int, default=3)
    p.add_argument(
        "--wrk-extra",
        type=int,
        default=1,
        help="extra interleaved rounds while an app's CV exceeds 5%% (default %(default)s)",
    )
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--pool", type=int, default=payload.POOL, help="calls cycled by wrk")
    p.add_argument("--ol-calls", type=int, default=1000)
    p.add_argument("--ol-duration", type=float, default=30.0)
    p.add_argument("--ol-ramp", type=float, default=5.0)
    p.add_argument("--mem-calls", type=int, default=10_000)
    p.add_argument("--ip-requests", type=int, default=20_000)
    p.add_argument("--ip-requests-redis", type=int, default=3_000)
    p.add_argument("--ip-rounds", type=int, default=5)
    p.add_argument("--ip-pool", type=int, default=2000)
    p.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    p.add_argument(
        "--markdown",
        choices=("auto", "yes", "no"),
        default="auto",
        help="rewrite BENCHMARKS.md (auto: only for a full, non-quick run)",
    )
    opts = p.parse_args(argv)
    if opts.quick:  # smaller defaults; options given explicitly still win
        quick = {
            "wrk_duration": 3.0,
            "wrk_warmup": 1.0,
            "wrk_rounds": 2,
            "wrk_extra": 0,
            "ol_calls": 300,
            "ol_duration": 6.0,
            "ol_ramp": 3.0,
            "mem_calls": 2000,
            "ip_requests": 3000,
            "ip_requests_redis": 500,
            "ip_rounds": 3,
            "ip_pool": 500,
        }
        for name, value in quick.items():
            if getattr(opts, name) == p.get_default(name):
                setattr(opts, name, value)
    return opts


def selected(opts: argparse.Namespace) -> tuple[list[str], list[str]]:
    phases = list(PHASES)
    if opts.only:
        wanted = [x.strip() for x in opts.only.split(",") if x.strip()]
        unknown = set(wanted) - set(PHASES)
        if unknown:
            raise SystemExit(f"unknown phase(s): {', '.join(sorted(unknown))}")
        phases = [x for x in PHASES if x in wanted]
    phases = [x for x in phases if not getattr(opts, f"skip_{x}")]
    app_list = list(ALL_APPS)
    if opts.apps:
        app_list = [x.strip().upper() for x in opts.apps.split(",") if x.strip()]
        unknown = set(app_list) - set(ALL_APPS)
        if unknown:
            raise SystemExit(f"unknown app(s): {', '.join(sorted(unknown))}")
    return phases, app_list


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    phases, app_list = selected(opts)
    skipped: dict[str, str] = {}
    if "FR" in app_list:
        why = "--no-redis" if opts.no_redis else redis_status(opts.redis_url)
        if why:
            skipped["FR"] = why
            app_list.remove("FR")
            log(f"FR (Redis store) skipped: {why}")
    if "wrk" in phases or "openloop" in phases:
        missing = servers.check_tools()
        if missing:
            raise SystemExit(
                f"missing tools: {', '.join(missing)} "
                "(make bench-tools installs them; Debian packages: wrk, util-linux)"
            )
    given = sys.argv[1:] if argv is None else argv
    command = "make bench" + (f" BENCH_ARGS={shlex.quote(' '.join(given))}" if given else "")
    started = dt.datetime.now(dt.UTC)
    results: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "command": command,
        "argv": sys.argv[1:] if argv is None else argv,
        "quick": opts.quick,
        "machine": machine_info(None if "FR" in skipped else opts.redis_url),
        "payload": {
            "bytes": len(payload.SAMPLE),
            "sample": payload.SAMPLE.decode(),
            "reply_bytes": len(apps.FIXED_REPLY),
        },
        "redis_url": None if "FR" in skipped else opts.redis_url,
        "skipped_apps": skipped,
        "phases": phases,
    }
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory(prefix="rtcontrol-bench-") as tmpdir:
            tmp = Path(tmpdir)
            if "wrk" in phases:
                wanted = [a for a in WRK_APPS if a in app_list]
                results["wrk"] = phase_wrk(opts, wanted, tmp)
            if "openloop" in phases:
                wanted = [a for a in OPENLOOP_APPS if a in app_list]
                results["openloop"] = phase_openloop(opts, wanted, tmp)
            if "memory" in phases:
                results["memory"] = phase_memory(opts)
            if "straight" in phases:
                results["straight"] = phase_straight(opts)
            if "inprocess" in phases:
                wanted = [a for a in INPROCESS_APPS if a in app_list]
                results["inprocess"] = phase_inprocess(opts, wanted)
    finally:
        if results.get("redis_url"):
            with contextlib.suppress(Exception):
                log(f"removed {cleanup_redis(opts.redis_url)} benchmark keys from Redis")
    results["elapsed_s"] = round(time.monotonic() - t0, 1)
    results["summary"] = report.summarize(results)
    opts.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%dT%H%M%SZ")
    text = json.dumps(results, indent=2, default=str)
    (opts.results_dir / f"{stamp}.json").write_text(text)
    (opts.results_dir / "latest.json").write_text(text)
    log(f"results: {opts.results_dir / (stamp + '.json')} ({results['elapsed_s']} s)")
    print(report.table(results["summary"]))
    full = set(phases) == set(PHASES) and not opts.quick and not opts.apps
    if opts.markdown == "yes" or (opts.markdown == "auto" and full):
        path = ROOT / "BENCHMARKS.md"
        path.write_text(report.markdown(results))
        log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
