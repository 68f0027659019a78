"""stale_days: which days need a rebuild, with a version that moves whenever any project lands more."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

from tests.utils.tenants import make_tenant
from warehouse.aggregates import rebuild_day, stale_days
from warehouse.landing import land_batch

DAY = date(2026, 6, 1)


def _land(db, tenant: dict, n: int = 1) -> None:
    ts = datetime(2026, 6, 1, 12, tzinfo=UTC)
    rows = [
        (tenant["project_id"], ts, uuid.uuid4(), tenant["org_id"], "e", "u", datetime.now(UTC), "{}")
        for _ in range(n)
    ]
    land_batch(db, rows)


def test_late_data_of_any_project_changes_the_day_version(db):
    a, b = make_tenant(db, "a", "p"), make_tenant(db, "b", "p")
    for _ in range(3):
        _land(db, a)
    _land(db, b)
    rebuild_day(db, DAY)
    assert stale_days(db) == []
    _land(db, b)  # b goes from version 1 to 2, still below a's 3: the day's key must change anyway
    first = stale_days(db)
    assert [(s.day, s.projects, s.reason) for s in first] == [(DAY, 1, "late_data")]
    _land(db, b)
    second = stale_days(db)
    assert second[0].version > first[0].version
    rebuild_day(db, DAY)
    assert stale_days(db) == []


def test_never_built_days_are_stale_only_from_the_given_day_on(db):
    _land(db, make_tenant(db))
    assert stale_days(db) == []
    assert [s.reason for s in stale_days(db, include_unbuilt_since=DAY)] == ["new_data"]
