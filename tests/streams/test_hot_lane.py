"""Messages of the partitions reserved for hot projects (kafka.hot_partitions) land in their own lane
(streams/lanes.py): a quiet partition's chunk never shares a transaction with them and does not wait for a hot
chunk still landing, and a failed hot chunk neither loses nor duplicates a quiet row (issue 17)."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from quixstreams.sinks import SinkBackpressureError

import streams.sink as sink_module
from pulseops.topics import ensure_topics
from streams.sink import PostgresLandingSink
from tests.fixtures.system import make_settings
from tests.streams.test_sink import _packed, _xids
from tests.utils.tenants import make_tenant
from warehouse import landing

TOPIC = "events-raw-t"


@pytest.fixture
def sink(database_url, broker, redis_url, monkeypatch):
    monkeypatch.setattr(sink_module, "EARLY_AFTER_S", 0.0)
    settings = make_settings(database_url, broker, redis_url)
    settings.kafka.topic_overflow = (
        ""  # the lanes are for the raw topic's reserved partitions, used without one
    )
    ensure_topics(settings.kafka)
    s = PostgresLandingSink(settings)
    s.setup()
    yield s
    s._drop_connection()


def _count(db: psycopg.Connection, tenant: dict) -> int:
    return db.execute(
        "SELECT count(*) FROM events WHERE project_id = %s", (tenant["project_id"],)
    ).fetchone()[0]


def _ledger(db: psycopg.Connection, tenant: dict) -> int:
    sql = "SELECT count(*) FROM event_ids WHERE project_id = %s"
    return db.execute(sql, (tenant["project_id"],)).fetchone()[0]


def _wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.01)


def _held_for(monkeypatch, tenant: dict, fail: bool = False) -> threading.Event:
    """land_batch waits (then fails, with `fail`) for any chunk holding the tenant's rows until released."""
    release = threading.Event()
    real = sink_module.land_batch
    project = tenant["project_id"]

    def held(conn, rows, *args, **kwargs):
        if any(r[0] == project for r in rows):
            release.wait(10)
            if fail:
                raise RuntimeError("hot chunk failed")
        return real(conn, rows, *args, **kwargs)

    monkeypatch.setattr(sink_module, "land_batch", held)
    return release


def test_the_hot_partitions_are_learned_from_the_broker(sink):
    assert sink.settings.kafka.partitions == 3 and sink.settings.kafka.hot_partitions == 1
    assert sink._first_hot == 2


def test_a_quiet_partition_lands_while_a_hot_chunk_is_still_landing(sink, db, monkeypatch):
    quiet, hot = make_tenant(db, "quiet-org", "quiet"), make_tenant(db, "hot-org", "hot")
    release = _held_for(monkeypatch, hot)
    live = int(time.time() * 1000)
    hot_values, quiet_values = _packed(hot, 40, per=10), _packed(quiet, 6, per=2)
    sink.add(hot_values[0], None, live, [], TOPIC, 2, 0)  # hot partition: its chunk starts landing, held
    sink.add(hot_values[1], None, live, [], TOPIC, 2, 1)  # waits for the hot chunk
    for offset, value in enumerate(quiet_values):
        sink.add(value, None, live, [], TOPIC, 0, offset)
        # Before lanes, the quiet message joined the chunk behind the held hot one: nothing landed until then.
        _wait_for(lambda n=offset: _count(db, quiet) == 2 * (n + 1))
    assert _count(db, hot) == 0 and sink._open.hot.events == 10
    release.set()
    for offset, value in enumerate(hot_values[2:], start=2):
        sink.add(value, None, live, [], TOPIC, 2, offset)
    sink.flush()
    assert _count(db, quiet) == 6 and _count(db, hot) == 40
    assert not _xids(db, quiet) & _xids(db, hot)  # never in one transaction


def test_a_failed_hot_chunk_loses_and_duplicates_no_quiet_row(sink, db, monkeypatch):
    quiet, hot = make_tenant(db, "quiet-org", "quiet"), make_tenant(db, "hot-org", "hot")
    release = _held_for(monkeypatch, hot, fail=True)
    live = int(time.time() * 1000)
    hot_values, quiet_values = _packed(hot, 30, per=10), _packed(quiet, 6, per=2)

    def checkpoint() -> None:
        for offset, value in enumerate(hot_values):
            sink.add(value, None, live, [], TOPIC, 2, offset)
        for offset, value in enumerate(quiet_values):
            sink.add(value, None, live, [], TOPIC, 0, offset)
            _wait_for(lambda: not sink._open.normal.inflight or sink._open.normal.inflight[-1].done())

    checkpoint()
    _wait_for(lambda: _count(db, quiet) == 6)  # landed while the hot chunk still holds its lander
    release.set()
    with pytest.raises(SinkBackpressureError):
        sink.flush()  # Quix commits no offset and re-reads both partitions
    assert _count(db, hot) == 0 and _count(db, quiet) == 6
    monkeypatch.setattr(sink_module, "land_batch", landing.land_batch)
    checkpoint()
    sink.flush()
    assert (_count(db, quiet), _ledger(db, quiet)) == (6, 6)
    assert (_count(db, hot), _ledger(db, hot)) == (30, 30)


class _Consumer:
    """Records the sink's pause/resume calls (Quix's consumer in streams/app.py)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int]]]] = []

    def pause(self, tps) -> None:
        self.calls.append(("pause", [(tp.topic, tp.partition) for tp in tps]))

    def resume(self, tps) -> None:
        self.calls.append(("resume", [(tp.topic, tp.partition) for tp in tps]))


def test_a_hot_lane_behind_live_traffic_pauses_its_partition_instead_of_waiting(sink, db, monkeypatch):
    """Beside live quiet traffic a hot chunk is full at HOT_LIVE_ROWS; while the one before it still lands,
    the hot partition is paused (add() returns at once) and resumed when that chunk committed."""
    monkeypatch.setattr(sink_module, "HOT_LIVE_ROWS", 20)
    consumer = _Consumer()
    sink.attach_consumer(consumer)
    quiet, hot = make_tenant(db, "quiet-org", "quiet"), make_tenant(db, "hot-org", "hot")
    release = _held_for(monkeypatch, hot)
    live = int(time.time() * 1000)
    hot_values = _packed(hot, 60, per=10)
    sink.add(_packed(quiet, 2, per=2)[0], None, live, [], TOPIC, 0, 0)  # live traffic on a quiet partition
    for offset, value in enumerate(hot_values[:3]):
        started = time.monotonic()
        sink.add(value, None, live, [], TOPIC, 2, offset)
        assert time.monotonic() - started < 1  # never waits for the held hot chunk
    assert consumer.calls == [("pause", [(TOPIC, 2)])]  # at 20 hot events with 10 still landing
    assert sink._open.hot.events == 20 and _count(db, hot) == 0
    release.set()
    _wait_for(lambda: consumer.calls[-1] == ("resume", [(TOPIC, 2)]))
    for offset, value in enumerate(hot_values[3:], start=3):
        sink.add(value, None, live, [], TOPIC, 2, offset)
    sink.flush()
    assert (_count(db, hot), _ledger(db, hot), _count(db, quiet)) == (60, 60, 2)


def test_a_hot_backlog_without_live_traffic_is_never_paused(sink, db, monkeypatch):
    """Catch-up: no live message on the other partitions, so the hot lane fills chunks as before."""
    monkeypatch.setattr(sink_module, "HOT_LIVE_ROWS", 20)
    consumer = _Consumer()
    sink.attach_consumer(consumer)
    hot = make_tenant(db, "hot-org", "hot")
    old = int((time.time() - 3600) * 1000)
    for offset, value in enumerate(_packed(hot, 60, per=10)):
        sink.add(value, None, old, [], TOPIC, 2, offset)
    sink.flush()
    assert consumer.calls == [] and _count(db, hot) == 60


def test_a_paused_partition_resumes_after_the_last_message_handed_over(broker):
    """What HotPause rests on (librdkafka): pausing drops what was prefetched of the partition, and resuming
    fetches from the message after the last one poll() returned: none skipped, none twice."""
    topic = f"pause-{uuid.uuid4().hex[:8]}"
    producer = Producer({"bootstrap.servers": broker})
    for i in range(200):
        producer.produce(topic, str(i).encode(), partition=0)
    producer.flush(10)
    consumer = Consumer({"bootstrap.servers": broker, "group.id": topic, "auto.offset.reset": "earliest",
                         "enable.auto.commit": False})  # fmt: skip
    try:
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = [_poll(consumer) for _ in range(10)]
        consumer.pause([TopicPartition(topic, 0)])
        assert consumer.poll(0.5) is None  # the prefetched rest is not handed over while paused
        consumer.resume([TopicPartition(topic, 0)])
        while len(seen) < 200:
            seen.append(_poll(consumer))
        assert seen == list(range(200))
    finally:
        consumer.close()


def _poll(consumer: Consumer) -> int:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and msg.error() is None:
            return int(msg.value())
    raise AssertionError("no message")


def test_flush_lands_the_last_hot_chunk_beside_the_one_still_in_flight(sink, db, monkeypatch):
    """flush() waits for about one hot transaction, not two in a row (quiet messages wait while it runs)."""
    hot = make_tenant(db, "hot-org", "hot")
    release = threading.Event()
    started: list[int] = []
    real = sink_module.land_batch

    def held(conn, rows, *args, **kwargs):
        started.append(len(rows))
        release.wait(10)
        return real(conn, rows, *args, **kwargs)

    monkeypatch.setattr(sink_module, "land_batch", held)
    live = int(time.time() * 1000)
    values = _packed(hot, 30, per=10)
    for offset, value in enumerate(values):
        sink.add(value, None, live, [], TOPIC, 2, offset)  # the first lands early, held; 20 stay open
    flushing = threading.Thread(target=sink.flush)
    flushing.start()
    _wait_for(lambda: started == [10, 20])  # both landing at once
    release.set()
    flushing.join(10)
    assert _count(db, hot) == 30


def test_a_hot_backlog_lands_two_chunks_at_once_without_live_traffic(sink, db, monkeypatch):
    """Catch-up of the hot partitions (no live message on the others): the next full hot chunk starts landing
    beside the one still in flight (HOT_BACKLOG_LANDERS) instead of add() waiting for it to commit."""
    hot = make_tenant(db, "hot-org", "hot")
    sink.pipeline_rows = 10
    release = threading.Event()
    started: list[int] = []
    real = sink_module.land_batch

    def held(conn, rows, *args, **kwargs):
        started.append(len(rows))
        release.wait(10)
        return real(conn, rows, *args, **kwargs)

    monkeypatch.setattr(sink_module, "land_batch", held)
    old = int((time.time() - 3600) * 1000)
    values = _packed(hot, 30, per=10)
    began = time.monotonic()
    for offset, value in enumerate(values[:2]):
        sink.add(value, None, old, [], TOPIC, 2, offset)  # each a full chunk
    assert time.monotonic() - began < 2  # one hot chunk at a time: waited 10 s for the held first
    _wait_for(lambda: started == [10, 10])
    release.set()
    sink.add(values[2], None, old, [], TOPIC, 2, 2)
    sink.flush()
    assert (_count(db, hot), _ledger(db, hot)) == (30, 30)
