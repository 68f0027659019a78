"""With an overflow topic, `python -m streams` lands the raw topic and starts `python -m streams --overflow`
beside itself for the overflow topic (streams/__main__.py): a hot project's events land there, in their own
consumer group, every one of them once; the lander is started again if it dies and goes when the worker goes."""

from __future__ import annotations

import signal
import time
import uuid

import httpx
import psutil
import psycopg
from confluent_kafka.admin import AdminClient

from tests.fixtures.system import wait_until
from tests.utils.tenants import make_tenant, new_event


def _landed(db: psycopg.Connection, tenant: dict) -> int:
    sql = "SELECT count(*) FROM event_ids WHERE project_id = %s"
    return db.execute(sql, (tenant["project_id"],)).fetchone()[0]


def _committed(servers: str, group: str, topic: str) -> int:
    from confluent_kafka import ConsumerGroupTopicPartitions

    admin = AdminClient({"bootstrap.servers": servers})
    result = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)], request_timeout=5)
    parts = result[group].result(5).topic_partitions
    return sum(tp.offset for tp in parts if tp.topic == topic and tp.error is None and tp.offset > 0)


def _landers(worker_pid: int) -> list[psutil.Process]:
    """The worker's live overflow landers (a killed one is a zombie until the worker reaps it)."""
    out = []
    for child in psutil.Process(worker_pid).children():
        try:
            if "--overflow" in child.cmdline() and child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:  # gone, or a zombie
            continue
    return out


def test_hot_events_land_through_the_overflow_lander_which_lives_and_dies_with_its_worker(
    db: psycopg.Connection, system_factory
) -> None:
    system = system_factory(hot_project_events_per_s=150)
    k = system.settings.kafka
    k.topic_overflow = f"events-overflow-{uuid.uuid4().hex[:8]}"
    hot, quiet = make_tenant(db, "hotco", "web"), make_tenant(db, "quietco", "web")
    system.start_ingest()
    worker = system.start_worker()
    wait_until(lambda: len(_landers(worker.pid)) == 1, 30, "the overflow lander started")
    first = _landers(worker.pid)[0]

    def send(rounds: int, tag: str) -> int:
        sent = 0
        with httpx.Client(base_url=system.url, timeout=30) as client:
            for i in range(rounds):
                batch = [new_event(distinct_id=f"hot-{tag}-{i}-{j}") for j in range(100)]
                r = client.post("/v1/batch", json={"batch": batch}, headers={"X-API-Key": hot["ingest_key"]})
                assert r.status_code == 202, r.text
                r = client.post(
                    "/v1/events",
                    json=new_event(distinct_id=f"q-{tag}-{i}"),
                    headers={"X-API-Key": quiet["ingest_key"]},
                )
                assert r.status_code == 202, r.text
                sent += 100
        return sent

    hot_sent = send(5, "a")  # hot from the second batch on: 400 events on the overflow topic
    wait_until(lambda: _landed(db, hot) == hot_sent and _landed(db, quiet) == 5, 60, "all landed")
    wait_until(
        lambda: _committed(k.servers, k.overflow_group, k.topic_overflow) >= 4, 30, "overflow committed"
    )

    first.send_signal(signal.SIGKILL)  # the lander dies on its own: started again, and still lands
    wait_until(lambda: len(_landers(worker.pid)) == 1, 30, "the lander restarted")
    assert _landers(worker.pid)[0].pid != first.pid
    hot_sent += send(3, "b")
    wait_until(lambda: _landed(db, hot) == hot_sent and _landed(db, quiet) == 8, 60, "all landed again")
    counts = db.execute(
        "SELECT count(*), count(DISTINCT event_id) FROM events WHERE project_id = %s", (hot["project_id"],)
    ).fetchone()
    assert counts == (hot_sent, hot_sent)  # each hot event once

    lander = _landers(worker.pid)[0]
    system.kill_worker(worker)  # SIGKILL: no shutdown code runs; the kernel signals the lander
    deadline = time.monotonic() + 30
    while lander.is_running() and lander.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not lander.is_running() or lander.status() == psutil.STATUS_ZOMBIE, "lander outlived its worker"


def test_a_lander_replaced_after_a_broker_change_exits_for_its_worker_to_start_it_again() -> None:
    """An exec from the broker watch's thread would drop the parent-death signal (streams/fence.py): the lander
    exits with OverflowLander.REPLACED instead, and a failing hook does not keep the process on the old broker."""
    import subprocess
    import sys

    from streams.__main__ import OverflowLander

    code = (
        "import streams.fence as f; f.EXIT_TO_RESTART = %d; "
        "f.BEFORE_RESTART.append(lambda: 1 / 0); f.restart_worker()" % OverflowLander.REPLACED
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert r.returncode == OverflowLander.REPLACED, r.stderr
    assert b"before-restart hook failed" in r.stderr
