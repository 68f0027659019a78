"""End to end over real processes: HTTP ingest -> Tansu -> landing workers -> PostgreSQL.

Every event that got a 202 must land exactly once, also when a worker is SIGKILLed mid-run and when
PostgreSQL restarts during landing.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest

from benchmarks.generator import GeneratorConfig, GroundTruth, generate, ground_truth_for, send_http_sync
from tests.fixtures.system import landed_count, wait_until
from tests.utils.tenants import make_tenant

pytestmark = pytest.mark.slow

TENANTS = (("acme", "web", "hot"), ("acme", "app", "medium"), ("globex", "shop", "quiet"))


def _tenants(db: psycopg.Connection) -> tuple[dict[str, str], dict[str, str]]:
    """tenant name -> ingest key, tenant name -> project id."""
    keys, projects = {}, {}
    for org, project, tier in TENANTS:
        t = make_tenant(db, org, project)
        keys[tier] = t["ingest_key"]
        projects[tier] = str(t["project_id"])
    return keys, projects


def _workload(n: int, seed: int) -> tuple[list, GroundTruth]:
    events = list(
        generate(GeneratorConfig(seed=seed, total_events=n, days=30, late_ratio=0.05, duplicate_ratio=0.01))
    )
    return events, ground_truth_for(events)


def _assert_landed_exactly(database_url: str, truth: GroundTruth, projects: dict[str, str]) -> None:
    by_project = {v: k for k, v in projects.items()}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            """
            SELECT project_id::text, (event_time AT TIME ZONE 'UTC')::date::text, event_name, count(*),
                   count(DISTINCT event_id)
            FROM events GROUP BY 1, 2, 3
            """
        ).fetchall()
        users = conn.execute(
            """
            SELECT project_id::text, (event_time AT TIME ZONE 'UTC')::date::text, count(DISTINCT distinct_id)
            FROM events GROUP BY 1, 2
            """
        ).fetchall()
    landed = Counter()
    for project, day, name, n, distinct in rows:
        assert n == distinct, f"duplicate event_id landed in {project} {day} {name}"
        landed[(by_project[project], day, name)] += n
    assert dict(landed) == dict(truth.event_counts)
    assert {(by_project[p], d): u for p, d, u in users} == {
        k: truth.unique_users(*k) for k in truth.day_totals
    }


def _send_in_background(events, url, keys, reports):
    def run():
        reports.append(send_http_sync(events, url, keys, batch_size=500, concurrency=4))

    t = threading.Thread(target=run)
    t.start()
    return t


def test_accepted_events_land_exactly_once_with_two_workers(system_factory, db, database_url):
    keys, projects = _tenants(db)
    events, truth = _workload(50_000, seed=1)
    assert truth.duplicates > 300
    system = system_factory()
    system.start_ingest(workers=2)
    system.start_worker()
    system.start_worker()
    report = send_http_sync(events, system.url, keys, batch_size=500, concurrency=4)
    assert report.accepted == len(events), report
    wait_until(lambda: landed_count(database_url) >= truth.total, 120, "all events landed")
    _assert_landed_exactly(database_url, truth, projects)
    with psycopg.connect(database_url) as conn:
        late = conn.execute(
            "SELECT count(*) FROM events WHERE received_at - event_time > interval '1 hour'"
        ).fetchone()
        assert late[0] > 0.04 * truth.total
        days = conn.execute("SELECT sum(events) FROM landed_days").fetchone()[0]
        assert days == truth.total


def test_worker_sigkilled_mid_run_loses_and_duplicates_nothing(system_factory, db, database_url):
    keys, projects = _tenants(db)
    events, truth = _workload(50_000, seed=2)
    system = system_factory()
    system.start_ingest(workers=2)
    worker = system.start_worker()
    reports: list = []
    sender = _send_in_background(events, system.url, keys, reports)
    wait_until(lambda: landed_count(database_url) > 5_000, 60, "landing under way", interval=0.05)
    system.kill_worker(worker)
    killed_at = landed_count(database_url)
    sender.join()
    assert reports[0].accepted == len(events), reports[0]
    assert killed_at < truth.total, "worker was killed after everything had landed: test proves nothing"
    system.start_worker()
    wait_until(lambda: landed_count(database_url) >= truth.total, 120, "all events landed after restart")
    _assert_landed_exactly(database_url, truth, projects)


PG_CTL = shutil.which("pg_ctlcluster")


@pytest.mark.skipif(
    PG_CTL is None or not Path("/etc/postgresql").exists(), reason="needs a local pg_ctlcluster"
)
def test_postgres_restart_during_landing_loses_nothing(system_factory, db, database_url):
    keys, projects = _tenants(db)
    events, truth = _workload(30_000, seed=3)
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    reports: list = []
    sender = _send_in_background(events, system.url, keys, reports)
    wait_until(lambda: landed_count(database_url) > 2_000, 60, "landing under way", interval=0.05)
    db.close()
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    restarted_at = datetime.now(UTC)
    subprocess.run(
        [PG_CTL, "--skip-systemctl-redirect", version, "main", "restart", "-m", "fast"],
        check=True,
        timeout=60,
    )
    sender.join()
    assert reports[0].accepted == len(events), reports[0]
    wait_until(lambda: landed_count(database_url) >= truth.total, 120, "all events landed after restart")
    _assert_landed_exactly(database_url, truth, projects)
    with psycopg.connect(database_url) as conn:
        after = conn.execute("SELECT count(*) FROM events WHERE landed_at > %s", (restarted_at,)).fetchone()[
            0
        ]
    assert after > 0, "nothing landed after the restart: the restart did not interrupt landing"


def test_poison_messages_go_to_the_dead_letter_topic_and_table_while_the_worker_goes_on(
    system_factory, db, database_url
):
    from confluent_kafka import Consumer, Producer

    tenant = make_tenant(db)
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    k = system.settings.kafka
    producer = Producer({"bootstrap.servers": k.servers})
    poison = [b"{not json", b'{"event": "x"}', b"\xff\xfe binary", b'{"v": 1, "org_id": "nope"}']
    for value in poison:
        producer.produce(k.topic_raw, value, key=b"poison")
    producer.flush(10)
    events = list(generate(GeneratorConfig(seed=5, total_events=2_000, days=2, tenants=_one_tenant())))
    truth = ground_truth_for(events)
    report = send_http_sync(events, system.url, {"solo": tenant["ingest_key"]})
    assert report.accepted == 2_000
    wait_until(lambda: landed_count(database_url) >= truth.total, 60, "valid events landed")
    assert landed_count(database_url) == truth.total
    with psycopg.connect(database_url) as conn:
        dead = wait_until(
            lambda: (
                conn.execute("SELECT reason, payload FROM dead_letters ORDER BY id").fetchall()
                if conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0] >= len(poison)
                else None
            ),
            30,
            "dead letters recorded",
        )
    assert sorted(bytes(p) for _, p in dead) == sorted(poison)
    assert {r for r, _ in dead} <= {"invalid_json", "schema_violation"}
    consumer = Consumer(
        {
            "bootstrap.servers": k.servers,
            "group.id": f"dlq-check-{k.topic_dlq}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([k.topic_dlq])
    seen: list[tuple[bytes, dict]] = []
    deadline = time.monotonic() + 30
    while len(seen) < len(poison) and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            seen.append((msg.value(), dict(msg.headers())))
    consumer.close()
    assert sorted(v for v, _ in seen) == sorted(poison)
    assert all(h["pulseops.dlq.reason"] in (b"invalid_json", b"schema_violation") for _, h in seen)


def _one_tenant():
    from benchmarks.generator import TenantSpec

    return [TenantSpec("solo", 1.0, 50)]
