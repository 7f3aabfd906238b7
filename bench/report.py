"""Targets, the ratio summary, and BENCHMARKS.md, from one results JSON."""

from __future__ import annotations

import math
from typing import Any

KIB = 1024.0

# (key, metric, target text, comparison, bound, source)
TARGETS: list[tuple[str, str, str, str, float, str]] = [
    ("wrk_f_b3", "Throughput F ÷ B3 (plain FastAPI)", "≥ 1.0", "ge", 1.0, "issue 6"),
    ("wrk_f_b0", "Throughput F ÷ B0 (bare ASGI limit)", "≥ 0.25", "ge", 0.25, "issue 6"),
    ("wrk_fr_f", "Throughput F-R ÷ F (Redis ÷ memory store)", "≥ 0.40", "ge", 0.40, "issue 6"),
    ("ol_f_p99", "Open loop F, 1,000 calls: p99", "≤ 50 ms", "le", 50.0, "issue 6"),
    ("ol_f_p999", "Open loop F, 1,000 calls: p99.9", "≤ 250 ms", "le", 250.0, "issue 6"),
    ("ol_f_errors", "Open loop F, 1,000 calls: errors", "0", "le", 0.0, "issue 6"),
    ("ol_fr_p99", "Open loop F-R, 1,000 calls: p99", "≤ 50 ms", "le", 50.0, "doc §4 E6"),
    ("ol_fr_p999", "Open loop F-R, 1,000 calls: p99.9", "≤ 250 ms", "le", 250.0, "doc §4 E6"),
    ("ol_fr_errors", "Open loop F-R, 1,000 calls: errors", "0", "le", 0.0, "doc §4 E6"),
    ("mem_kib", "Memory store, KiB per active call (10k calls)", "≤ 2 KiB", "le", 2.0, "issue 6"),
    ("ip_f_b3", "In-process µs per callback F ÷ B3", "≤ 1.3", "le", 1.3, "issue 3"),
    (
        "sl_l_s",
        "Straight-line callback, coroutine held ÷ step flow",
        "≤ 1.2",
        "le",
        1.2,
        "issue 10",
    ),
    ("sl_r20_s", "Straight-line replay of 20 commands ÷ step flow", "≤ 5", "le", 5.0, "issue 10"),
    ("wrk_f_abs", "Throughput F, absolute (1 core)", "≥ 3,000 req/s", "ge", 3000.0, "doc §2.2"),
    ("wrk_fr_abs", "Throughput F-R, absolute (1 core)", "≥ 1,500 req/s", "ge", 1500.0, "doc §2.2"),
]

UNITS = {
    "ol_f_p99": " ms",
    "ol_f_p999": " ms",
    "ol_fr_p99": " ms",
    "ol_fr_p999": " ms",
    "mem_kib": " KiB",
    "wrk_f_abs": " req/s",
    "wrk_fr_abs": " req/s",
}

NAMES = {
    "B0": "B0 bare ASGI, fixed reply",
    "B1": "B1 bare ASGI + json.loads/dumps",
    "B2": "B2 Starlette, request.json() + JSONResponse",
    "B3": "B3 plain FastAPI, RTRequest in / RTResponse out",
    "F": "F rtcontrol, memory store",
    "FR": "F-R rtcontrol, Redis store",
}


def _get(d: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict) or key not in d:
            return None
        d = d[key]
    return d


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def values(results: dict[str, Any]) -> dict[str, float | None]:
    rps = {k: _get(results, "wrk", "apps", k, "rps_median") for k in ("B0", "B2", "B3", "F", "FR")}
    cpu = {
        k: _get(results, "wrk", "apps", k, "server_cpu_us_per_request")
        for k in ("B0", "B2", "B3", "F", "FR")
    }
    ol = _get(results, "openloop", "apps") or {}
    ip = {k: _get(results, "inprocess", "apps", k, "us_per_request") for k in NAMES}
    return {
        "wrk_f_b3": _ratio(rps["F"], rps["B3"]),
        "wrk_f_b0": _ratio(rps["F"], rps["B0"]),
        "wrk_fr_f": _ratio(rps["FR"], rps["F"]),
        "ol_f_p99": _get(ol, "F", "latency_ms", "p99"),
        "ol_f_p999": _get(ol, "F", "latency_ms", "p999"),
        "ol_f_errors": _get(ol, "F", "errors"),
        "ol_fr_p99": _get(ol, "FR", "latency_ms", "p99"),
        "ol_fr_p999": _get(ol, "FR", "latency_ms", "p999"),
        "ol_fr_errors": _get(ol, "FR", "errors"),
        "mem_kib": _get(results, "memory", "kib_per_call"),
        "ip_f_b3": _ratio(ip["F"], ip["B3"]),
        "sl_l_s": _get(results, "straight", "L/S"),
        "sl_r20_s": _get(results, "straight", "R20/S"),
        "wrk_f_abs": rps["F"],
        "wrk_fr_abs": rps["FR"],
        # informational
        "wrk_cpu_f_b3": _ratio(cpu["B3"], cpu["F"]),
        "wrk_cpu_f_b0": _ratio(cpu["B0"], cpu["F"]),
        "wrk_cpu_fr_f": _ratio(cpu["F"], cpu["FR"]),
        "wrk_b2_b0": _ratio(rps["B2"], rps["B0"]),
        "wrk_b3_b0": _ratio(rps["B3"], rps["B0"]),
        "wrk_fr_b3": _ratio(rps["FR"], rps["B3"]),
        "ip_fr_b3": _ratio(ip["FR"], ip["B3"]),
    }


def summarize(results: dict[str, Any]) -> list[dict[str, Any]]:
    got = values(results)
    calls = _get(results, "openloop", "settings", "calls")
    mem_calls = _get(results, "memory", "calls")
    rows = []
    for key, metric, target, op, bound, source in TARGETS:
        if calls is not None:
            metric = metric.replace("1,000 calls", f"{calls:,} calls")
        if mem_calls is not None:
            metric = metric.replace("(10k calls)", f"({mem_calls:,} calls)")
        value = got.get(key)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            status = "not measured"
        else:
            ok = value >= bound if op == "ge" else value <= bound
            status = "met" if ok else "MISSED"
        rows.append(
            {
                "key": key,
                "metric": metric,
                "value": value,
                "target": target,
                "status": status,
                "source": source,
            }
        )
    return rows


def _fmt(key: str, value: Any) -> str:
    if value is None:
        return "—"
    unit = UNITS.get(key, "")
    if key.endswith("_errors"):
        return str(int(value))
    if key.endswith("_abs"):
        return f"{value:,.0f}{unit}"
    if key == "mem_kib":
        return f"{value:.2f}{unit} ({value * KIB:,.0f} B)"
    if unit == " ms":
        return f"{value:.1f}{unit}"
    return f"{value:.2f}"


def table(rows: list[dict[str, Any]]) -> str:
    width = max(len(r["metric"]) for r in rows)
    lines = [f"{'metric':<{width}}  {'value':>22}  {'target':>14}  status"]
    for r in rows:
        value = _fmt(r["key"], r["value"])
        lines.append(f"{r['metric']:<{width}}  {value:>22}  {r['target']:>14}  {r['status']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------- markdown


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _num(x: Any, fmt: str = ",.0f") -> str:
    return "—" if x is None else format(x, fmt)


def _wrk_section(results: dict[str, Any]) -> str:
    wrk = results.get("wrk")
    if not wrk:
        return "_Not run._"
    apps = wrk["apps"]
    b0 = _get(apps, "B0", "rps_median")
    b3 = _get(apps, "B3", "rps_median")
    rows = []
    for name, a in apps.items():
        rows.append(
            [
                NAMES[name],
                _num(a["rps_median"]),
                " / ".join(_num(x) for x in a["rps_runs"]),
                f"{a['cv'] * 100:.1f} %" + (" (noisy)" if a["noisy"] else ""),
                _num(_ratio(a["rps_median"], b0), ".2f"),
                _num(_ratio(a["rps_median"], b3), ".2f"),
                f"{a['p50_ms']:.2f}",
                f"{a['p99_ms']:.2f}",
                _num(a["server_cpu_us_per_request"], ".0f"),
                str(a["errors"]),
            ]
        )
    s = wrk["settings"]
    text = _md_table(
        [
            "app",
            "req/s (median)",
            "runs",
            "CV",
            "÷ B0",
            "÷ B3",
            "p50 ms",
            "p99 ms",
            "server CPU µs/req",
            "errors",
        ],
        rows,
    )
    text += (
        f"\n\n{s['rounds']} interleaved rounds (plus up to {s.get('extra_rounds_max', 0)} more "
        f"while an app's CV exceeds 5 %) of {s['duration_s']:g} s per app after a "
        f"{s['warmup_s']:g} s warm-up, {s['connections']} connections, keep-alive. "
        f"p50/p99 are wrk's, from the median run. Load: `{s['command']}`. "
        f"Server: `{s['server_command']}`. "
        f"F and F-R cycle through {s['pool_calls']} live calls (each primed with its first "
        "callback), so every request is a fresh step of a known call."
    )
    outcomes = wrk.get("outcomes")
    if outcomes:
        text += " Outcomes counted by rtcontrol during the phase: " + "; ".join(
            f"{k}: " + ", ".join(f"{o} {int(n):,}" for o, n in v.items())
            for k, v in outcomes.items()
        )
        text += "."
    return text


def _openloop_section(results: dict[str, Any]) -> str:
    ol = results.get("openloop")
    if not ol:
        return "_Not run._"
    rows = []
    for name, a in ol["apps"].items():
        lat = a["latency_ms"]
        rows.append(
            [
                NAMES[name],
                f"{a['rate_per_s']:.0f}",
                f"{lat['p50']:.2f}",
                f"{lat['p99']:.2f}",
                f"{lat['p999']:.2f}",
                f"{lat['max']:.2f}" if lat["max"] is not None else "—",
                str(a["errors"]),
                str(a["over_1s"]),
                f"{a['server_cpu_percent']:.0f} %",
                f"{a['gen_lag_ms']['p99']:.2f}",
                f"{a['gen_cpu_percent']:.0f} %",
                str(a.get("generator_processes", 1)),
            ]
        )
    s = ol["settings"]
    return (
        _md_table(
            [
                "app",
                "req/s",
                "p50 ms",
                "p99 ms",
                "p99.9 ms",
                "max ms",
                "errors",
                "> 1 s",
                "server CPU",
                "generator lag p99 ms",
                "generator CPU",
                "generator processes",
            ],
            rows,
        )
        + f"\n\n{s['calls']:,} simulated calls, each posting one callback every {s['interval_s']}"
        f" s (first callback, 4-12 `read` results echoing the reply's `command_id` and "
        f"`variables`, then `HANGUP`, then a new call); {s['ramp_s']:g} s ramp not counted, "
        f"then {s['duration_s']:g} s measured. Latency is timed from each request's scheduled "
        f"send time (no coordinated omission). Generator: `{s['command']}` "
        '(raw asyncio HTTP/1.1, keep-alive). "Generator lag" is how late the generator woke '
        "for its own schedule: small values mean the generator was not the bottleneck."
    )


def _memory_section(results: dict[str, Any]) -> str:
    m = results.get("memory")
    if not m:
        return "_Not run._"
    return (
        _md_table(
            ["measure", "bytes per call"],
            [
                ["tracemalloc (headline)", f"{m['bytes_per_call']:,.0f}"],
                [
                    "deep `sys.getsizeof` of the store's dict",
                    f"{m['deep_size_bytes_per_call']:,.0f}",
                ],
                ["RSS difference (untraced run; coarse)", f"{m['rss_bytes_per_call']:,.0f}"],
                ["the record's JSON text alone", f"{m['record_json_bytes']:,}"],
            ],
        )
        + f"\n\n{m['calls']:,} calls, each given its first callback and one `read` result "
        "through `App.handle` (no HTTP); the first figure is the memory tracemalloc sees still "
        "allocated afterwards minus before, after `gc.collect()`, divided by the number of calls "
        f"(the store's dict, keys, expiry tuples and record text). Locks left: {m['locks_left']}. "
        f"Command: `{m['command']}`."
    )


def _straight_section(results: dict[str, Any]) -> str:
    st = results.get("straight")
    if not st:
        return "_Not run._"
    names = {
        "S": "S step flow (`read(...).then(step)`)",
        "L": "L straight-line, coroutine held (`await call.read(...)`)",
        "R20": "R20 straight-line, replayed from a 20-command journal",
    }
    base = st["S"]["us"]
    rows = [
        [
            names[k],
            f"{st[k]['us']:.1f}",
            " / ".join(f"{x:.0f}" for x in st[k]["rounds"]),
            f"{st[k]['us'] / base:.2f}",
        ]
        for k in ("S", "L", "R20")
    ]
    mem = st["memory_bytes_per_call"]
    prm = st["params"]
    return (
        _md_table(["kind", "µs per callback (median)", "rounds", "÷ S"], rows)
        + f"\n\nMemory per live call (tracemalloc, {prm['mem_calls']:,} calls after two "
        f"callbacks each): step flow {mem['step']:,} B; straight-line {mem['straight']:,} B "
        "(its record with the journal, plus the suspended coroutine this worker keeps; "
        "`RTCONTROL_FLOW_CACHE` bounds how many). "
        f"{prm['calls']} live calls per kind, {prm['rounds']} interleaved rounds, each "
        "`App.handle_callback` timed alone (no HTTP, memory store). "
        f"Command: `{st['command']}`."
    )


def _inprocess_section(results: dict[str, Any]) -> str:
    ip = results.get("inprocess")
    if not ip:
        return "_Not run._"
    apps = ip["apps"]
    b0 = _get(apps, "B0", "us_per_request")
    b3 = _get(apps, "B3", "us_per_request")
    rows = [
        [
            NAMES[name],
            f"{a['us_per_request']:.1f}",
            " / ".join(f"{x:.1f}" for x in a["rounds_us"]),
            f"{a['wall_us_per_request']:.1f}",
            f"{a['requests_per_round']:,}",
            _num(_ratio(a["us_per_request"], b0), ".1f"),
            _num(_ratio(a["us_per_request"], b3), ".2f"),
        ]
        for name, a in apps.items()
    ]
    s = ip["settings"]
    paired = ""
    if "F" in apps and "B3" in apps:
        pairs = zip(apps["F"]["rounds_us"], apps["B3"]["rounds_us"], strict=False)
        paired = " F ÷ B3 round by round: " + ", ".join(f"{f / b:.2f}" for f, b in pairs) + "."
    header = [
        "app",
        "CPU µs/request (median)",
        "rounds",
        "wall µs/request",
        "requests/round",
        "ratio to B0",
        "ratio to B3",
    ]
    return (
        _md_table(header, rows)
        + f"\n\nEach ASGI app driven directly with a synthetic scope/receive/send (no sockets, "
        f"no HTTP parsing), {s['rounds']} interleaved rounds, median; event loop {s['loop']}, "
        f"pinned to CPU{s['pinned_cpu']}. F and F-R cycle through {s['pool_calls']:,} live "
        "calls. The headline is the process's own CPU time per request, which leaves out "
        "time other processes held the core (wall time, also shown, counts it); with no I/O "
        "the two agree on a quiet machine. F-R's CPU figure leaves out the wait for Redis; "
        f"its wall figure includes two round trips, one request at a time.{paired}"
    )


def markdown(results: dict[str, Any]) -> str:
    rows = results["summary"]
    m = results["machine"]
    libs = ", ".join(f"{k} {v}" for k, v in m["libraries"].items() if v)
    summary = _md_table(
        ["metric", "value", "target", "status", "source"],
        [
            [r["metric"], _fmt(r["key"], r["value"]), r["target"], r["status"], r["source"]]
            for r in rows
        ],
    )
    got = values(results)
    info = "; ".join(
        f"{label} {_num(got[key], '.2f')}"
        for key, label in (
            ("wrk_cpu_f_b3", "F ÷ B3 per server CPU-second"),
            ("wrk_cpu_f_b0", "F ÷ B0 per server CPU-second"),
            ("wrk_cpu_fr_f", "F-R ÷ F per server CPU-second"),
            ("wrk_b2_b0", "B2 ÷ B0"),
            ("wrk_b3_b0", "B3 ÷ B0"),
            ("wrk_fr_b3", "F-R ÷ B3"),
            ("ip_fr_b3", "in-process F-R ÷ B3"),
        )
    )
    skipped = results.get("skipped_apps") or {}
    skipped_text = (
        "\n\nNot measured: " + "; ".join(f"{NAMES[k]} ({v})" for k, v in skipped.items()) + "."
        if skipped
        else ""
    )
    return f"""# Benchmarks

Generated by `bench/run.py` from one run; do not edit by hand (`make bench` rewrites it).
The JSON artefact is `bench/results/latest.json` (git-ignored). Compare **ratios**, not
absolute numbers: absolute figures depend on the machine and on its noisy neighbours.

**Command:** `{results["command"]}` (started {results["started"]}, {results["elapsed_s"]:g} s).

**Machine:** {m["cpu_model"]}, {m["cpus"]} CPUs, Linux {m["kernel"]}, {m["implementation"]} \
{m["python"]}; {libs}; {m["wrk"]}; Redis server {m["redis_server"] or "—"}; \
rtcontrol at `{m["git_commit"] or "?"}`. Load average at start: {" ".join(m["loadavg_at_start"])}.

**Payload:** every app gets the same {results["payload"]["bytes"]}-byte RT.Request (a \
mid-call `read` result with digits `"42"`, a fresh `callid`/`command_id` per request, \
`variables` echoed) on `POST /cb` and answers the same `read` command \
({results["payload"]["reply_bytes"]} bytes). F and F-R check HTTP Basic credentials, route \
by app hash, lock and load the call, run a trivial flow step (store the digits in \
`call.state`, return a `read`), save the call and answer.

## Targets

{summary}

Informational ratios: {info}.{skipped_text}

## Throughput ceiling (wrk; server on CPU0, wrk on CPU1)

{_wrk_section(results)}

## Open-loop latency at a realistic rate (1 worker on CPU0, generator on CPU1)

{_openloop_section(results)}

## Memory per active call (memory store)

{_memory_section(results)}

## In-process app-layer cost (no sockets)

{_inprocess_section(results)}

## Straight-line flows against step flows (issue 10)

{_straight_section(results)}

## Method notes

* Server: uvicorn, 1 worker, httptools + uvloop, `--log-level warning --no-access-log`,
  pinned with `taskset -c 0`; load generators pinned with `taskset -c 1`; traffic only to
  127.0.0.1. The Redis server is not pinned (it shares the machine with the load
  generator), as in `performance-and-reliability.md` §1.4.
* All apps are built by factories in `bench/apps.py`; the reply command is built once
  at import in every app (building commands is user code, not framework cost).
* A "noisy" flag marks an app whose throughput runs vary by more than 5 % (CV); rerun
  before drawing conclusions from it.
* Profile the in-process path with `python -m bench.profile` (cProfile, F by default).
"""
