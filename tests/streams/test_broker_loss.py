"""The landing worker across broker restarts: it replaces itself when the broker goes away (streams/fence.py,
BrokerWatch) instead of letting librdkafka meet the new broker, which crashed it (SIGSEGV, exit -11) at most
restarts before."""

from __future__ import annotations

import threading
import time

import pytest

from pulseops.broker import RESTART_GAP_S
from pulseops.topics import ensure_topics
from streams.fence import BrokerWatch
from tests.faults.load import Load, assert_exact, settle
from tests.utils.tenants import make_tenant

RESTARTS = 5
LOST = "lost the connection to the broker"


def test_the_watch_fires_when_the_broker_dies_and_only_then(tansu_factory):
    """Idle and keepalives (answered by the broker) are not a loss; the broker's death is, at once."""
    tansu = tansu_factory().start()
    lost = threading.Event()
    watch = BrokerWatch(f"127.0.0.1:1,{tansu.bootstrap}", on_lost=lost.set, keepalive_s=0.1)
    assert watch.start(timeout=1)  # the first address refuses: the next one is watched
    time.sleep(1.0)  # ~10 keepalives
    assert not lost.is_set()
    started = time.monotonic()
    tansu.stop()
    assert lost.wait(2)
    assert time.monotonic() - started < 0.5

    tansu = tansu_factory(port=tansu.port).start()
    quiet = threading.Event()
    watch = BrokerWatch(tansu.bootstrap, on_lost=quiet.set)
    assert watch.start()
    watch.stop()  # stopping the watch is not a loss
    assert not quiet.is_set()
    assert not BrokerWatch("127.0.0.1:1", on_lost=quiet.set).start(timeout=1)


@pytest.mark.slow
def test_the_worker_survives_broker_restarts_and_loses_nothing(
    system_factory, tansu_factory, db, database_url
):
    """Restart the broker the way the keeper recycles it (pulseops/broker.py: stop, RESTART_GAP_S, start,
    topics) under a running worker and steady load. Before BrokerWatch the worker died with SIGSEGV at most
    restarts (3 of 3 in a small sustained run); now it replaces itself in place (exec: same pid, never an exit)
    at each one, and every acknowledged event lands once."""
    tenant = make_tenant(db)
    tansu = tansu_factory().start()
    system = system_factory(bootstrap=tansu.bootstrap)
    system.start_ingest(workers=2)
    worker = system.start_worker()
    log_path = system.log_path("worker")
    load = Load(system.url, tenant["ingest_key"], project_id=tenant["project_id"], rate=40).start()
    load.wait_for_acks(3_000)
    for i in range(RESTARTS):
        # let the worker (re)join and consume on this broker before it goes
        load.wait_for_acks(len(load.acknowledged) + 3_000, timeout=120)
        tansu.stop()
        time.sleep(RESTART_GAP_S)
        tansu = tansu_factory(port=tansu.port).start()
        ensure_topics(system.settings.kafka, timeout=10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and worker.poll() is None:
            time.sleep(0.2)
        assert worker.poll() is None, f"the worker exited with {worker.returncode} at restart {i + 1}"
    load.wait_for_acks(len(load.acknowledged) + 3_000, timeout=120)
    load.stop()
    acc = settle(load, database_url, tenant["project_id"], "broker restarts, worker watching")
    assert_exact(acc, load)
    assert worker.poll() is None
    text = log_path.read_text()
    # the worker's own lines: its overflow lander (streams-overflow-0) watches the broker too
    lost = [line for line in text.splitlines() if LOST in line and " streams-0[" in line]
    assert len(lost) == RESTARTS, lost
    assert "Segmentation fault" not in text
