"""The cold tier through a real Dagster deployment: the daemon's sensor exports closed days on its own."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import dagster as dg
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from tests.fixtures.system import wait_until
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import rebuild_day

pytestmark = pytest.mark.slow


def test_daemon_exports_and_verifies_closed_days_one_cold_run_at_a_time(db, dagster_deployment):
    tenant = make_tenant(db)
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=3)
    config = GeneratorConfig(
        seed=4, end=end, days=3, total_events=1_500, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 50)],
    )  # fmt: skip
    rows = landing_rows(generate(config), {"t": (tenant["org_id"], tenant["project_id"])}, received_at=end)
    land_rows(db, rows)
    days = sorted({r[1].date() for r in rows})
    for day in days:
        rebuild_day(db, day)
    dagster_deployment.env["PULSEOPS_COLD__ENABLED"] = "true"
    dagster_deployment.start_daemon()

    def verified() -> bool:
        got = db.execute(
            "SELECT day, dataset, status FROM cold_exports WHERE project_id = %s", (tenant["project_id"],)
        ).fetchall()
        return {(d, ds) for d, ds, st in got if st == "verified"} == {
            (d, ds) for d in days for ds in ("events", "event_rollups", "daily_aggregates")
        }

    wait_until(verified, 240, "closed days exported and verified by the daemon", 1)
    cold_root = dagster_deployment.env["PULSEOPS_COLD__URL"]
    files = {p for (p,) in db.execute("SELECT path FROM cold_exports WHERE dataset = 'events'").fetchall()}
    assert len(files) == len(days)
    assert all((Path(cold_root) / p).is_file() for p in files)

    instance = dagster_deployment.instance()
    runs = instance.get_runs(dg.RunsFilter(job_name="cold_export_job"))
    assert {r.tags["dagster/partition"] for r in runs} == {d.isoformat() for d in days}
    assert all(r.tags["pulseops/queue"] == "cold" for r in runs)
    # never two cold runs at once (tag_concurrency_limits in dagster.yaml)
    spans = []
    for r in runs:
        rec = instance.get_run_record_by_id(r.run_id)
        if rec.start_time and rec.end_time:
            spans.append((rec.start_time, rec.end_time))
    spans.sort()
    assert len(spans) == len(days)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(spans))
