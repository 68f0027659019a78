"""Dashboard query benchmark: `python -m benchmarks.queries --size …`.

Data is generated inside PostgreSQL (3 projects at 60/30/10 % of traffic), every day but the last two is
aggregated, then the dashboard query set runs against three API processes on the same database:
- "uncached": its Redis is unreachable, every answer is computed (a miss);
- "redis": the Redis result cache with the in-process copy turned off (`query.local_cache_entries=0`), so every
  repeat is a Redis hit;
- "in-process": the shipped configuration, where a repeat is served from the process's own copy.
Each query is timed from the client (localhost HTTP, one keep-alive connection, one request at a time; `_Http`),
and the same
warehouse call is timed directly on a psycopg connection in the same run: API time / SQL time is the API's
overhead. Aggregate-backed day series over built days run in UTC and three other zones (a DST zone, a
half-hour and a quarter-hour offset).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import psycopg

from benchmarks.harness import Services, free_port, machine_notes, scratch_database, services_env, tansu
from benchmarks.orchestration import generate
from benchmarks.report import write_report
from pulseops.settings import Settings
from warehouse.aggregates import rebuild_day
from warehouse.reads import explore, series
from warehouse.reads.exact import Scope, snapshot
from warehouse.reads.filters import FilterOp, PropertyFilter
from warehouse.tenants import create_api_key, ensure_org, ensure_project

SIZES = {
    "small": {"days": 10, "per_day": 5_000, "cached": 30, "uncached": 8, "mix_s": 2},
    # 100+ samples per figure, so that p99 is not the maximum
    "medium": {"days": 90, "per_day": 56_000, "cached": 300, "uncached": 100, "mix_s": 5},
    "large": {"days": 90, "per_day": 111_112, "cached": 300, "uncached": 100, "mix_s": 5},  # 10 M events
}

SERIES = "query($p: ID!, $f: Date!, $t: Date!, $g: Granularity!, $tz: String, $x: [PropertyFilter!]) { eventCounts(projectId: $p, from: $f, to: $t, granularity: $g, timezone: $tz, filters: $x) { total buckets { start value } } }"
USERS = "query($p: ID!, $f: Date!, $t: Date!) { activeUsers(projectId: $p, from: $f, to: $t, kind: DAU) { days { date value } } }"
TOP = "query($p: ID!, $f: Date!, $t: Date!) { topEvents(projectId: $p, from: $f, to: $t, limit: 10) { eventName count } }"
OVERVIEW = "query($p: ID!, $f: Date!, $t: Date!) { metrics(projectId: $p, from: $f, to: $t) { totalEvents dailyActiveUsers { date value } topEvents { eventName count } } }"
ZONES = ("America/New_York", "Asia/Kolkata", "Asia/Kathmandu")  # DST; +5:30; +5:45
BREAKDOWN = 'query($p: ID!, $f: Date!, $t: Date!) { breakdown(projectId: $p, property: "plan", from: $f, to: $t) { totalEvents groups { value events users } } }'


def _pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def _timed(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


class _Http:
    """One keep-alive HTTP/1.1 connection of the standard library's `http.client`, headers built once.

    Why not httpx: its per-request work (Request and Response objects, header models, URL merging, pool
    bookkeeping) was most of the client floor that every timed row also carries. Against a trivial uvicorn
    app, 3 x 3,000 GETs: httpx p50 0.44-0.47 ms and 391-430 us of client CPU per request, this client
    0.148 ms and 92-97 us. All rows and the floor use it, so they stay comparable with each other (not with
    reports measured with httpx)."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self._conn = http.client.HTTPConnection(host, int(port), timeout=30)
        self._get = dict(headers or {})
        self._post = {**self._get, "Content-Type": "application/json"}

    def get(self, path: str) -> tuple[int, bytes]:
        return self._send("GET", path, None, self._get)

    def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        """POST an already encoded JSON body (encode once, outside the timed loop)."""
        return self._send("POST", path, body, self._post)

    def _send(self, method: str, path: str, body: bytes | None, headers: dict) -> tuple[int, bytes]:
        if self._conn.sock is None:
            self._conn.connect()
            self._conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._conn.request(method, path, body, headers)  # headers and a bytes body go out in one send
        response = self._conn.getresponse()
        return response.status, response.read()

    def __enter__(self) -> _Http:
        return self

    def __exit__(self, *exc: object) -> None:
        self._conn.close()


def run(size: str) -> tuple[str, dict]:
    m = measure(size)
    return m["text"], m["raw"]


def measure(size: str) -> dict:
    """The figures as text, the raw samples, and per query its samples in ms (sql, uncached, cached)."""
    cfg = SIZES[size]
    settings = Settings()
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=cfg["days"] - 1 - i) for i in range(cfg["days"])]
    raw: dict[str, str] = {}
    with (
        scratch_database(settings.db.url) as db_url,
        psycopg.connect(db_url, autocommit=True) as conn,
        tansu() as bootstrap,
    ):
        hot, key, data_line = _load(conn, cfg, days)
        lines = [data_line]
        cases = _cases(hot, today)
        apis = _apis(db_url, bootstrap)
        try:
            for svc in apis.values():
                svc.start_ingest(workers=1)
            headers = {"X-API-Key": key}
            table, samples = _time_cases(conn, apis, headers, cases, cfg, hot, raw)
            lines += table
            lines.append(f"load average during the query runs: {os.getloadavg()[0]:.2f} (1 min)")
            lines.append(_cached_mix(apis["in-process"], headers, cases, cfg, hot))
            floor = _client_floor(apis["in-process"], cfg["cached"])
            lines.append(
                f"client floor, the same client against GET /healthz of the in-process API, {len(floor)} "
                f"requests: p50/p95/p99 {_pct(floor, 0.5):.2f} / {_pct(floor, 0.95):.2f} / {_pct(floor, 0.99):.2f} ms"
            )
            raw["client floor: GET /healthz samples (ms)"] = ", ".join(f"{v:.2f}" for v in floor)
            week = (today - timedelta(days=6), today)
            raw["EXPLAIN ANALYZE: 7-day property filter"] = _filter_plan(conn, hot, week)
        finally:
            for svc in apis.values():
                svc.stop()
    lines.append(
        "latency is measured by the client over localhost HTTP (one keep-alive http.client connection), one "
        "request at a time; the client, API and PostgreSQL share the machine"
    )
    return {"text": "\n".join(lines), "raw": raw, "samples": samples, "floor": floor}


def _load(conn: psycopg.Connection, cfg: dict, days: list[date]) -> tuple[uuid.UUID, str, str]:
    """Generate the days, aggregate all but the last two, and make a read key for the hot (60 %) project:
    (hot project, its key, the report's data line)."""
    org = ensure_org(conn, "bench")
    projects = [ensure_project(conn, org, f"p{i}") for i in range(3)]
    gen_s = generate(conn, days, cfg["per_day"], projects, org)
    total = cfg["days"] * cfg["per_day"]
    t = time.perf_counter()
    for d in days[:-2]:
        rebuild_day(conn, d)
    build_s = time.perf_counter() - t
    conn.execute("VACUUM ANALYZE")
    _id, key = create_api_key(
        conn, org_id=org, project_id=projects[0], kind="read", rate_per_s=1e6, burst=1e6
    )
    line = (
        f"data: {cfg['days']} days x {cfg['per_day']:,} = {total:,} events, 3 projects 60/30/10 %, generated in "
        f"{gen_s:.0f}s; {len(days) - 2} days aggregated in {build_s:.0f}s, the last 2 days raw only"
    )
    return projects[0], key, line


def _cases(hot: uuid.UUID, last: date) -> list[tuple]:
    """(name, GraphQL query, extra variables, (from, to), the same read as a warehouse call, its scope)."""
    month = (last - timedelta(days=29), last)
    week = (last - timedelta(days=6), last)
    built = (last - timedelta(days=29), last - timedelta(days=2))  # every day aggregated
    pro = (PropertyFilter("plan", FilterOp.EQ, "pro"),)
    return [
        ("eventCounts DAY 30d", SERIES, {"g": "DAY"}, month,
         lambda c, s: series.event_counts(c, s, "day"), Scope(hot, *month)),
        ("eventCounts HOUR 7d New York", SERIES, {"g": "HOUR", "tz": "America/New_York"}, week,
         lambda c, s: series.event_counts(c, s, "hour"), Scope(hot, *week, "America/New_York")),
        ("eventCounts DAY 28 built days", SERIES, {"g": "DAY"}, built,
         lambda c, s: series.event_counts(c, s, "day"), Scope(hot, *built)),
        *[
            (f"eventCounts DAY 28 built days, {tz}", SERIES, {"g": "DAY", "tz": tz}, built,
             lambda c, s: series.event_counts(c, s, "day"), Scope(hot, *built, tz))
            for tz in ZONES
        ],
        ("metrics overview 28 built days", OVERVIEW, {}, built,
         lambda c, s: (series.total_events(c, s), series.active_users(c, s, 1), series.top_events(c, s, 10)),
         Scope(hot, *built)),
        ("activeUsers DAU 30d", USERS, {}, month, lambda c, s: series.active_users(c, s, 1), Scope(hot, *month)),
        ("topEvents 30d", TOP, {}, month, lambda c, s: series.top_events(c, s, 10), Scope(hot, *month)),
        ("metrics overview 30d", OVERVIEW, {}, month,
         lambda c, s: (series.total_events(c, s), series.active_users(c, s, 1), series.top_events(c, s, 10)),
         Scope(hot, *month)),
        ("eventCounts DAY 7d plan=pro (raw)", SERIES,
         {"g": "DAY", "x": [{"property": "plan", "op": "EQ", "value": "pro"}]}, week,
         lambda c, s: series.event_counts(c, s, "day"), replace(Scope(hot, *week), filters=pro)),
        ("breakdown plan 7d (raw)", BREAKDOWN, {}, week, lambda c, s: explore.breakdown(c, s, "plan", 20),
         Scope(hot, *week)),
    ]  # fmt: skip


def _apis(db_url: str, bootstrap: str) -> dict[str, Services]:
    """Three API processes on the same database: Redis unreachable, Redis only, and the shipped cache."""
    suffix = uuid.uuid4().hex[:8]
    redis_db = "redis://127.0.0.1:6379/13"
    envs = {
        "uncached": services_env(db_url, bootstrap, "redis://127.0.0.1:1/0", suffix),
        "redis": {
            **services_env(db_url, bootstrap, redis_db, suffix),
            "PULSEOPS_QUERY__LOCAL_CACHE_ENTRIES": "0",
        },
        "in-process": services_env(db_url, bootstrap, redis_db, suffix),
    }
    return {mode: Services(env, free_port()) for mode, env in envs.items()}


def _time_cases(
    conn: psycopg.Connection,
    apis: dict[str, Services],
    headers: dict,
    cases: list[tuple],
    cfg: dict,
    hot: uuid.UUID,
    raw: dict[str, str],
) -> tuple[list[str], dict[str, dict[str, list[float]]]]:
    """Each case timed as a direct warehouse call and through each API: (the table's lines, the samples)."""
    samples: dict[str, dict[str, list[float]]] = {}
    table = [
        "| query | SQL direct p50/p95 ms | API uncached (miss) p50/p95/p99 ms | API Redis hit p50/p95/p99 ms "
        "| API in-process hit p50/p95/p99 ms | uncached/SQL (p50) |",
        "|---|---|---|---|---|---|",
    ]
    for name, query, extra, (f, to), direct, scope in cases:
        variables = {"p": str(hot), "f": f.isoformat(), "t": to.isoformat(), **extra}
        body = json.dumps({"query": query, "variables": variables}).encode()
        sql_ms = _timed(lambda direct=direct, scope=scope: _direct(conn, direct, scope), cfg["uncached"])
        res = {}
        for mode, svc in apis.items():
            with _Http(svc.url, headers) as client:
                status, first = client.post("/graphql", body)
                assert status == 200 and "errors" not in json.loads(first), first[:500]
                n = cfg["uncached"] if mode == "uncached" else cfg["cached"]
                res[mode] = _timed(lambda client=client, body=body: client.post("/graphql", body), n)
        u, r, c = res["uncached"], res["redis"], res["in-process"]
        samples[name] = {"sql": sql_ms, "uncached": u, "redis": r, "cached": c}
        table.append(
            f"| {name} | {_pct(sql_ms, 0.5):.1f} / {_pct(sql_ms, 0.95):.1f} | "
            f"{_pct(u, 0.5):.1f} / {_pct(u, 0.95):.1f} / {_pct(u, 0.99):.1f} | "
            f"{_pct(r, 0.5):.2f} / {_pct(r, 0.95):.2f} / {_pct(r, 0.99):.2f} | "
            f"{_pct(c, 0.5):.2f} / {_pct(c, 0.95):.2f} / {_pct(c, 0.99):.2f} | "
            f"{_pct(u, 0.5) / _pct(sql_ms, 0.5):.2f} |"
        )
        raw[f"{name}: samples (ms)"] = "\n".join(
            f"{label}: {', '.join(f'{v:.2f}' for v in values)}"
            for label, values in (("sql", sql_ms), ("uncached", u), ("redis hit", r), ("in-process hit", c))
        )
    return table, samples


def _client_floor(api: Services, n: int) -> list[float]:
    """The client's own floor: a cache hit can be no faster than the same client's round trip to /healthz
    (HTTP over localhost, the client's and the server's framework), measured in the same run with the same
    `_Http` client as every timed row."""
    with _Http(api.url) as client:
        client.get("/healthz")
        return _timed(lambda: client.get("/healthz"), n)


def _cached_mix(api: Services, headers: dict, cases: list[tuple], cfg: dict, hot: uuid.UUID) -> str:
    """Throughput: one client sends the cached mix back to back for mix_s seconds."""
    with _Http(api.url, headers) as client:
        bodies = [
            json.dumps(
                {"query": q, "variables": {"p": str(hot), "f": f.isoformat(), "t": to.isoformat(), **x}}
            ).encode()
            for _n, q, x, (f, to), _d, _s in cases
        ]
        t = time.perf_counter()
        count = 0
        while time.perf_counter() - t < cfg["mix_s"]:
            client.post("/graphql", bodies[count % len(bodies)])
            count += 1
        return (
            f"cached mix, one client back to back for {cfg['mix_s']} s: {count / (time.perf_counter() - t):,.0f} req/s "
            f"(one API worker process)"
        )


def _filter_plan(conn: psycopg.Connection, hot: uuid.UUID, week: tuple[date, date]) -> str:
    """EXPLAIN ANALYZE of the 7-day property filter on raw events."""
    plan = conn.execute(
        "EXPLAIN (ANALYZE, BUFFERS) SELECT count(*) FROM events e WHERE e.project_id = %s "
        'AND e.event_time >= %s AND e.event_time < %s AND e.properties @> \'{"plan": "pro"}\'',
        (hot, datetime.combine(week[0], datetime.min.time(), UTC), datetime.now(UTC)),
    ).fetchall()
    return "\n".join(r[0] for r in plan)


def _direct(conn: psycopg.Connection, fn: Callable, scope: Scope) -> object:
    with snapshot(conn, 30_000):
        return fn(conn, scope)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.queries", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    machine = machine_notes()
    text, raw = run(args.size)
    print(text)
    if not args.no_report:
        path = write_report(
            "queries", args.size, f"python -m benchmarks.queries --size {args.size}", machine, text, raw
        )
        print(f"report: {path}")


if __name__ == "__main__":
    main()
