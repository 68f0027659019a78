"""Late data and backfills through a real Dagster deployment (daemon, webserver, PostgreSQL storage)."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import dagster as dg
import httpx
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from tests.fixtures.system import wait_until
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import rebuild_day, stale_days

pytestmark = pytest.mark.slow


def _land_days(db, end: datetime, days: int, n: int, seed: int, tenant: dict) -> list[tuple]:
    config = GeneratorConfig(
        seed=seed, end=end, days=days, total_events=n, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 200)],
    )  # fmt: skip
    rows = landing_rows(generate(config), {"t": (tenant["org_id"], tenant["project_id"])}, received_at=end)
    land_rows(db, rows)
    return rows


def _counts_match_raw(db, days) -> bool:
    for day in days:
        raw = db.execute(
            "SELECT count(*) FROM events WHERE (event_time AT TIME ZONE 'UTC')::date = %s", (day,)
        ).fetchone()[0]
        agg = db.execute(
            "SELECT coalesce(sum(value), 0) FROM daily_aggregates WHERE date = %s AND metric = 'events' "
            "AND dimensions = '{}'",
            (day,),
        ).fetchone()[0]
        if raw != agg:
            return False
    return True


def test_late_events_trigger_rebuilds_of_exactly_the_affected_days(db, dagster_deployment):
    tenant = make_tenant(db)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=5)
    rows = _land_days(db, end, 10, 8_000, seed=21, tenant=tenant)
    days = sorted({r[1].date() for r in rows})
    for day in days:
        rebuild_day(db, day)
    assert stale_days(db, include_unbuilt_since=datetime.now(UTC).date() - timedelta(days=1)) == []
    dagster_deployment.start_daemon()
    time.sleep(15)  # daemon up and the sensor ticking with nothing to do

    late_days = [days[1], days[4], days[7]]
    late_rows = []
    for i, day in enumerate(late_days):
        late_end = datetime.combine(day + timedelta(days=1), datetime.min.time(), UTC)
        late_rows += _land_days(db, late_end, 1, 300, seed=100 + i, tenant=tenant)
    landed_at = time.monotonic()
    landed_wall = time.time()
    assert {s.day for s in stale_days(db)} == set(late_days)
    assert not _counts_match_raw(db, late_days)

    wait_until(lambda: not stale_days(db) and _counts_match_raw(db, late_days), 120, "late days rebuilt", 0.5)
    corrected_after = time.monotonic() - landed_at

    instance = dagster_deployment.instance()

    def finished_runs():
        runs = instance.get_runs(dg.RunsFilter(job_name="refresh_aggregates_job"))
        return runs if runs and all(r.is_finished for r in runs) else None

    runs = wait_until(finished_runs, 120, "rebuild runs finished (checks included)", 1)
    failed = [r for r in runs if r.status != dg.DagsterRunStatus.SUCCESS]
    for r in failed:
        for e in instance.all_logs(r.run_id):
            if e.is_failure or (e.dagster_event and "CHECK" in str(e.dagster_event.event_type_value)):
                print(e.message or e.dagster_event)
    # coalesced: each late day rebuilt by exactly one run, and the three days by one run (two if a sensor tick
    # fell between the landings)
    covered = Counter(d for r in runs for d in json.loads(r.tags["pulseops/covers"]))
    assert covered == Counter(str(d) for d in late_days)
    assert 1 <= len(runs) <= 2
    assert all(r.tags.get("pulseops/reason") == "late_data" for r in runs)
    assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert _counts_match_raw(db, days)
    print(f"late event landed -> corrected aggregates in {corrected_after:.1f}s")
    for rec in instance.get_run_records(dg.RunsFilter(job_name="refresh_aggregates_job")):
        print(
            f"  {rec.dagster_run.tags['pulseops/days']}: requested +{rec.create_timestamp.timestamp() - landed_wall:.1f}s, "
            f"started +{(rec.start_time or 0) - landed_wall:.1f}s, ended +{(rec.end_time or 0) - landed_wall:.1f}s"
        )


LAUNCH_BACKFILL = """
mutation($partitions: [String!]!) {
  launchPartitionBackfill(backfillParams: {
    partitionNames: $partitions,
    assetSelection: [{path: ["event_rollups"]}, {path: ["user_activity"]}, {path: ["daily_aggregates"]}]
  }) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on UnauthorizedError { message }
  }
}
"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
  }
}
"""


def test_backfill_launched_through_the_webserver_completes(db, dagster_deployment):
    tenant = make_tenant(db)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=10)
    rows = _land_days(db, end, 5, 4_000, seed=31, tenant=tenant)
    days = sorted({r[1].date() for r in rows})
    dagster_deployment.start_daemon()
    url = dagster_deployment.start_webserver()
    response = httpx.post(
        f"{url}/graphql",
        json={"query": LAUNCH_BACKFILL, "variables": {"partitions": [str(d) for d in days]}},
        timeout=30,
    ).json()
    launched = response["data"]["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    backfill_id = launched["backfillId"]

    def status() -> str:
        r = httpx.post(
            f"{url}/graphql", json={"query": BACKFILL_STATUS, "variables": {"id": backfill_id}}, timeout=10
        ).json()
        return r["data"]["partitionBackfillOrError"]["status"]

    wait_until(
        lambda: status() in ("COMPLETED", "COMPLETED_SUCCESS", "FAILED", "CANCELED"), 180, "backfill done", 2
    )
    assert status() in ("COMPLETED", "COMPLETED_SUCCESS")
    assert _counts_match_raw(db, days)
    runs = dagster_deployment.instance().get_runs(dg.RunsFilter(tags={"dagster/backfill": backfill_id}))
    assert 1 <= len(runs) <= 2, "a single-run backfill policy should need one run (two at most)"
