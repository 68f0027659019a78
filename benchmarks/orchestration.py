"""Aggregate backfill and late-data correction benchmark: `python -m benchmarks.orchestration --size …`.

Figures, all from one run:
  1. Backfill: N days x M events/day, generated inside PostgreSQL (3 projects 60/30/10 %), rebuilt by
     `dagster asset materialize --partition-range` (single-run backfill policy): wall time and events/s.
  2. Baseline: a plain SQL GROUP BY (project, 15-minute bucket, event name) over the same rows, same run.
  3. Rebuild of one day holding a large number of events (rebuild_day directly).
  4. Late event -> corrected aggregate value: late events sent over HTTP (ingest API, broker, landing worker)
     into random built days while dagster-daemon and the late-data sensor run; each sample ends when GraphQL
     answers the day's totalEvents from the aggregates (the day no longer stale) with the true value.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

from benchmarks import background_load, late_trace
from benchmarks.harness import ROOT, Services, free_port, machine_notes, scratch_database, services_env, tansu
from benchmarks.load import tenant, warm_up
from benchmarks.report import write_report
from pulseops import services
from pulseops.services import dagster_storage_url
from pulseops.settings import Settings
from warehouse.aggregates import rebuild_day
from warehouse.db import ensure_database
from warehouse.partitions import ensure_partitions
from warehouse.tenants import ensure_org, ensure_project

SIZES = {
    "small": {"days": 7, "per_day": 20_000, "one_day": 100_000, "late_samples": 5},
    "medium": {"days": 90, "per_day": 100_000, "one_day": 1_000_000, "late_samples": 60},
}

_GENERATE_DAY = """
INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at, properties)
SELECT CASE WHEN g %% 10 < 6 THEN %(p0)s::uuid WHEN g %% 10 < 9 THEN %(p1)s::uuid ELSE %(p2)s::uuid END,
       %(start)s::timestamptz + (g::double precision / %(n)s) * interval '1 day',
       gen_random_uuid(), %(org)s, 'event_' || (g * 7919 %% 20), 'u-' || (g * 104729 %% 5000),
       %(start)s::timestamptz + interval '1 day',
       jsonb_build_object('plan', CASE WHEN g %% 3 = 0 THEN 'pro' ELSE 'free' END, 'amount', g %% 100)
FROM generate_series(0::bigint, %(n)s - 1) AS g
"""

_LANDED_DAYS = """
INSERT INTO landed_days (project_id, day, events)
SELECT project_id, (event_time AT TIME ZONE 'UTC')::date, count(*) FROM events
WHERE event_time >= %(start)s AND event_time < %(end)s GROUP BY 1, 2
ON CONFLICT (project_id, day) DO UPDATE SET events = EXCLUDED.events, version = landed_days.version + 1
"""


def _midnight(d: date) -> datetime:
    return datetime.combine(d, datetime.min.time(), UTC)


def generate(conn: psycopg.Connection, days: list[date], per_day: int, projects: list, org) -> float:
    ensure_partitions(conn, days)
    started = time.perf_counter()
    for d in days:
        conn.execute(
            _GENERATE_DAY,
            {
                "p0": projects[0],
                "p1": projects[1],
                "p2": projects[2],
                "org": org,
                "start": _midnight(d),
                "n": per_day,
            },
        )
    # the dedup ledger, as landing would have filled it (the duplicate check compares both)
    conn.execute(
        "INSERT INTO event_ids SELECT project_id, event_id, event_time FROM events "
        "WHERE event_time >= %s AND event_time < %s ON CONFLICT DO NOTHING",
        (_midnight(min(days)), _midnight(max(days) + timedelta(days=1))),
    )
    conn.execute(
        _LANDED_DAYS, {"start": _midnight(min(days)), "end": _midnight(max(days) + timedelta(days=1))}
    )
    conn.execute("ANALYZE events")
    return time.perf_counter() - started


def backfill(env: dict[str, str], first: date, last: date, raw: dict) -> float:
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "orchestration.definitions", "-a", "defs",
        "--select", "event_rollups,user_activity,daily_aggregates", "--partition-range", f"{first}...{last}",
    ]  # fmt: skip
    started = time.perf_counter()
    out = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    took = time.perf_counter() - started
    raw["Backfill output (tail)"] = (
        "$ " + " ".join(cmd) + "\n" + "\n".join((out.stdout + out.stderr).splitlines()[-40:])
    )
    if out.returncode != 0:
        raise SystemExit(f"backfill failed:\n{out.stderr[-3000:]}")
    return took


def group_by_baseline(conn: psycopg.Connection) -> tuple[float, int]:
    started = time.perf_counter()
    rows = conn.execute(
        "SELECT count(*) FROM (SELECT project_id, date_bin('15 minutes', event_time, TIMESTAMPTZ '2000-01-01'), "
        "event_name, count(*) FROM events GROUP BY 1, 2, 3) s"
    ).fetchone()[0]
    return time.perf_counter() - started, rows


LATE_QUERY = """query($p: ID!, $d: Date!) {
  totalEvents(projectId: $p, from: $d, to: $d, timezone: "UTC")
  dayBuilds(projectId: $p, from: $d, to: $d) { stale }
}"""
SEND_GAP_S = 1.0  # one late event a second, each into a (project, day) with no late event still pending
SAMPLE_TIMEOUT_S = 180


def late_burst(
    client: httpx.Client, keys: dict, truth: dict, cells: list[tuple], events: int, env: dict[str, str]
) -> dict:
    """`events` late events spread over every (project, day) of `cells`, sent at once (one request per cell);
    seconds from the last 202 until GraphQL answers every cell's totalEvents from the aggregates with the
    true value, and how many Dagster runs that took."""
    import dagster as dg

    started = datetime.now(UTC)
    per_cell = max(1, events // len(cells))
    for project, day in cells:
        batch = [
            {"event": "late_burst", "distinct_id": f"u-{i % 17}", "event_id": str(uuid.uuid4()),
             "timestamp": (_midnight(day) + timedelta(seconds=(i * 7919) % 86400)).isoformat()}
            for i in range(per_cell)
        ]  # fmt: skip
        r = client.post("/v1/batch", json={"batch": batch}, headers={"X-API-Key": keys[project][0]})
        if r.status_code != 202:
            raise SystemExit(f"late burst refused: {r.status_code} {r.text[:300]}")
        truth[(project, day)] += per_cell
    last_202 = time.monotonic()
    waiting = set(cells)
    while waiting:
        for project, day in list(waiting):
            answer = client.post(
                "/graphql",
                json={"query": LATE_QUERY, "variables": {"p": str(project), "d": day.isoformat()}},
                headers={"X-API-Key": keys[project][1]},
            ).json()["data"]
            if not answer["dayBuilds"][0]["stale"] and answer["totalEvents"] == truth[(project, day)]:
                waiting.discard((project, day))
        if time.monotonic() - last_202 > 600:
            raise SystemExit(f"late burst: {len(waiting)} (project, day) not correct within 600 s")
        time.sleep(0.5)
    seconds = time.monotonic() - last_202
    os.environ["DAGSTER_HOME"] = env["DAGSTER_HOME"]
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs_count(
            dg.RunsFilter(job_name="refresh_aggregates_job", created_after=started)
        )
    return {"events": per_cell * len(cells), "cells": len(cells), "days": len({d for _, d in cells}),
            "seconds_after_last_202": seconds, "runs": runs}  # fmt: skip


def late_correction(
    db_url: str,
    env: dict[str, str],
    days: list[date],
    projects: list[str],
    samples: int,
    timed: bool = False,
    burst: tuple[list[date], int, dict] | None = None,
    load: tuple[float, dict] | None = None,
    trace: late_trace.Trace | None = None,
) -> list:
    """Late events sent over HTTP (ingest API -> broker -> landing worker), one a second, each into a random
    built (project, day) of all but the last two of `days` that has no late event pending; a sample is the
    time from its 202 until GraphQL answers the day's totalEvents from the aggregate path (dayBuilds says the
    day is no longer stale, so the answer comes from daily_aggregates, not raw events) with the true value.
    `projects` are project names of org "bench"; `timed`: (monotonic time of the 202, seconds) pairs.
    `burst` (days, events, out): first `late_burst` over those days of every project, its result into `out`.
    `load` (events/s, out): on-time events of another tenant at that rate through the samples (`_background_load`),
    its figures and ledger check into `out` (benchmarks/background_load.py). `trace`: stages per sample."""
    settings = Settings()
    with tansu() as bootstrap:
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:8]), free_port())
        daemon = _start_daemon(env)
        try:
            svc.start_ingest(workers=2)
            svc.start_worker()
            warm_up(svc.url, db_url)
            keys = _late_keys(db_url, projects)
            truth = _day_totals(db_url)
            _wait_for_late_sensor(dagster_storage_url(db_url), 90)
            cells = [(p, d) for p in keys for d in days[:-2]]
            with httpx.Client(base_url=svc.url, timeout=30) as client:
                if burst:
                    burst_days, events, out = burst
                    out.update(
                        late_burst(
                            client, keys, truth, [(p, d) for p in keys for d in burst_days], events, env
                        )
                    )
                loader = None
                if load:
                    seconds = samples * SEND_GAP_S + LOAD_TAIL_S
                    loader = background_load.start(svc.url, db_url, load[0], seconds, load[1])
                    time.sleep(2)  # the samples start with the load running
                delays = _late_samples(client, keys, truth, cells, samples, timed, trace)
                if loader is not None:
                    loader.join()
                    background_load.check(db_url, load[1])
                if trace is not None:
                    trace.finish(dagster_storage_url(db_url))
                return delays
        finally:
            svc.stop()
            _stop_daemon(daemon)


def _start_daemon(env: dict[str, str]) -> subprocess.Popen:
    """dagster-daemon on the scratch instance (runs the late-data sensor), logging to a file in /tmp; in a
    session of its own, so that `_stop_daemon` also stops the code servers it spawned (left alone they
    outlived the benchmark)."""
    log = open(Path(tempfile.gettempdir()) / "pulseops-bench-daemon.log", "ab")  # noqa: SIM115
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True,
    )  # fmt: skip


def _stop_daemon(daemon: subprocess.Popen) -> None:
    """SIGTERM to the daemon's process group (its code servers included), SIGKILL after 30 s."""
    with suppress(ProcessLookupError):
        os.killpg(daemon.pid, signal.SIGTERM)
    try:
        daemon.wait(30)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(daemon.pid, signal.SIGKILL)
        daemon.wait(10)


def _late_keys(db_url: str, projects: list[str]) -> dict:
    """Per project id of org "bench": (ingest key, read key)."""
    keys = {}
    for name in projects:
        ingest_key, project = tenant(db_url, "bench", name)
        read_key, _ = tenant(db_url, "bench", name, kind="read", rate=1e6)
        keys[project] = (ingest_key, read_key)
    return keys


def _day_totals(db_url: str) -> dict:
    """The truth late events are added to: events per (project, UTC day) in the table."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        return {
            (p, d): n
            for p, d, n in conn.execute(
                "SELECT project_id, (event_time AT TIME ZONE 'UTC')::date, count(*) FROM events GROUP BY 1, 2"
            )
        }


def _late_samples(
    client: httpx.Client, keys: dict, truth: dict, cells: list[tuple], samples: int, timed: bool,
    trace: late_trace.Trace | None = None,
) -> list:  # fmt: skip
    """Send one late event a second into a free random cell, and poll every pending cell until it is correct."""
    delays: list = []
    rng = random.Random(7)
    pending: dict[tuple, tuple[float, int]] = {}
    sent, next_send = 0, time.monotonic()
    while sent < samples or pending:
        now = time.monotonic()
        free = [c for c in cells if c not in pending]
        if sent < samples and now >= next_send and free:
            project, day = rng.choice(free)
            _send_late_event(client, keys, truth, project, day, rng)
            pending[(project, day)] = (time.monotonic(), truth[(project, day)], time.time())
            sent += 1
            next_send = now + SEND_GAP_S
        for (project, day), (t0, expected, wall) in list(pending.items()):
            if _corrected(client, keys, project, day, expected):
                took = time.monotonic() - t0
                delays.append((t0, took) if timed else took)
                if trace is not None:
                    trace.add(project, day, wall, took)
                del pending[(project, day)]
            elif time.monotonic() - t0 > SAMPLE_TIMEOUT_S:
                raise SystemExit(f"late event into {day} not in the aggregates within {SAMPLE_TIMEOUT_S} s")
        time.sleep(0.1)
    return delays


def _send_late_event(
    client: httpx.Client, keys: dict, truth: dict, project: object, day: date, rng: random.Random
) -> None:
    """One late event at a random time of `day`; counted in `truth` once acknowledged."""
    ts = _midnight(day) + timedelta(seconds=rng.randrange(86400))
    event = {"event": "late_event", "distinct_id": "u-late", "timestamp": ts.isoformat(),
             "event_id": str(uuid.uuid4()), "properties": {"late": True}}  # fmt: skip
    r = client.post("/v1/batch", json={"batch": [event]}, headers={"X-API-Key": keys[project][0]})
    if r.status_code != 202:
        raise SystemExit(f"late event refused: {r.status_code} {r.text[:300]}")
    truth[(project, day)] += 1


def _corrected(client: httpx.Client, keys: dict, project: object, day: date, expected: int) -> bool:
    """Whether GraphQL answers the day's totalEvents from the aggregates (not stale) with `expected`."""
    answer = client.post(
        "/graphql",
        json={"query": LATE_QUERY, "variables": {"p": str(project), "d": day.isoformat()}},
        headers={"X-API-Key": keys[project][1]},
    ).json()["data"]
    (build,) = answer["dayBuilds"]
    return not build["stale"] and answer["totalEvents"] == expected


def dagster_env(db_url: str, tmp: Path) -> dict[str, str]:
    """Environment for Dagster processes on a scratch database: own instance storage and DAGSTER_HOME."""
    storage = dagster_storage_url(db_url)
    ensure_database(storage)
    home = services.write_dagster_instance(
        Settings(db={"url": db_url}, orchestration={"dagster_home": str(tmp / "dagster")}), storage
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PULSEOPS_", "DAGSTER_"))}
    env.update({"DAGSTER_HOME": str(home), "PULSEOPS_DB__URL": db_url, **services.dagster_env()})
    # cold-tier exports of the generated days would compete for the CPU with what is measured here
    env.update({"PULSEOPS_COLD__URL": str(tmp / "cold"), "PULSEOPS_COLD__ENABLED": "false"})
    env.update(services.QUIET_WARNINGS)
    return env


BURST_DAYS, BURST_EVENTS = 35, 3_060  # issue 16: late data over 35 days x 3 projects, sent at once
LATE_SIZES = {
    "small": {"days": 3, "per_day": 2_000, "samples": 3, "load_rate": 500},
    "medium": {"days": 7, "per_day": 100_000, "samples": 60, "load_rate": 5_000},
    "large": {"days": 30, "per_day": 100_000, "samples": 60, "load_rate": 5_000},
}
# Issue 16: late data is corrected "while ingest runs at >= 5,000 events/s": a paced wrk load of on-time
# events (another tenant) runs through the samples and LOAD_TAIL_S beyond their send window, so that their
# corrections happen under it too; samples that ended after the load stopped are counted apart.
LOAD_TAIL_S = 30


def run_late(size: str) -> dict:
    """Late-data correction alone (the suite's scenario): days built directly with rebuild_day instead of a
    Dagster backfill, then late events one at a time through the daemon and the sensor."""
    cfg = LATE_SIZES[size]
    settings = Settings()
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=cfg["days"] + 1 - i) for i in range(cfg["days"])]
    # the burst's days: BURST_DAYS built days before those, with a few events each
    burst_days = [days[0] - timedelta(days=BURST_DAYS - i) for i in range(BURST_DAYS)]
    burst: dict = {}
    load: dict = {}
    with scratch_database(settings.db.url) as db_url, tempfile.TemporaryDirectory() as tmp:
        env, trace = dagster_env(db_url, Path(tmp)), late_trace.Trace(db_url)
        with psycopg.connect(db_url, autocommit=True) as conn:
            org = ensure_org(conn, "bench")
            names = [f"p{i}" for i in range(3)]
            projects = [ensure_project(conn, org, n) for n in names]
            generate(conn, days, cfg["per_day"], projects, org)
            generate(conn, burst_days, 300, projects, org)
            for d in burst_days + days:
                rebuild_day(conn, d)
        started = time.monotonic()
        # late_correction picks among all but the last two days it is given: here every day is built
        samples = late_correction(
            db_url, env, days + days[-2:], names, cfg["samples"], timed=True,
            burst=(burst_days, BURST_EVENTS, burst), load=(cfg["load_rate"], load), trace=trace,
        )  # fmt: skip
    print(trace.summary, flush=True)
    delays = sorted(d for _, d in samples)
    under = sorted(d for t, d in samples if load.get("start", 0) <= t and t + d <= load.get("end", 0))
    pct = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]  # noqa: E731
    return {
        "size": size,
        "config": cfg,
        "sensor_interval_s": settings.orchestration.sensor_interval_s,
        "delays_s": [d for _, d in samples],
        "p50_s": pct(0.5),
        "p95_s": pct(0.95),
        "max_s": delays[-1],
        "burst": burst,
        "stages": trace.summary,
        "load": {k: v for k, v in load.items() if k not in ("start", "end")},
        "under_load": {"samples": len(under), "p50_s": _pct(under, 0.5), "p95_s": _pct(under, 0.95)},
        "series": {"late event -> corrected aggregate (s):sample": [(t - started, d) for t, d in samples]},
    }


def _pct(values: list[float], p: float) -> float | None:
    return values[min(len(values) - 1, int(p * len(values)))] if values else None


def _wait_for_late_sensor(storage_url: str, timeout: float) -> None:
    """Until the daemon has evaluated the late-data sensor once (a tick in Dagster's storage): from then on
    a late event waits for at most one sensor interval, as in steady state."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(storage_url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            try:
                if conn.execute(
                    "SELECT 1 FROM job_ticks WHERE tick_body LIKE %s LIMIT 1", ("%late_data_sensor%",)
                ).fetchone():
                    return
            except psycopg.errors.UndefinedTable:
                pass
            time.sleep(0.5)
    raise TimeoutError(f"dagster-daemon did not tick the late-data sensor within {timeout:.0f}s")


def run(size: str) -> tuple[str, dict]:
    cfg = SIZES[size]
    settings = Settings()
    raw: dict[str, str] = {}
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=cfg["days"] + 1 - i) for i in range(cfg["days"])]
    with scratch_database(settings.db.url) as db_url, tempfile.TemporaryDirectory() as tmp:
        env = dagster_env(db_url, Path(tmp))
        with psycopg.connect(db_url, autocommit=True) as conn:
            org = ensure_org(conn, "bench")
            names = [f"p{i}" for i in range(3)]
            projects = [ensure_project(conn, org, n) for n in names]
            gen_s = generate(conn, days, cfg["per_day"], projects, org)
            total = cfg["days"] * cfg["per_day"]
            backfill_s = backfill(env, days[0], days[-1], raw)
            built = conn.execute("SELECT count(DISTINCT day) FROM aggregate_builds").fetchone()[0]
            agg_events = conn.execute(
                "SELECT sum(value) FROM daily_aggregates WHERE metric = 'events' AND dimensions = '{}'"
            ).fetchone()[0]
            base_s, groups = group_by_baseline(conn)
            big_day = today - timedelta(days=cfg["days"] + 5)
            generate(conn, [big_day], cfg["one_day"], projects, org)
            one = rebuild_day(conn, big_day)
        delays = late_correction(db_url, env, days, names, cfg["late_samples"])
    delays.sort()
    pct = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]  # noqa: E731
    text = "\n".join(
        [
            f"data: {cfg['days']} days x {cfg['per_day']:,} events = {total:,} events, generated in PostgreSQL in {gen_s:.1f}s",
            f"backfill (one `dagster asset materialize --partition-range` run, process start included): "
            f"{backfill_s:.1f}s = {total / backfill_s:,.0f} events/s; {built} days built; "
            f"daily_aggregates total = {int(agg_events):,} (raw {total:,})",
            f"plain SQL GROUP BY (project, 15-min bucket, event) over the same rows: {base_s:.1f}s ({groups:,} groups); "
            f"backfill / GROUP BY = {backfill_s / base_s:.2f}",
            f"rebuild of one day with {one.raw_events:,} events: {one.seconds:.2f}s "
            f"({one.raw_events / one.seconds:,.0f} events/s)",
            f"late event 202 -> aggregate value in GraphQL equals the truth ({len(delays)} samples, sensor every "
            f"{settings.orchestration.sensor_interval_s}s): p50 {pct(0.5):.1f}s, p95 {pct(0.95):.1f}s, "
            f"max {delays[-1]:.1f}s; all: {', '.join(f'{d:.1f}' for d in delays)}",
        ]
    )
    return text, raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.orchestration", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    machine = machine_notes()
    text, raw = run(args.size)
    print(text)
    if not args.no_report:
        path = write_report(
            "orchestration",
            args.size,
            f"python -m benchmarks.orchestration --size {args.size}",
            machine,
            text,
            raw,
        )
        print(f"report: {path}")


if __name__ == "__main__":
    main()
