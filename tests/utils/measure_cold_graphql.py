"""Measure raw-only questions over 30 local days, all hot vs. half cold (15 days only in Parquet).

    PULSEOPS_TEST_DB_URL=postgresql://root@127.0.0.1:5432/postgres .venv/bin/python -m tests.utils.measure_cold_graphql

Engine level: the warehouse functions the GraphQL resolvers call, inside a read snapshot; median of 5 runs
after a warm-up. Creates and drops its own database; asserts both states give identical answers.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.fixtures.postgres import create_database, drop_database
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.aggregates import rebuild_day
from warehouse.migrate import upgrade
from warehouse.reads import explore, series
from warehouse.reads.exact import Scope, snapshot
from warehouse.reads.filters import FilterOp, PropertyFilter


def _timed(db: psycopg.Connection, fn: Callable) -> tuple[float, object]:
    times, result = [], None
    for _ in range(6):
        with snapshot(db, 60_000) as conn:
            t0 = time.perf_counter()
            result = fn(conn)
            times.append(time.perf_counter() - t0)
    return statistics.median(times[1:]), result


def main(events: int = int(os.environ.get("N", "600000"))) -> None:
    url = create_database("pulseops_coldmeasure")
    try:
        upgrade(url)
        with psycopg.connect(url, autocommit=True) as db, tempfile.TemporaryDirectory() as root:
            t = make_tenant(db)
            end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=2)
            config = GeneratorConfig(
                seed=3, end=end, days=31, total_events=events, late_ratio=0, duplicate_ratio=0,
                tenants=[TenantSpec("t", 1.0, 5000)],
            )  # fmt: skip
            rows = landing_rows(generate(config), {"t": (t["org_id"], t["project_id"])}, received_at=end)
            land_rows(db, rows)
            days = sorted({r[1].date() for r in rows})
            for day in days:
                rebuild_day(db, day)
            db.execute("ANALYZE")
            settings = ColdSettings(url=root)
            old = days[:16]  # 15 of the 30 queried local days (and the day before) go cold
            for day in old:
                cold.export_day(db, url, day, settings, datasets=(cold.EVENTS,))
                assert cold.verify_day(db, day, settings, datasets=(cold.EVENTS,)).ok
            pro = (PropertyFilter("plan", FilterOp.EQ, "pro"),)
            scope = Scope(t["project_id"], days[1], days[30], "America/New_York", None, pro)
            named = Scope(t["project_id"], days[1], days[30], "America/New_York", ("page_view",))
            questions = {
                "eventCounts DAY, filter plan=pro": lambda c: series.event_counts(
                    c, scope, "day", cold=settings
                ),
                "breakdown country, filter plan=pro": lambda c: explore.breakdown(
                    c, scope, "country", 20, cold=settings
                ),
                "WAU, eventNames [page_view]": lambda c: series.active_users(c, named, 7, cold=settings),
            }
            hot = {q: _timed(db, fn) for q, fn in questions.items()}
            load_hot = os.getloadavg()
            cold.drop_exported_partitions_before(db, old[-1] + timedelta(days=1), settings)
            half = {q: _timed(db, fn) for q, fn in questions.items()}
            print(f"{len(rows)} events, {os.cpu_count()} CPUs, load {load_hot} / {os.getloadavg()}")
            print("| question | all hot | 15 of 30 days cold |\n|---|---|---|")
            for q in questions:
                assert hot[q][1] == half[q][1], q
                print(f"| {q} | {hot[q][0] * 1000:.0f} ms | {half[q][0] * 1000:.0f} ms |")
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
