"""Profile one app's in-process path with cProfile (F, rtcontrol with the memory store, by default).

    python -m bench.profile                # F, 5,000 requests, top 40 by own time
    python -m bench.profile --app B3 --sort cumulative
    python -m bench.profile --by-file      # own time summed per source file

cProfile adds a roughly constant cost per Python call, so it overstates code made of
many small calls; read it for where the time goes, and the benchmark for how much.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apps, inprocess  # noqa: E402


def by_file(stats: pstats.Stats, top: int) -> None:
    own: dict[str, float] = defaultdict(float)
    raw = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in raw.values())
    for (filename, _, _), (_, _, tottime, _, _) in raw.items():
        name = filename
        for marker in ("site-packages/", "/rtcontrol/", "/lib/python3"):
            if marker in filename:
                name = marker.strip("/") + ":" + filename.split(marker, 1)[1]
                break
        own[name] += tottime
    print(f"{'own time':>9}  {'share':>6}  file")
    for name, t in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{t:9.3f}  {100 * t / total:5.1f}%  {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--app", default="F", choices=sorted(apps.FACTORIES))
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--sort", default="tottime")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--by-file", action="store_true")
    parser.add_argument("--output", type=Path, help="also dump the raw stats here")
    args = parser.parse_args()

    async def go() -> cProfile.Profile:
        stateful = args.app in ("F", "FR")
        rtc = apps.make_rtcontrol(apps.redis_url() if args.app == "FR" else None)
        asgi = rtc.asgi(path=apps.ROUTE) if stateful else apps.FACTORIES[args.app]()
        subject = inprocess.Subject(args.app, asgi, base=7_700_000, calls=1000, stateful=stateful)
        await subject.setup()
        await inprocess.run_batch(asgi, subject.bodies(1000))  # warm caches
        bodies = subject.bodies(args.requests)
        prof = cProfile.Profile()
        prof.enable()
        await inprocess.run_batch(asgi, bodies)
        prof.disable()
        await rtc.shutdown()
        return prof

    prof = inprocess.run(go())
    if args.app == "FR":
        from bench.run import cleanup_redis

        cleanup_redis(apps.redis_url())
    stats = pstats.Stats(prof)
    if args.output:
        stats.dump_stats(args.output)
    if args.by_file:
        by_file(stats, args.top)
    else:
        stats.sort_stats(args.sort).print_stats(args.top)


if __name__ == "__main__":
    main()
