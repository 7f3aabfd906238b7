"""The RT.Request bodies every benchmark sends, and the wrk Lua scripts that send them.

One template, byte for byte the same in Python and in Lua: a mid-call callback that
reports a ``read`` which collected ``"42"`` (inbound call, ``variables`` echoed). Only
``callid`` and the step number inside ``command_id`` change, so the size stays at
about 300 bytes and every request is a fresh step of a live call: rtcontrol never
answers one from its duplicate cache.

Calls are a pool of ``calls`` call ids: request ``n`` goes to call ``n % calls`` with
step ``seq0 + n // calls``. Before a run against rtcontrol, each call of the pool gets
its first callback (``bench.openloop.prime``), so every later request finds its call in the store.
"""

from __future__ import annotations

import base64
from pathlib import Path

from bench.apps import APP_HASH, FLOW, LOGIN, PASSWORD, ROUTE

#: First call id of the benchmark's calls (7 digits, like the documentation's 421889).
CALLID_BASE = 7_000_000
#: Calls in the pool the socket benchmarks cycle through.
POOL = 4096

AUTHORIZATION = "Basic " + base64.b64encode(f"{LOGIN}:{PASSWORD}".encode()).decode()
HEADERS = {
    "Content-Type": "application/json",
    "Authorization": AUTHORIZATION,
}

# %d: callid, then the step number. Field order as in the documentation.
MID_TEMPLATE = (
    '{"app":"' + APP_HASH + '","callid":%d,"request_hash":null,"cli_name":"",'
    '"cli_number":"","date_started":"2026-11-28 09:15:02","number":"+33189456723",'
    '"command":"read","command_id":"%d:' + FLOW + ':choice","command_result":"42",'
    '"command_error":"","call_status":"UP","cdr_field":"","variables":{"step":"ask_age"}}'
)
# %d: callid. An inbound call's first callback.
FIRST_TEMPLATE = (
    '{"app":"' + APP_HASH + '","callid":%d,"request_hash":null,"cli_name":"",'
    '"cli_number":"","date_started":"2026-11-28 09:15:02","number":"+33189456723",'
    '"command":"","command_id":0,"command_result":"","command_error":"",'
    '"call_status":"INCOMING_CALL","cdr_field":"","variables":{}}'
)
# %d: callid, then the step number. The platform reports the end of the call.
HANGUP_TEMPLATE = (
    '{"app":"' + APP_HASH + '","callid":%d,"request_hash":null,"cli_name":"",'
    '"cli_number":"","date_started":"2026-11-28 09:15:02","number":"+33189456723",'
    '"command":"read","command_id":"%d:' + FLOW + ':choice","command_result":"",'
    '"command_error":"","call_status":"HANGUP","cdr_field":"","variables":{"step":"ask_age"}}'
)


def mid(callid: int, seq: int) -> bytes:
    return (MID_TEMPLATE % (callid, seq)).encode()


def first(callid: int) -> bytes:
    return (FIRST_TEMPLATE % callid).encode()


def hangup(callid: int, seq: int) -> bytes:
    return (HANGUP_TEMPLATE % (callid, seq)).encode()


#: The body as measured in the report (a typical step of a typical call).
SAMPLE = mid(CALLID_BASE + 1234, 7)


def mid_bodies(count: int, *, base: int, calls: int, seq0: int) -> list[bytes]:
    """``count`` mid-call bodies over a pool of ``calls`` calls, steps from ``seq0``."""
    return [mid(base + n % calls, seq0 + n // calls) for n in range(count)]


# ----------------------------------------------------------------------- wrk


def _lua_string(text: str) -> str:
    return "[==[" + text + "]==]"


_LUA_COMMON = """
wrk.method = "POST"
wrk.path = "{route}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "{auth}"
local mid_t = {mid}
local base, calls, seq0 = 0, 1, 1
local n = 0
function init(args)
  base = tonumber(args[1]); calls = tonumber(args[2]); seq0 = tonumber(args[3])
end
"""

_LUA_POST = """
function request()
  local i = n % calls
  local body = string.format(mid_t, base + i, seq0 + math.floor(n / calls))
  n = n + 1
  return wrk.format(nil, nil, nil, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {{"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}},' ..
    '"latency_us":{{"mean":%.1f,"stdev":%.1f,"max":%d,"p50":%d,"p90":%d,"p99":%d,"p999":%d}}}}\\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.stdev, latency.max,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
"""


def write_lua(directory: Path) -> Path:
    """Write ``post.lua`` into ``directory``; its arguments: base calls seq0."""
    common = _LUA_COMMON.format(
        route=ROUTE,
        auth=AUTHORIZATION,
        mid=_lua_string(MID_TEMPLATE),
    )
    post = directory / "post.lua"
    post.write_text(common + _LUA_POST.format())
    return post
