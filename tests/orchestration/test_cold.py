"""The cold tier through Dagster: export asset + parity checks, the export sensor, retention, cold rebuilds."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from orchestration.assets.aggregates import aggregates
from orchestration.assets.cold import cold_export
from orchestration.checks.cold import cold_aggregates_parity, cold_events_parity
from orchestration.jobs import partition_maintenance_job
from orchestration.resources import SettingsResource, WarehouseResource
from orchestration.sensors import cold_export_sensor
from pulseops.settings import get_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.aggregates import rebuild_day
from warehouse.partitions import existing_partition_days

END = datetime(2026, 5, 12, tzinfo=UTC)  # far past 90 days of raw retention


@pytest.fixture
def cold_url(tmp_path: Path, monkeypatch) -> Path:
    url = tmp_path / "cold"
    monkeypatch.setenv("PULSEOPS_COLD__URL", str(url))
    get_settings.cache_clear()
    yield url
    get_settings.cache_clear()


@pytest.fixture
def landed(db, cold_url):
    tenants = {"a": make_tenant(db, "acme", "web"), "b": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=3, end=END, days=3, total_events=3_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("a", 0.6, 100), TenantSpec("b", 0.4, 40)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    land_rows(db, rows)
    days = sorted({r[1].date() for r in rows})
    for day in days:
        rebuild_day(db, day)
    return rows, projects, days


def _run(database_url: str, first: date, last: date, *defs, instance=None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        list(defs),
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
        instance=instance or dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
        raise_on_error=False,
    )


def _check_only(database_url: str, day: date, check) -> dg.ExecuteInProcessResult:
    """The check alone on the day's current files (as re-running it from the UI does)."""
    return dg.materialize(
        [cold_export, check],
        selection=dg.AssetSelection.checks(check),
        tags={"dagster/partition": day.isoformat()},
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
        instance=dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def _retention(db, cutoff: date, settings, days: list[date]) -> cold.Retention:
    """Retention, reported for this test's days only (earlier tests leave empty partitions of their days)."""
    r = cold.drop_exported_partitions_before(db, cutoff, settings)
    return cold.Retention(
        [d for d in r.dropped if d in days], {d: why for d, why in r.kept.items() if d in days}
    )


def _check_results(result: dg.ExecuteInProcessResult) -> dict[tuple[str, str], bool]:
    return {(e.check_name, e.partition): e.passed for e in result.get_asset_check_evaluations()}


def test_export_asset_and_parity_checks_over_a_range(db, database_url, landed, cold_url):
    rows, _projects, days = landed
    result = _run(database_url, days[0], days[-1], cold_export, cold_events_parity, cold_aggregates_parity)
    assert result.success
    checks = _check_results(result)
    assert checks == {
        (name, d.isoformat()): True for name in ("cold_events_parity", "cold_aggregates_parity") for d in days
    }
    mats = {
        m.asset_key.to_user_string(): m.metadata
        for m in result.asset_materializations_for_node("cold_export")
    }
    assert mats["cold_events"]["dagster/row_count"].value == len(rows)
    assert sorted(p.parent.parent.name for p in cold_url.glob("events/*/*/events.parquet")) == sorted(
        f"day={d}" for d in days for _ in range(2)
    )
    assert db.execute("SELECT DISTINCT status FROM cold_exports").fetchall() == [("verified",)]


def test_a_corrupted_file_fails_the_check_and_retention_keeps_that_day(db, database_url, landed, cold_url):
    _rows, projects, days = landed
    assert _run(database_url, days[0], days[-1], cold_export, cold_events_parity).success
    _org, project = projects["a"]
    victim = cold_url / cold.relative_path(cold.EVENTS, days[1], project)
    victim.write_bytes(victim.read_bytes()[:-64])
    check = _check_only(database_url, days[1], cold_events_parity)
    assert _check_results(check) == {("cold_events_parity", days[1].isoformat()): False}

    instance = dg.DagsterInstance.ephemeral()
    result = partition_maintenance_job.execute_in_process(
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
        instance=instance,
    )
    assert result.success
    remaining = existing_partition_days(db)
    assert days[0] not in remaining and days[2] not in remaining
    assert days[1] in remaining
    logs = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert f"{days[1]}: raw partition kept past retention" in logs and "failed" in logs


def test_sensor_requests_unexported_closed_days_then_nothing(db, database_url, landed, cold_url, monkeypatch):
    _rows, projects, days = landed
    instance = dg.DagsterInstance.ephemeral()

    def tick():
        with dg.build_sensor_context(
            instance=instance,
            resources={
                "warehouse": WarehouseResource(database_url=database_url),
                "pulseops": SettingsResource(),
            },
        ) as context:
            return cold_export_sensor(context)

    monkeypatch.setenv("PULSEOPS_COLD__ENABLED", "false")
    get_settings.cache_clear()
    assert isinstance(tick(), dg.SkipReason)
    monkeypatch.delenv("PULSEOPS_COLD__ENABLED")
    get_settings.cache_clear()
    requests = tick()
    assert [r.partition_key for r in requests] == [d.isoformat() for d in days]
    assert {r.tags["pulseops/queue"] for r in requests} == {"cold"}
    assert len({r.run_key for r in requests}) == len(days)
    assert _run(
        database_url, days[0], days[-1], cold_export, cold_events_parity, cold_aggregates_parity
    ).success
    assert isinstance(tick(), dg.SkipReason)
    # a late event into an exported day makes it stale again, with a new run key
    org, project = projects["b"]
    land_rows(db, [(project, datetime.combine(days[1], datetime.min.time(), UTC), uuid.uuid4(), org, "late", "u",
                    END, "{}")])  # fmt: skip
    again = tick()
    assert [r.partition_key for r in again] == [days[1].isoformat()]
    assert again[0].run_key not in {r.run_key for r in requests}


def test_aggregates_asset_rebuilds_a_dropped_day_from_parquet(db, database_url, landed, cold_url):
    _rows, _projects, days = landed
    day = days[1]
    before = db.execute(
        "SELECT project_id, metric, dimensions::text, value, events FROM daily_aggregates WHERE date = %s "
        "ORDER BY 1, 2, 3",
        (day,),
    ).fetchall()
    assert _run(database_url, day, day, cold_export, cold_events_parity).success
    assert _retention(db, day + timedelta(days=1), get_settings().cold, days).dropped == [day]
    db.execute("DELETE FROM daily_aggregates WHERE date = %s", (day,))
    instance = dg.DagsterInstance.ephemeral()
    result = _run(database_url, day, day, aggregates, instance=instance)
    assert result.success
    logs = [e.user_message for e in instance.all_logs(result.run_id)]
    assert any("rebuilt from the cold tier" in m for m in logs)
    after = db.execute(
        "SELECT project_id, metric, dimensions::text, value, events FROM daily_aggregates WHERE date = %s "
        "ORDER BY 1, 2, 3",
        (day,),
    ).fetchall()
    assert after == before and before
