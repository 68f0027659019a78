"""Runs that cannot get lost, through real Dagster deployments (daemon, code server, PostgreSQL storage): a
rebuild or export run killed or failed mid-way is retried and completes without any new data, and two
deployments on one PostgreSQL server run side by side without skipping each other's days."""

from __future__ import annotations

import contextlib
import os
import signal
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops import services
from pulseops.settings import Settings
from tests.fixtures.dagster import Dagster
from tests.fixtures.postgres import create_database, drop_database
from tests.fixtures.system import wait_until
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import _LOCK_CLASS, days_to_build, rebuild_day
from warehouse.db import ensure_database
from warehouse.migrate import upgrade
from warehouse.runs import run_failures

pytestmark = pytest.mark.slow

TODAY = datetime.now(UTC).date()
RETRY = {"PULSEOPS_ORCHESTRATION__RETRY_BACKOFF_S": "1"}


def _land(db, tenant: dict, days: int, n: int, seed: int) -> list[date]:
    end = datetime.combine(TODAY - timedelta(days=3), datetime.min.time(), UTC)
    config = GeneratorConfig(
        seed=seed, end=end, days=days, total_events=n, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 50)],
    )  # fmt: skip
    rows = landing_rows(generate(config), {"t": (tenant["org_id"], tenant["project_id"])}, received_at=end)
    land_rows(db, rows)
    return sorted({r[1].date() for r in rows})


def _landed(db) -> list[tuple]:
    return db.execute("SELECT project_id, day, version FROM landed_days ORDER BY 1, 2").fetchall()


def _run_workers(home: Path) -> list[int]:
    """Run worker processes of this deployment: the code server's forks of its run template
    (orchestration/run_workers.py), or children it spawned per run; not the template itself."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError):
            cmd = (entry / "cmdline").read_bytes()
            if f"DAGSTER_HOME={home}".encode() not in (entry / "environ").read_bytes():
                continue
            ppid = (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
            if (
                b"spawn_main" in cmd
                or b"multiprocessing.forkserver" in Path(f"/proc/{ppid}/cmdline").read_bytes()
            ):
                pids.append(int(entry.name))
    return pids


def _waiting_backend(db, database_url: str, kind: str) -> int | None:
    """pid of a backend of the warehouse database waiting on a lock of `kind` (advisory / relation)."""
    row = db.execute(
        "SELECT l.pid FROM pg_locks l JOIN pg_stat_activity a USING (pid) "
        "WHERE NOT l.granted AND l.locktype = %s AND a.datname = %s LIMIT 1",
        (kind, database_url.rsplit("/", 1)[1]),
    ).fetchone()
    return row[0] if row else None


def _interrupt(how: str, dagster: Dagster, db, database_url: str, kind: str) -> None:
    backend = wait_until(lambda: _waiting_backend(db, database_url, kind), 120, "a run blocked mid-way", 0.5)
    if how == "killed":
        workers = wait_until(lambda: _run_workers(dagster.home), 10, "the run worker process")
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
    else:  # the run's database connection dies under it: the run fails with an error
        db.execute("SELECT pg_terminate_backend(%s)", (backend,))


def _runs(dagster: Dagster, job: str) -> list[dg.DagsterRun]:
    return sorted(
        dagster.instance().get_runs(dg.RunsFilter(job_name=job)),
        key=lambda r: int(r.tags["pulseops/attempt"]),
    )


@pytest.mark.parametrize("how", ["killed", "failed"])
def test_a_rebuild_run_killed_or_failed_midway_is_retried_without_new_data(
    db, database_url, dagster_deployment, how
):
    tenant = make_tenant(db)
    days = _land(db, tenant, 3, 900, seed=41)
    before = _landed(db)
    dagster_deployment.env.update(RETRY)
    with psycopg.connect(database_url, autocommit=True) as blocker:
        # the run rebuilds the days oldest first, one transaction each, and waits on the second day's lock
        blocker.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, days[1].toordinal()))
        dagster_deployment.start_daemon()
        _interrupt(how, dagster_deployment, db, database_url, "advisory")
    wait_until(lambda: not days_to_build(db, days[0], TODAY), 180, "every day built by a retry", 1)
    wait_until(lambda: not run_failures(db), 60, "the retry ledger cleared by the successful run", 1)
    assert _landed(db) == before  # no new data was needed
    runs = _runs(dagster_deployment, "refresh_aggregates_job")
    assert runs[0].status == dg.DagsterRunStatus.FAILURE
    assert runs[-1].status == dg.DagsterRunStatus.SUCCESS and runs[-1].tags["pulseops/attempt"] == "1"
    assert days[1].isoformat() in runs[-1].tags["pulseops/days"]


@pytest.mark.parametrize("how", ["killed", "failed"])
def test_a_cold_export_killed_or_failed_midway_is_retried_without_new_data(
    db, database_url, dagster_deployment, how
):
    tenant = make_tenant(db)
    days = _land(db, tenant, 2, 600, seed=42)
    for day in days:
        rebuild_day(db, day)
    before = _landed(db)
    dagster_deployment.env.update({**RETRY, "PULSEOPS_COLD__ENABLED": "true"})
    with psycopg.connect(database_url) as blocker:
        # the export reads the day's raw partition; the cold sensor never does, so it still requests the run
        blocker.execute(f"LOCK TABLE events_p{days[0]:%Y%m%d} IN ACCESS EXCLUSIVE MODE")
        dagster_deployment.start_daemon()
        _interrupt(how, dagster_deployment, db, database_url, "relation")
        blocker.rollback()

    def exported() -> bool:
        got = db.execute("SELECT day, dataset, status FROM cold_exports").fetchall()
        return {(d, ds) for d, ds, st in got if st == "verified"} == {
            (d, ds) for d in days for ds in ("events", "event_rollups", "daily_aggregates")
        }

    wait_until(exported, 240, "both days exported and verified after the retry", 2)
    assert _landed(db) == before
    runs = [
        r for r in _runs(dagster_deployment, "cold_export_job") if r.tags["dagster/partition"] == str(days[0])
    ]
    assert runs[0].status == dg.DagsterRunStatus.FAILURE
    assert runs[-1].status == dg.DagsterRunStatus.SUCCESS and runs[-1].tags["pulseops/attempt"] == "1"


def test_two_deployments_on_one_server_do_not_skip_each_others_days(
    db, database_url, dagster_deployment, tmp_path
):
    """The same data in two warehouses means the same run keys: with one shared Dagster instance the second
    deployment's sensor would skip every day as already done. Each deployment has its own (<db>_dagster)."""
    other_url = create_database("pulseops_test_other")
    other_storage = services.dagster_storage_url(other_url)
    deployments: list[Dagster] = []
    try:
        upgrade(other_url)
        deployments = []
        for url, name in ((database_url, "a"), (other_url, "b")):
            storage = services.dagster_storage_url(url)
            ensure_database(storage)
            d = Dagster(tmp_path / f"home_{name}", dict(dagster_deployment.env))
            services.write_dagster_instance(
                Settings(db={"url": url}, orchestration={"dagster_home": str(d.home)}), storage
            )
            d.env.update({"DAGSTER_HOME": str(d.home), "PULSEOPS_DB__URL": url})
            deployments.append(d)
        assert services.dagster_storage_url(database_url) != other_storage
        with psycopg.connect(other_url, autocommit=True) as other:
            days = []
            for conn in (db, other):
                tenant = make_tenant(conn)
                days = _land(
                    conn, tenant, 4, 800, seed=43
                )  # same seed: same days, same versions, same run keys
            for d in deployments:
                d.start_daemon()
            for conn in (db, other):
                wait_until(
                    lambda c=conn: not days_to_build(c, days[0], TODAY), 180, "both warehouses built", 1
                )
        keys = [
            {
                r.tags["dagster/run_key"]
                for r in d.instance().get_runs(dg.RunsFilter(job_name="refresh_aggregates_job"))
            }
            for d in deployments
        ]
        assert keys[0] and keys[0] == keys[1]  # identical keys, and neither deployment skipped them
    finally:
        for d in deployments:
            d.stop()
        drop_database(other_url)
        for url in (database_url, other_url):
            drop_database(services.dagster_storage_url(url))
