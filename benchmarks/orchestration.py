"""Aggregate backfill and late-data correction benchmark: `python -m benchmarks.orchestration --size …`.

Figures, all from one run:
  1. Backfill: N days x M events/day, generated inside PostgreSQL (3 projects 60/30/10 %), rebuilt by
     `dagster asset materialize --partition-range` (single-run backfill policy): wall time and events/s.
  2. Baseline: a plain SQL GROUP BY (project, 15-minute bucket, event name) over the same rows, same run.
  3. Rebuild of one day holding a large number of events (rebuild_day directly).
  4. Late event landed -> corrected aggregate, through a running dagster-daemon and the late-data sensor:
     one late event at a time into a random built day, p50/p95 over the samples.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

from benchmarks.harness import ROOT, machine_notes, scratch_database
from benchmarks.report import write_report
from pulseops import services
from pulseops.settings import Settings
from warehouse.aggregates import rebuild_day
from warehouse.db import ensure_database, with_database
from warehouse.landing import land_batch
from warehouse.partitions import ensure_partitions
from warehouse.tenants import ensure_org, ensure_project

SIZES = {
    "small": {"days": 7, "per_day": 20_000, "one_day": 100_000, "late_samples": 3},
    "medium": {"days": 90, "per_day": 100_000, "one_day": 1_000_000, "late_samples": 10},
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


def late_correction(
    db_url: str, env: dict[str, str], days: list[date], projects: list, org, samples: int, timed: bool = False
) -> list:
    """One late event at a time into a random built day (all but the last two of `days`); seconds until
    that day's build includes it. `timed`: (monotonic time of the landing, seconds) pairs instead."""
    log = open(Path(tempfile.gettempdir()) / "pulseops-bench-daemon.log", "ab")  # noqa: SIM115
    daemon = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        env=env, cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    delays = []
    rng = random.Random(7)
    try:
        _wait_for_late_sensor(with_database(db_url, db_url.rsplit("/", 1)[1] + "_dagster"), 60)
        with psycopg.connect(db_url, autocommit=True) as conn:
            for _ in range(samples):
                day = rng.choice(days[:-2])
                project = rng.choice(projects)
                ts = _midnight(day) + timedelta(seconds=rng.randrange(86400))
                row = (project, ts, uuid.uuid4(), org, "late_event", "u-late", datetime.now(UTC),
                       orjson.dumps({"late": True}).decode())  # fmt: skip
                t0 = time.monotonic()
                land_batch(conn, [row])
                version = conn.execute(
                    "SELECT version FROM landed_days WHERE project_id = %s AND day = %s", (project, day)
                ).fetchone()[0]
                while True:
                    built = conn.execute(
                        "SELECT built_version FROM aggregate_builds WHERE project_id = %s AND day = %s",
                        (project, day),
                    ).fetchone()
                    if built and built[0] >= version:
                        break
                    if time.monotonic() - t0 > 120:
                        raise SystemExit("late event not corrected within 120 s")
                    time.sleep(0.1)
                delays.append((t0, time.monotonic() - t0) if timed else time.monotonic() - t0)
                time.sleep(2)
    finally:
        daemon.terminate()
        daemon.wait(30)
    return delays


def dagster_env(db_url: str, tmp: Path) -> dict[str, str]:
    """Environment for Dagster processes on a scratch database: own instance storage and DAGSTER_HOME."""
    storage = with_database(db_url, db_url.rsplit("/", 1)[1] + "_dagster")
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


LATE_SIZES = {
    "small": {"days": 3, "per_day": 2_000, "samples": 2},
    "medium": {"days": 7, "per_day": 100_000, "samples": 10},
    "large": {"days": 30, "per_day": 100_000, "samples": 20},
}


def run_late(size: str) -> dict:
    """Late-data correction alone (the suite's scenario): days built directly with rebuild_day instead of a
    Dagster backfill, then late events one at a time through the daemon and the sensor."""
    cfg = LATE_SIZES[size]
    settings = Settings()
    today = datetime.now(UTC).date()
    days = [today - timedelta(days=cfg["days"] + 1 - i) for i in range(cfg["days"])]
    with scratch_database(settings.db.url) as db_url, tempfile.TemporaryDirectory() as tmp:
        env = dagster_env(db_url, Path(tmp))
        with psycopg.connect(db_url, autocommit=True) as conn:
            org = ensure_org(conn, "bench")
            projects = [ensure_project(conn, org, f"p{i}") for i in range(3)]
            generate(conn, days, cfg["per_day"], projects, org)
            for d in days:
                rebuild_day(conn, d)
        started = time.monotonic()
        # late_correction picks among all but the last two days it is given: here every day is built
        samples = late_correction(db_url, env, days + days[-2:], projects, org, cfg["samples"], timed=True)
    delays = sorted(d for _, d in samples)
    pct = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]  # noqa: E731
    return {
        "size": size,
        "config": cfg,
        "sensor_interval_s": settings.orchestration.sensor_interval_s,
        "delays_s": [d for _, d in samples],
        "p50_s": pct(0.5),
        "p95_s": pct(0.95),
        "max_s": delays[-1],
        "series": {"late event -> corrected aggregate (s):sample": [(t - started, d) for t, d in samples]},
    }


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
            projects = [ensure_project(conn, org, f"p{i}") for i in range(3)]
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
        delays = late_correction(db_url, env, days, projects, org, cfg["late_samples"])
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
            f"late event landed -> corrected aggregate ({len(delays)} samples, sensor every "
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
