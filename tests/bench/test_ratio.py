"""CI guard on rtcontrol's in-process cost per callback, relative to plain FastAPI.

Not a timed test: it never compares a duration with a constant. It drives two ASGI
apps in the same process, interleaved, on the same bodies (see ``bench/inprocess.py``):

* B3, a plain FastAPI endpoint with rtcontrol's own models (RTRequest in, RTResponse out);
* F, rtcontrol's callback route (Basic auth, routing, memory store, a trivial flow step),

and checks the median, over interleaved rounds, of F's CPU µs per request divided by
B3's in the neighbouring round. Both slow down together on a slow or busy runner, so
the ratio is stable where absolute times are not.

Measured on the shared 2-vCPU AMD EPYC development box (uvloop, 2026-11-28): F/B3 was
2.2-2.5 before the callback became bare ASGI, and 1.0 after it (B3 about 150 µs, F about
150 µs per request; `bench/run.py --only inprocess`); the target is 1.3 (issue 3).
The bound is about 2x the measured ratio, so noise never fails it but a 2x regression
of the framework's own cost does.
**When the hot path gets faster, lower BOUND to about 2x the new ratio.**
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import apps, inprocess  # noqa: E402

MEASURED_RATIO = 1.0
BOUND = 2.0  # about 2x MEASURED_RATIO
ROUNDS = 7
REQUESTS = 1500
POOL = 500


async def _measure() -> list[float]:
    app = apps.make_rtcontrol()
    b3 = inprocess.Subject("B3", apps.make_b3(), base=7_600_000, calls=POOL, stateful=False)
    f = inprocess.Subject("F", app.asgi(path=apps.ROUTE), base=7_610_000, calls=POOL, stateful=True)
    await inprocess.interleaved([b3, f], requests=REQUESTS, rounds=ROUNDS, warmup=REQUESTS)
    await app.shutdown()
    # Rounds are interleaved B3, F, B3, F...: compare each F round with its B3 neighbour.
    return [fs / bs for fs, bs in zip(f.samples, b3.samples, strict=True)]


def test_framework_cost_relative_to_plain_fastapi() -> None:
    ratios = inprocess.run(_measure())
    ratio = statistics.median(ratios)
    print(f"in-process F/B3 = {ratio:.2f} (rounds: {', '.join(f'{r:.2f}' for r in ratios)})")
    assert ratio < BOUND, (
        f"rtcontrol's in-process cost per callback is {ratio:.2f}x a plain FastAPI endpoint "
        f"(measured {MEASURED_RATIO} when this bound was set, bound {BOUND}): a hot-path "
        "regression. Profile with `python -m bench.profile`."
    )


def test_every_app_answers_the_same_command() -> None:
    """The ratio compares like with like: B3 and F answer the same read command."""

    async def replies() -> tuple[bytes, bytes]:
        app = apps.make_rtcontrol()
        asgi = app.asgi(path=apps.ROUTE)
        f = inprocess.Subject("F", asgi, base=7_620_000, calls=1, stateful=True)
        await f.setup()
        body = f.bodies(1)[0]
        _, f_reply = await inprocess.call(f.app, body)
        _, b3_reply = await inprocess.call(apps.make_b3(), body)
        await app.shutdown()
        return f_reply, b3_reply

    f_reply, b3_reply = inprocess.run(replies())
    for reply in (f_reply, b3_reply):
        assert reply.startswith(b'{"command":"read","command_id":')
        assert b'"variables":{"step":"ask_age"}' in reply
