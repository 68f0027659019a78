"""late_data_sensor evaluated against a real warehouse and Dagster instance (no daemon): what it requests, and
how its retry ledger paces failed runs. tests/orchestration/test_runs_cannot_get_lost.py drives the daemon."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from orchestration.assets.aggregates import aggregates
from orchestration.checks import checks
from orchestration.resources import SettingsResource, WarehouseResource
from orchestration.sensors import COVERS_TAG, late_data_sensor
from pulseops.settings import get_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import days_to_build, rebuild_day
from warehouse.metric_defs import MetricSpec, create_metric
from warehouse.runs import REBUILD, record_failure, run_failures

TODAY = datetime.now(UTC).date()


def _land(db, tenants: list[dict], end: datetime, days: int, n: int, seed: int) -> list[tuple]:
    config = GeneratorConfig(
        seed=seed, end=end, days=days, total_events=n, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec(f"t{i}", 1 / len(tenants), 50) for i in range(len(tenants))],
    )  # fmt: skip
    projects = {f"t{i}": (t["org_id"], t["project_id"]) for i, t in enumerate(tenants)}
    rows = landing_rows(generate(config), projects, received_at=end)
    land_rows(db, rows)
    return rows


def _midnight(days_ago: int) -> datetime:
    return datetime.combine(TODAY - timedelta(days=days_ago), datetime.min.time(), UTC)


def tick(database_url: str, instance: dg.DagsterInstance, cursor: str | None = None):
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
    ) as context:
        result = late_data_sensor(context)
        return result, context.cursor


def _days(request: dg.RunRequest) -> list[str]:
    return sorted(json.loads(request.tags[COVERS_TAG]))


def test_late_data_over_35_days_and_3_projects_is_one_run_that_fixes_them_all(db, database_url):
    tenants = [make_tenant(db, "acme", p) for p in ("web", "ios", "shop")]
    rows = _land(db, tenants, _midnight(2), 35, 7_000, seed=5)
    days = sorted({r[1].date() for r in rows})
    for day in days:
        rebuild_day(db, day)
    instance = dg.DagsterInstance.ephemeral()
    assert isinstance(tick(database_url, instance)[0], dg.SkipReason)

    late = _land(db, tenants, _midnight(2), 35, 600, seed=6)  # late events for every day and project
    late_days = sorted({r[1].date() for r in late})
    assert len(late_days) >= 30
    request, _ = tick(database_url, instance)
    assert isinstance(request, dg.RunRequest)
    assert _days(request) == [d.isoformat() for d in late_days]
    assert request.tags["dagster/asset_partition_range_start"] == late_days[0].isoformat()
    assert request.tags["dagster/asset_partition_range_end"] == late_days[-1].isoformat()
    assert request.tags["pulseops/reason"] == "late_data"
    # the run key names the exact landed versions: one more late event changes it
    again, _ = tick(database_url, instance)
    assert again.run_key == request.run_key
    _land(db, tenants[:1], _midnight(10), 1, 1, seed=7)
    assert tick(database_url, instance)[0].run_key != request.run_key

    # what the sensor requested, run as the daemon would run it: every day is correct afterwards
    result = dg.materialize(
        [aggregates, *checks],
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
        instance=instance,
        tags=dict(tick(database_url, instance)[0].tags),
        raise_on_error=False,
    )
    assert result.success
    assert days_to_build(db, TODAY - timedelta(days=60), TODAY) == []


def test_runs_are_bounded_and_the_open_day_waits_for_its_grace(db, database_url, monkeypatch):
    tenant = make_tenant(db)
    rows = _land(db, [tenant], datetime.now(UTC), 12, 1_200, seed=8)  # never built, today included
    days = sorted({r[1].date() for r in rows})
    assert TODAY in days
    monkeypatch.setenv("PULSEOPS_ORCHESTRATION__MAX_DAYS_PER_RUN", "5")
    monkeypatch.setenv("PULSEOPS_ORCHESTRATION__CLOSE_GRACE_S", str(24 * 3600))  # yesterday still in grace
    get_settings.cache_clear()
    try:
        request, _ = tick(database_url, dg.DagsterInstance.ephemeral())
        assert _days(request) == [d.isoformat() for d in days[:5]]
        assert request.tags["pulseops/reason"] == "new_data"
        # the whole backlog, run after run, never reaches the open day or the day in its grace period
        for day in days:
            if day < TODAY - timedelta(days=1):
                rebuild_day(db, day)
        assert isinstance(tick(database_url, dg.DagsterInstance.ephemeral())[0], dg.SkipReason)
    finally:
        get_settings.cache_clear()


def test_a_metric_definition_edit_rebuilds_the_days_it_affects(db, database_url):
    tenant, other = make_tenant(db, "acme", "web"), make_tenant(db, "globex", "shop")
    rows = _land(db, [tenant], _midnight(3), 4, 400, seed=9)
    _land(db, [other], _midnight(10), 2, 100, seed=10)
    for day in {r[1].date() for r in rows} | {TODAY - timedelta(days=11), TODAY - timedelta(days=12)}:
        rebuild_day(db, day)
    instance = dg.DagsterInstance.ephemeral()
    assert isinstance(tick(database_url, instance)[0], dg.SkipReason)
    create_metric(db, tenant["org_id"], tenant["project_id"], MetricSpec(name="views", aggregation="count"))
    request, _ = tick(database_url, instance)
    assert _days(request) == sorted({r[1].date().isoformat() for r in rows})  # not the other project's days
    assert request.tags["pulseops/reason"] == "definitions"


def test_a_failed_run_backs_off_then_retries_under_a_new_key_and_gives_up_after_the_last_attempt(
    db, database_url, monkeypatch
):
    tenant = make_tenant(db)
    rows = _land(db, [tenant], _midnight(3), 2, 100, seed=11)
    days = sorted({r[1].date() for r in rows})
    instance = dg.DagsterInstance.ephemeral()
    first, _ = tick(database_url, instance)
    covers = {d: k for d, k in ((d.day, d.data_key) for d in days_to_build(db, days[0], TODAY))}
    assert set(covers) == set(days)

    monkeypatch.setenv("PULSEOPS_ORCHESTRATION__RETRY_BACKOFF_S", "3600")
    get_settings.cache_clear()
    o = get_settings().orchestration
    record_failure(db, REBUILD, covers, "run-1", "boom", o.retry_backoff_s, 2)
    assert isinstance(tick(database_url, instance)[0], dg.SkipReason)  # backing off
    db.execute("UPDATE run_failures SET next_attempt_at = now() - interval '1 second'")
    retry, _ = tick(database_url, instance)
    assert _days(retry) == _days(first)
    assert retry.run_key != first.run_key and retry.tags["pulseops/attempt"] == "1"
    record_failure(db, REBUILD, covers, "run-1", "boom", o.retry_backoff_s, 2)  # the same run counts once
    assert {f.failures for f in run_failures(db, REBUILD)} == {1}
    record_failure(db, REBUILD, covers, "run-2", "boom again", o.retry_backoff_s, 2)
    assert all(f.given_up for f in run_failures(db, REBUILD))
    assert isinstance(tick(database_url, instance)[0], dg.SkipReason)
    # new data is a new key: tried again at once
    _land(db, [tenant], _midnight(3), 1, 5, seed=12)
    assert isinstance(tick(database_url, instance)[0], dg.RunRequest)
    get_settings.cache_clear()


@pytest.mark.parametrize("status", [dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.SUCCESS])
def test_finished_runs_that_left_their_days_stale_are_failures(db, database_url, status):
    tenant = make_tenant(db)
    _land(db, [tenant], _midnight(3), 2, 100, seed=13)
    instance = dg.DagsterInstance.ephemeral()
    request, cursor = tick(database_url, instance)
    run = dg.DagsterRun(job_name="refresh_aggregates_job", status=status, tags=dict(request.tags))
    instance.add_run(run)
    result, cursor = tick(database_url, instance, cursor)
    failures = run_failures(db, REBUILD)
    assert {f.day.isoformat() for f in failures} == set(_days(request))
    assert {f.last_run_id for f in failures} == {run.run_id}
    assert isinstance(result, dg.SkipReason)  # backing off


def test_a_running_run_holds_only_the_days_it_has_not_rebuilt_yet(db, database_url):
    tenant = make_tenant(db)
    rows = _land(db, [tenant], _midnight(3), 2, 100, seed=14)
    first, second = sorted({r[1].date() for r in rows})
    instance = dg.DagsterInstance.ephemeral()
    request, _ = tick(database_url, instance)
    run = dg.DagsterRun(
        job_name="refresh_aggregates_job", status=dg.DagsterRunStatus.STARTED, tags=dict(request.tags)
    )
    instance.add_run(run)
    assert isinstance(tick(database_url, instance)[0], dg.SkipReason)  # both days are the run's
    rebuild_day(db, first, run_id=run.run_id)  # the run is past its first day (its checks come last)
    # late data into both days: the rebuilt one gets a run at once, the other still waits for the run
    for day, seed in ((first, 15), (second, 16)):
        late = _land(db, [tenant], datetime.combine(day, datetime.max.time(), UTC), 1, 20, seed=seed)
        assert {r[1].date() for r in late} == {day}
    again, _ = tick(database_url, instance)
    assert isinstance(again, dg.RunRequest)
    assert _days(again) == [first.isoformat()]
