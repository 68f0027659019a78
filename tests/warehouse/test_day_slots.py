"""`event_day_slots` (migration 0009): running counts over a UTC day's 96 slots, built with the day's rollups.

The exactness tests (tests/warehouse/test_exact.py) read them for every non-UTC day, week and month over built
days; here the table itself: its running counts against a count in Python, built and
replaced by a rebuild, and the migration's backfill equal to what a rebuild writes (the cold tier's rebuild:
tests/warehouse/test_cold.py)."""

from __future__ import annotations

import importlib
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta

import orjson

from tests.utils.events import land_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import rebuild_day

DAY = date(2026, 3, 8)  # a DST day in New York: UTC days have 96 slots whatever the zones do
MIGRATION = importlib.import_module("warehouse.migrations.versions.20261206_0009_event_day_slots")


def _rows(tenant: dict, times: list[tuple[datetime, str]]) -> list[tuple]:
    return [
        (tenant["project_id"], ts, uuid.uuid4(), tenant["org_id"], name, f"u-{i % 7}", ts + timedelta(seconds=1),
         orjson.dumps({}).decode())
        for i, (ts, name) in enumerate(times)
    ]  # fmt: skip


def _slots(db, project_id) -> dict[str, list[int]]:
    rows = db.execute(
        "SELECT event_name, cum FROM event_day_slots WHERE project_id = %s AND day = %s", (project_id, DAY)
    ).fetchall()
    return dict(rows)


def _expected(times: list[tuple[datetime, str]]) -> dict[str, list[int]]:
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    per: dict[str, Counter] = {}
    for ts, name in times:
        per.setdefault(name, Counter())[int((ts - start).total_seconds() // 900)] += 1
    out = {}
    for name, counts in per.items():
        cum, running = [0], 0
        for slot in range(96):
            running += counts[slot]
            cum.append(running)
        out[name] = cum
    return out


def test_running_counts_match_the_events_and_follow_rebuilds(db):
    tenant = make_tenant(db)
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    times = [(start + timedelta(minutes=7 * i), "view" if i % 3 else "click") for i in range(200)]
    times += [(start + timedelta(hours=23, minutes=59, seconds=59), "view"), (start, "signup")]
    times += [(start - timedelta(seconds=1), "view"), (start + timedelta(days=1), "view")]  # other UTC days
    land_rows(db, _rows(tenant, times))
    rebuild_day(db, DAY)
    inside = [(t, n) for t, n in times if start <= t < start + timedelta(days=1)]
    assert _slots(db, tenant["project_id"]) == _expected(inside)
    # a late event: the rebuild replaces the day's rows
    late = [(start + timedelta(hours=12, minutes=1), "late")]
    land_rows(db, _rows(tenant, late))
    rebuild_day(db, DAY)
    assert _slots(db, tenant["project_id"]) == _expected(inside + late)


def test_the_migration_backfill_writes_what_a_rebuild_writes(db):
    tenant = make_tenant(db)
    start = datetime.combine(DAY, datetime.min.time(), UTC)
    times = [(start + timedelta(minutes=13 * i), f"e{i % 4}") for i in range(300)]
    land_rows(db, _rows(tenant, times))
    for d in (DAY - timedelta(days=1), DAY, DAY + timedelta(days=1)):
        rebuild_day(db, d)
    built = db.execute(
        "SELECT project_id, day, event_name, cum FROM event_day_slots ORDER BY 1, 2, 3"
    ).fetchall()
    assert built  # something to compare
    db.execute("DELETE FROM event_day_slots")
    db.execute(MIGRATION.BACKFILL)
    again = db.execute(
        "SELECT project_id, day, event_name, cum FROM event_day_slots ORDER BY 1, 2, 3"
    ).fetchall()
    assert again == built
