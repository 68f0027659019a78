"""The embedded broker's keeper (pulseops/broker.py) against a real Tansu: it restarts the broker to free its
memory only when the landing group committed (nearly) everything, never drops records nothing vouches for,
and brings a dead broker back with its topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from benchmarks.harness import free_port, wait_for
from pulseops.broker import EmbeddedBroker, Keeper, landing_state, rss_bytes
from pulseops.pressure import PressureGauge
from pulseops.settings import KafkaSettings, Settings, SpoolSettings

ROOT = Path(__file__).resolve().parents[2]
PARTITIONS = 3


def _settings(
    port: int,
    *,
    rss: int = 1,
    records: int = 0,
    batches: int = 0,
    unlanded: int = 0,
    spool: bool = True,
    overflow: bool = False,
) -> Settings:
    suffix = uuid.uuid4().hex[:6]
    return Settings(
        state_dir=str(ROOT / "test-output" / "state" / f"keeper-{suffix}"),
        kafka=KafkaSettings(
            bootstrap=f"127.0.0.1:{port}",
            topic_raw=f"raw-{suffix}",
            topic_dlq=f"dlq-{suffix}",
            consumer_group=f"landing-{suffix}",
            partitions=PARTITIONS,
            topic_overflow=f"overflow-{suffix}" if overflow else "",
            overflow_partitions=PARTITIONS,
            embedded_recycle_rss_bytes=rss,
            embedded_recycle_records=records,
            embedded_recycle_batches=batches,
            embedded_recycle_max_unlanded_bytes=unlanded,
        ),
        spool=SpoolSettings(enabled=spool),
    )


@pytest.fixture
def keeper_for() -> Iterator:
    started: list[Keeper] = []

    def make(**kw) -> Keeper:
        port = free_port()
        keeper = Keeper(_settings(port, **kw), EmbeddedBroker(port))
        keeper.start()
        started.append(keeper)
        return keeper

    yield make
    for k in started:
        k.broker.stop()


def _produce(bootstrap: str, topic: str, n: int) -> dict[int, int]:
    """n records spread over the partitions; returns the high watermark per partition."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    for i in range(n):
        p.produce(topic, f"record-{i}".encode(), partition=i % PARTITIONS)
    assert p.flush(10) == 0
    return {q: n // PARTITIONS + (1 if q < n % PARTITIONS else 0) for q in range(PARTITIONS)}


def _commit(bootstrap: str, group: str, topic: str, offsets: dict[int, int]) -> None:
    """Commit as the landing workers do (after their PostgreSQL commit), without consuming."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in offsets.items()], asynchronous=False)
    finally:
        c.close()


def _read(bootstrap: str, topic: str, partition: int, start: int, expect: int) -> list[bytes]:
    """Records of one partition from `start` on (waits until `expect` arrived, or 10 s)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{uuid.uuid4().hex[:6]}"})
    c.assign([TopicPartition(topic, partition, start)])
    out: list[bytes] = []
    deadline = time.monotonic() + 10
    try:
        while len(out) < expect and time.monotonic() < deadline:
            m = c.poll(0.2)
            if m is not None and m.error() is None:
                out.append(m.value())
    finally:
        c.close()
    return out


def _topic_id(bootstrap: str, topic: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return str(admin.describe_topics(TopicCollection([topic]))[topic].result(10).topic_id)


def test_keeps_records_the_group_has_not_committed(keeper_for) -> None:
    keeper = keeper_for()  # over its (1-byte) memory limit from the start
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    high = _produce(bs, k.topic_raw, 90)
    pid = keeper.broker.pid

    # No group at all: nothing vouches for the records.
    assert keeper.check() == "kept"
    # Committed on two partitions only: the third has records nobody committed.
    _commit(bs, k.consumer_group, k.topic_raw, {0: high[0], 1: high[1]})
    assert landing_state(keeper.admin(), bs, k.topic_raw, k.consumer_group).unlanded is None
    assert keeper.check() == "kept"
    gauge = PressureGauge(keeper.pressure, interval_s=0)
    assert not gauge.active()  # records nobody committed on are no reason to pause ingest
    # Committed everywhere, but 5 records of partition 2 not yet: more than the allowance (0).
    _commit(bs, k.consumer_group, k.topic_raw, {2: high[2] - 5})
    assert landing_state(keeper.admin(), bs, k.topic_raw, k.consumer_group).unlanded == 5
    assert keeper.check() == "kept"
    # Landing lags while the broker is over its limit: ingest is asked to pause (503) until it caught up.
    assert gauge.active() and keeper.pressed == 1

    assert keeper.broker.pid == pid and keeper.recycles == 0
    # Records above the committed offset are still there, and so is everything below it.
    assert (
        _read(bs, k.topic_raw, 2, high[2] - 5, 5)
        == [f"record-{i}".encode() for i in range(90) if i % PARTITIONS == 2][-5:]
    )
    assert len(_read(bs, k.topic_raw, 0, 0, high[0])) == high[0]

    # Landing caught up: recycled, and ingest resumes.
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "recycled"
    assert not gauge.active() and keeper.pressed == 0


def test_a_pressure_lease_runs_out_by_itself(tmp_path) -> None:
    """A keeper killed while ingest was paused must not pause it for ever."""
    from pulseops.pressure import raise_pressure

    path = tmp_path / "broker-pressure"
    gauge = PressureGauge(path, interval_s=0)
    raise_pressure(path, 0.3)
    assert gauge.active()
    time.sleep(0.4)
    assert not gauge.active()


def test_recycles_once_the_group_committed_everything(keeper_for) -> None:
    keeper = keeper_for()
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    high = _produce(bs, k.topic_raw, 60)
    _commit(bs, k.consumer_group, k.topic_raw, high)
    old_pid, old_id = keeper.broker.pid, _topic_id(bs, k.topic_raw)

    assert keeper.check() == "recycled"

    assert keeper.broker.pid != old_pid and keeper.recycles == 1
    # A fresh broker: the topics are back at once (new incarnation, so the spool re-checks what it sent),
    # empty, with their retention configs (Quix reads retention.ms from DescribeConfigs).
    assert _topic_id(bs, k.topic_raw) != old_id
    assert landing_state(keeper.admin(), bs, k.topic_raw, k.consumer_group).stored == 0
    admin = AdminClient({"bootstrap.servers": bs})
    for topic, retention in ((k.topic_raw, k.retention_ms), (k.topic_dlq, k.dlq_retention_ms)):
        res = ConfigResource(ConfigResource.Type.TOPIC, topic)
        configs = admin.describe_configs([res])[res].result(10)
        assert configs["retention.ms"].value == str(retention)
    # ... and it takes records again.
    _produce(bs, k.topic_raw, 3)
    assert len(_read(bs, k.topic_raw, 0, 0, 1)) == 1


def test_unlanded_allowance_needs_the_spool(keeper_for) -> None:
    """Some unlanded data may be dropped for the spool to publish again; with the spool off, none."""
    for spool, expected in ((False, "kept"), (True, "recycled")):
        keeper = keeper_for(unlanded=1024**3, spool=spool)
        k, bs = keeper.settings.kafka, keeper.broker.bootstrap
        high = _produce(bs, k.topic_raw, 30)
        _commit(bs, k.consumer_group, k.topic_raw, {p: h - 1 for p, h in high.items()})
        assert keeper.check() == expected, f"spool={spool}"


def test_a_small_broker_is_left_alone(keeper_for) -> None:
    keeper = keeper_for(rss=8 * 1024**3)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    high = _produce(bs, k.topic_raw, 30)
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "small"
    assert keeper.recycles == 0


def test_a_dead_broker_comes_back_with_its_topics(keeper_for) -> None:
    keeper = keeper_for()
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    _produce(bs, k.topic_raw, 30)
    keeper.check()  # an admin connection to the old broker exists
    os.kill(keeper.broker.pid, signal.SIGKILL)
    keeper.broker.proc.wait()

    assert keeper.check() == "restarted"
    assert keeper.broker.alive()
    topics = AdminClient({"bootstrap.servers": bs}).list_topics(timeout=10).topics
    assert {k.topic_raw, k.topic_dlq} <= set(topics)
    # The fresh broker has records nobody committed on... none yet; after some arrive, still kept.
    _produce(bs, k.topic_raw, 30)
    assert keeper.check() == "kept"


def test_the_keeper_process_stops_with_its_broker() -> None:
    """`python -m pulseops.broker` as `pulseops up` runs it: serves the port, SIGTERM stops Tansu too."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    proc = subprocess.Popen([sys.executable, "-m", "pulseops.broker", "--port", str(port)], env=env, cwd=ROOT)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{port}"})
        wait_for(
            lambda: "events-raw" in admin.list_topics(timeout=1).topics, 20, "topics on the keeper's broker"
        )
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) == 1 and rss_bytes(int(children[0])) > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        wait_for(lambda: rss_bytes(int(children[0])) == 0, 5, "Tansu gone")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_many_records_recycle_a_broker_still_small_in_memory(keeper_for) -> None:
    """Each fetch lists every stored batch: the record count alone triggers a recycle too."""
    keeper = keeper_for(rss=8 * 1024**3, records=50)
    k, bs = keeper.settings.kafka, keeper.broker.bootstrap
    high = _produce(bs, k.topic_raw, 45)
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "small"  # 45 < 50
    high = {p: h + n for (p, h), n in zip(high.items(), _produce(bs, k.topic_raw, 15).values(), strict=True)}
    assert keeper.check() == "kept"  # 60 stored, 15 not committed
    _commit(bs, k.consumer_group, k.topic_raw, high)
    assert keeper.check() == "recycled"
