"""wrk (C, epoll) with a Lua script of ours, for load no Python client on two shared cores can offer.

Every request carries fresh client-chosen event ids: per wrk thread a fixed UUID prefix and a 48-bit counter,
so the ids of a batch are consecutive integers. For a 202 the script writes the body's first event id and its
`accepted` count to a file per thread; `acked_ids` expands them back into every acknowledged id for
`benchmarks.load.ledger_check`. It also counts answers per status, 429/503 without `Retry-After`, and requests
written (`sent`), and can pace itself (`rate`, requests/s, from a monotonic clock through LuaJIT's ffi), so
an offered rate is both chosen and measured: wrk's own figures say whether it was reached.

A `schedule` instead paces phases of different rates from one start time (`origin`, `time.monotonic()`: the
script reads the same CLOCK_MONOTONIC), and `log` records every request written (time, first event id) and
every answer (time, status, Retry-After) in that clock, so a caller can count offered and answered load per
phase and rebuild (`batch_body`) and resend the bodies no 202 acknowledged. A Lua `response()` is not told
which request it answers, so a refused body cannot be resent from the script itself (benchmarks/backpressure.py
resends them from Python). wrk calls `request()` once at start to verify the script and never sends that one:
its logged send comes before `origin`, and `sent` counts it too.

The ceiling of this generator is the same script against `GET /healthz` (same body bytes) in the same run.
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

EVENT = (
    '{"event":"page_view","distinct_id":"u-%d","properties":{"path":"/pricing","plan":"pro"},"event_id":"%s"}'
)
# The same event in the SDK protocols PulseOps also speaks (docs/sdks.md): body "posthog" posts
# {"batch": [...]} to PostHog's /batch/ with a Bearer key, "segment" Segment's /v1/batch with Basic auth.
SDK_EVENTS = {
    "posthog": '{"event":"page_view","distinct_id":"u-%d","properties":{"path":"/pricing","plan":"pro"},"uuid":"%s"}',
    "segment": '{"type":"track","event":"page_view","userId":"u-%d","properties":{"path":"/pricing","plan":"pro"},'
    '"messageId":"%s"}',
}
BATCH_BODIES = ("batch", *SDK_EVENTS)

LUA = r"""
local ffi = require("ffi")
pcall(ffi.cdef, "typedef struct { long tv_sec; long tv_nsec; } pulse_ts; int clock_gettime(int, pulse_ts *);")
local ts = ffi.new("pulse_ts")
local function now_ms()
  ffi.C.clock_gettime(1, ts)
  return tonumber(ts.tv_sec) * 1000 + tonumber(ts.tv_nsec) / 1e6
end

local CFG = {
  method = [==[%(method)s]==], path = [==[%(path)s]==], body = [==[%(body)s]==], events = %(events)d,
  rate = %(rate)f, keys = {%(keys)s}, key_header = [==[%(key_header)s]==], run = [==[%(run)s]==], out = [==[%(out)s]==],
  event_fmt = [==[%(event)s]==], users = 5000,
  origin = %(origin)f, phases = {%(phases)s}, log = [==[%(log)s]==],
}
local threads = {}

function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end

function init(args)
  statuses, sent, retry_missing, unparsed, n = {}, 0, 0, 0, 0
  prefix = string.format("%%s-4%%03x-8%%03x-", CFG.run, tid %% 4096, math.floor(tid / 4096) %% 4096)
  hdrs = {}
  for i, k in ipairs(CFG.keys) do hdrs[i] = {["Content-Type"] = "application/json", [CFG.key_header] = k} end
  if #hdrs == 0 then hdrs[1] = {["Content-Type"] = "application/json"} end
  if CFG.out ~= "" then ack = io.open(CFG.out .. tid, "w") end
  interval = CFG.rate > 0 and 1000 / CFG.rate or 0
  if CFG.log ~= "" then log = io.open(CFG.log .. tid, "w") end
  phase = 1
end

local function event()
  local id = prefix .. string.format("%%012x", n)
  n = n + 1
  return string.format(CFG.event_fmt, n %% CFG.users, id)
end

function request()
  sent = sent + 1
  if log then log:write(string.format("S %%.3f %%s%%012x\n", now_ms(), prefix, n)) end
  local body = nil
  if CFG.body == "event" then
    body = event()
  elseif CFG.body == "batch" or CFG.body == "posthog" or CFG.body == "segment" then
    local parts = {}
    for i = 1, CFG.events do parts[i] = event() end
    body = '{"batch":[' .. table.concat(parts, ",") .. ']}'
  end
  return wrk.format(CFG.method, CFG.path, hdrs[(sent %% #hdrs) + 1], body)
end

-- schedule: {ms between requests of this thread, phase end in ms of CLOCK_MONOTONIC}, from CFG.origin
local function scheduled()
  local now = now_ms()
  if next_at == nil then next_at = CFG.origin end
  if phase > #CFG.phases then return 3600000 end  -- schedule done: idle until wrk stops
  local slot = next_at
  next_at = next_at + CFG.phases[phase][1]
  if next_at >= CFG.phases[phase][2] then  -- the next phase starts at its boundary, not an interval later
    next_at = CFG.phases[phase][2]
    phase = phase + 1
  end
  if slot > now then return math.ceil(slot - now) end  -- wrk truncates to whole ms: never send early
  return 0
end

function delay()
  if #CFG.phases > 0 then return scheduled() end
  if interval == 0 then return 0 end
  local now = now_ms()
  if next_at == nil then next_at = now end
  local slot = next_at
  next_at = next_at + interval
  if slot > now then return slot - now end
  return 0
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if log then
    local ra = headers["retry-after"] or headers["Retry-After"] or "-"
    log:write(string.format("A %%.3f %%d %%s\n", now_ms(), status, ra))
  end
  if status == 429 or status == 503 then
    if headers["retry-after"] == nil and headers["Retry-After"] == nil then retry_missing = retry_missing + 1 end
  elseif (status == 202 or status == 200) and ack then  -- 200: the SDK protocols' success
    local acc, first = string.match(body, '"accepted":(%%d+),"event_ids":%%["([%%x%%-]+)"')
    if first then ack:write(first, " ", acc, "\n") else unparsed = unparsed + 1 end
  end
end

function done(summary, latency, requests)
  local st, total_sent, missing, bad, parts = {}, 0, 0, 0, {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do st[k] = (st[k] or 0) + v end
    total_sent = total_sent + t:get("sent")
    missing = missing + t:get("retry_missing")
    bad = bad + t:get("unparsed")
  end
  for k, v in pairs(st) do parts[#parts + 1] = string.format('"%%d":%%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%%d,"duration_us":%%d,"sent":%%d,"connect_errors":%%d,"read_errors":%%d,' ..
    '"write_errors":%%d,"timeouts":%%d,"status_errors":%%d,"retry_after_missing":%%d,"unparsed_202":%%d,' ..
    '"p50_ms":%%.3f,"p95_ms":%%.3f,"p99_ms":%%.3f,"statuses":{%%s}}\n',
    summary.requests, summary.duration, total_sent, e.connect, e.read, e.write, e.timeout, e.status, missing,
    bad, latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000,
    table.concat(parts, ",")))
end
"""


def available() -> bool:
    return shutil.which("wrk") is not None


def run(
    url: str,
    path: str,
    seconds: float,
    *,
    method: str = "POST",
    body: str = "batch",
    events: int = 100,
    keys: Sequence[str] = (),
    rate: float = 0.0,
    connections: int = 64,
    threads: int = 2,
    collect_acks: bool = True,
    raw: list[str] | None = None,
    schedule: Sequence[tuple[float, float]] = (),
    origin: float | None = None,
    log: bool = False,
) -> dict:
    """One wrk run. `body`: "batch" (`events` per request), "event" (one event object), "none", or "posthog" /
    "segment" (a batch of `events` in that SDK protocol, the key sent as that protocol's auth header).
    `rate`: requests/s in all (0 = as fast as the connections allow). `schedule`: (requests/s in all, seconds)
    phases from `origin` (`time.monotonic()`, default now) instead of `rate`; run `seconds` past its end to
    collect the answers in flight. `log`: also return `sends` [(time, first event id as int)] and `answers`
    [(time, status, Retry-After or None)], times in `time.monotonic()`'s clock.

    Returns wrk's figures plus rps (answered/s), sent_rps (written/s), events_per_request, statuses (int
    keys) and `acked`: (first id as int, accepted) per 202."""
    with tempfile.TemporaryDirectory(prefix="pulseops-wrk-") as tmp:
        out = str(Path(tmp) / "acked-") if collect_acks else ""
        start_ms, phases = _schedule_lua(schedule, origin, threads)
        run_prefix = secrets.token_hex(6)
        key_header, key_values = _auth(body, keys)
        script = LUA % {
            "method": method,
            "path": path,
            "body": body,
            "events": events,
            "rate": rate / threads,
            "keys": ", ".join(json.dumps(k) for k in key_values),
            "key_header": key_header,
            "run": f"{run_prefix[:8]}-{run_prefix[8:]}",
            "out": out,
            "event": SDK_EVENTS.get(body, EVENT),
            "origin": start_ms,
            "phases": phases,
            "log": str(Path(tmp) / "log-") if log else "",
        }
        lua = Path(tmp) / "load.lua"
        lua.write_text(script)
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
               "-s", str(lua), f"{url}{path}"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if raw is not None:
            raw.append(f"$ {' '.join(cmd[:-3])} <script: {method} {path} {body}> {cmd[-1]}\n{proc.stdout}")
        m = re.search(r"WRKJSON (\{.*\})", proc.stdout)
        if proc.returncode != 0 or m is None:
            raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
        result = json.loads(m.group(1))
        acked = _read_acks(Path(tmp))
        if log:
            result.update(_read_log(Path(tmp)))
    took = result["duration_us"] / 1e6
    result["statuses"] = {int(k): v for k, v in result["statuses"].items()}
    result.update(
        method=method,
        path=path,
        body=body,
        events_per_request=events if body in BATCH_BODIES else (1 if body == "event" else 0),
        rate=rate,
        connections=connections,
        seconds=took,
        rps=result["requests"] / took,
        sent_rps=result["sent"] / took,
        acked=acked,
    )
    return result


def _auth(body: str, keys: Sequence[str]) -> tuple[str, list[str]]:
    """The key header and its values for this body's protocol."""
    if body == "posthog":
        return "Authorization", [f"Bearer {k}" for k in keys]
    if body == "segment":
        return "Authorization", ["Basic " + base64.b64encode(f"{k}:".encode()).decode() for k in keys]
    return "X-API-Key", list(keys)


def _schedule_lua(
    schedule: Sequence[tuple[float, float]], origin: float | None, threads: int
) -> tuple[float, str]:
    """The schedule's start (ms, CLOCK_MONOTONIC) and its phases as a Lua table body: {ms between one
    thread's requests, phase end in ms}."""
    start_ms = (time.monotonic() if origin is None else origin) * 1000
    phases, end_ms = [], start_ms
    for phase_rate, phase_s in schedule:
        end_ms += phase_s * 1000
        phases.append(f"{{{1000 * threads / phase_rate:f}, {end_ms:f}}}")
    return start_ms, ", ".join(phases)


def _read_acks(tmp: Path) -> list[tuple[int, int]]:
    acked: list[tuple[int, int]] = []
    for f in sorted(tmp.glob("acked-*")):
        for line in f.read_text().splitlines():
            first, accepted = line.split()
            acked.append((uuid.UUID(first).int, int(accepted)))
    return acked


def _read_log(tmp: Path) -> dict[str, list]:
    sends: list[tuple[float, int]] = []
    answers: list[tuple[float, int, str | None]] = []
    for f in sorted(tmp.glob("log-*")):
        for line in f.read_text().splitlines():
            kind, t, rest = line.split(" ", 2)
            if kind == "S":
                sends.append((float(t) / 1000, uuid.UUID(rest).int))
            else:
                status, retry_after = rest.split(" ", 1)
                answers.append((float(t) / 1000, int(status), None if retry_after == "-" else retry_after))
    return {"sends": sorted(sends), "answers": sorted(answers)}


def batch_body(first: int, events: int) -> bytes:
    """The body "batch" whose first event id is `first` as the script built it (ids consecutive, the user from
    the id's counter), so that the same events can be resent."""
    parts = []
    for k in range(events):
        counter = (first + k) & 0xFFFF_FFFF_FFFF  # the script's per-thread counter: the id's last 48 bits
        parts.append(EVENT % ((counter + 1) % 5000, uuid.UUID(int=first + k)))
    return ('{"batch":[' + ",".join(parts) + "]}").encode()


def acked_ids(results: Sequence[dict]) -> Iterator[uuid.UUID]:
    """Every event id the 202s of these runs acknowledged (ids of a batch are consecutive)."""
    for r in results:
        for first, accepted in r.get("acked", ()):
            for k in range(accepted):
                yield uuid.UUID(int=first + k)


def accepted_events(r: dict) -> int:
    return sum(n for _, n in r.get("acked", ()))
