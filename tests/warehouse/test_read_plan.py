"""The read plan classifies days as the per-question statements it replaced did (warehouse/reads/plan.py):
stale days, days without raw partition, the cold tier's verified days, refusals, and the data version that
keys the result cache, over a project with built, raw, late and cold days."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import warehouse.cold.reads
from pulseops.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.aggregates import rebuild_day
from warehouse.reads.exact import cold_reader, data_version, days_without_raw, raw_days, require_raw
from warehouse.reads.plan import RawDataGone, plan_reads

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def test_plan_answers_as_the_statements_it_replaces(db, database_url, tmp_path):
    tenant = make_tenant(db, "acme", "web")
    project = tenant["project_id"]
    config = GeneratorConfig(
        seed=5, end=END, days=10, total_events=1_500, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 40)],
    )  # fmt: skip
    rows = landing_rows(generate(config), {"t": (tenant["org_id"], project)}, received_at=END)
    late = [r for r in rows if r[1].date() == END.date() - timedelta(days=5)][:3]
    land_rows(db, [r for r in rows if r not in late])
    days = sorted({r[1].date() for r in rows})
    for day in days[:-2]:
        rebuild_day(db, day)
    land_rows(db, late)  # a built day with late data: stale again
    settings = ColdSettings(url=str(tmp_path / "cold"))
    for day in days[:3]:
        cold.export_day(db, database_url, day, settings)
        assert cold.verify_day(db, day, settings).ok
    cold.drop_exported_partitions_before(db, days[3], settings)
    db.execute(
        "UPDATE cold_exports SET status = 'failed' WHERE project_id = %s AND day = %s AND dataset = 'events'",
        (project, days[0]),
    )
    first, last = days[0] - timedelta(days=2), days[-1] + timedelta(days=1)
    plan = plan_reads(db, project, first, last, settings)
    assert plan.version == data_version(db, project, first, last)
    assert ".c3" in plan.version  # three partitions gone
    for a, b in ((first, last), (days[2], days[6]), (days[4], days[4])):
        assert plan.stale(a, b) == raw_days(db, project, a, b)
        assert plan.without_raw(a, b) == days_without_raw(db, project, a, b)
    assert END.date() - timedelta(days=5) in plan.stale(first, last)
    assert plan.require_raw(days[1:6]) == require_raw(db, project, days[1:6], settings) == days[1:3]
    with pytest.raises(RawDataGone) as refused:
        plan.require_raw(days[:4])
    assert refused.value.days == [days[0]]
    without_cold = plan_reads(db, project, first, last)
    with pytest.raises(RawDataGone):
        without_cold.require_raw([days[2]])
    with pytest.raises(ValueError, match="outside the plan"):
        plan.stale(first - timedelta(days=1), last)
    built_at = {
        r[0]: r[1]
        for r in db.execute("SELECT day, built_at FROM aggregate_builds WHERE project_id = %s", (project,))
    }
    since = built_at[days[5]]
    assert plan.outdated(first, last, since) == sorted(
        d for d in days if d not in built_at or built_at[d] < since
    )


def test_a_cold_read_takes_its_days_verification_from_the_plan(db, database_url, tmp_path, monkeypatch):
    """The plan verified the cold days inside the snapshot; opening their Parquet must not ask the cold-tier
    catalogue again (warehouse/cold/reads.py `open_cold(verified=...)`), and reads the same rows."""
    tenant = make_tenant(db, "acme", "web")
    project = tenant["project_id"]
    config = GeneratorConfig(
        seed=7, end=END, days=6, total_events=600, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 20)],
    )  # fmt: skip
    land_rows(db, landing_rows(generate(config), {"t": (tenant["org_id"], project)}, received_at=END))
    days = sorted(r[0] for r in db.execute("SELECT day FROM landed_days WHERE project_id = %s", (project,)))
    settings = ColdSettings(url=str(tmp_path / "cold"))
    for day in days[:2]:
        cold.export_day(db, database_url, day, settings)
        assert cold.verify_day(db, day, settings).ok
    cold.drop_exported_partitions_before(db, days[2], settings)
    plan = plan_reads(db, project, days[0], days[-1], settings)
    in_cold = plan.require_raw(days[:3])
    assert in_cold == days[:2]
    count = "SELECT count(*) FROM events"
    with cold_reader(db, project, in_cold, settings) as duck:
        without_plan = duck.execute(count).fetchone()[0]
    asked = []
    catalogue = warehouse.cold.reads.cold_days
    monkeypatch.setattr(
        warehouse.cold.reads, "cold_days", lambda *a, **k: asked.append(a) or catalogue(*a, **k)
    )
    with cold_reader(db, project, in_cold, settings, plan) as duck:
        assert duck.execute(count).fetchone()[0] == without_plan > 0
    assert asked == []
