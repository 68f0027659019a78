"""A message the fetch skipped at the start of a checkpoint is re-read, not committed past.

Why: the embedded broker (Tansu) can answer a fetch at offset P with the batch after P while a concurrent
producer's batch at P is not stored yet (streams/offsets.py OffsetGap). The sink then fails the checkpoint as
backpressure, and Quix seeks every partition back to the first offset *this checkpoint* processed, which it
takes for the committed offset. When the skipped message was the partition's first of the checkpoint (a
partition that was idle, with the consumer's fetch waiting at its end: the usual place of that race), that
first processed offset is P + 1: Quix seeks to P + 1, the re-read starts behind the hole, the sink had
dropped its baseline, and the next commit moves the group past P. The ingest spool then prunes P's record as
landed (api/ingest/reconcile.py): an acknowledged event lost for good. benchmarks/steady_single.py lost one
that way (41a9daf8-...-00000003b986, 300 s at 5,000/s offered).

Real Tansu, the real Quix application of the worker (streams/app.py) and PostgreSQL; the skip is injected
where the broker makes it: the consumer moves past P and never hands it over."""

from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

import streams.app as app_module
from pulseops.topics import ensure_topics
from streams import metrics
from tests.fixtures.system import make_settings
from tests.streams.test_sink import _packed
from tests.utils.signals import restored_signals
from tests.utils.tenants import make_tenant

PER = 5  # events per message
FIRST, SECOND = 6, 6  # messages produced before and after the checkpoint boundary


def _committed(admin: AdminClient, group: str, topic: str) -> int:
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(topic, 0)])]
    result = admin.list_consumer_group_offsets(request, request_timeout=5)[group].result(5)
    return next((tp.offset for tp in result.topic_partitions if tp.partition == 0 and tp.error is None), -1)


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _ledger(db: psycopg.Connection, tenant: dict) -> tuple[int, int]:
    """(ledger rows, events rows) of the tenant's project."""
    project = tenant["project_id"]
    ledger = db.execute("SELECT count(*) FROM event_ids WHERE project_id = %s", (project,)).fetchone()[0]
    events = db.execute("SELECT count(*) FROM events WHERE project_id = %s", (project,)).fetchone()[0]
    return ledger, events


@pytest.mark.parametrize(("skip", "skips"), [(FIRST, 1), (FIRST, 2), (0, 1)])
def test_a_message_skipped_first_in_a_checkpoint_is_re_read(database_url, broker, redis_url, db, skip, skips):
    """`skips` 2: the re-read's first fetch skips it again (the same race), which must be seen as a gap too.
    `skip` 0: the very first message a fresh worker reads (after a recycle: a new log, no committed offset)."""
    settings = make_settings(database_url, broker, redis_url)
    k = settings.kafka
    ensure_topics(k)
    tenant = make_tenant(db)
    values = _packed(tenant, (FIRST + SECOND) * PER, per=PER)
    producer = Producer({"bootstrap.servers": broker, "acks": "all"})
    admin = AdminClient({"bootstrap.servers": broker})

    app = app_module.build_app(settings)
    real_poll = app._consumer.poll_row
    skipped: list[int] = []

    def poll_row(*args, **kwargs):
        row = real_poll(*args, **kwargs)
        single = row is not None and not isinstance(row, list)
        # `skips` times, then handed over, as the broker's race does: the re-read must see it
        if single and row.partition == 0 and row.offset == skip and len(skipped) < skips:
            skipped.append(row.offset)
            return None
        return row

    app._consumer.poll_row = poll_row
    gaps_before = metrics.OFFSET_GAPS._value.get()
    failure: list[BaseException] = []

    def drive() -> None:
        try:
            for v in values[:FIRST]:
                producer.produce(k.topic_raw, v, b"k", partition=0)
            assert producer.flush(10) == 0
            _wait(
                lambda: _committed(admin, k.consumer_group, k.topic_raw) == FIRST, 30, "first batch committed"
            )
            time.sleep(0.5)  # a few empty checkpoints: the next message of partition 0 starts a checkpoint
            for v in values[FIRST:]:
                producer.produce(k.topic_raw, v, b"k", partition=0)
            assert producer.flush(10) == 0
            total = FIRST + SECOND
            _wait(lambda: _committed(admin, k.consumer_group, k.topic_raw) == total, 30, "all committed")
            time.sleep(0.5)  # landing is before the commit; a last look for stragglers
        except BaseException as exc:
            failure.append(exc)
        finally:
            app.stop()

    driver = threading.Thread(target=drive, daemon=True)
    driver.start()
    sigterm = signal.getsignal(signal.SIGTERM)
    with restored_signals():
        app.run()  # Quix installs signal handlers: the main thread runs it
    assert signal.getsignal(signal.SIGTERM) is sigterm, "Quix's SIGTERM handler outlived the test"
    driver.join(10)
    assert not failure, failure
    assert skipped == [skip] * skips, "the fetch skip was not injected: the test proves nothing"
    assert metrics.OFFSET_GAPS._value.get() >= gaps_before + skips, "the sink did not see the gap"
    ledger, events = _ledger(db, tenant)
    total = (FIRST + SECOND) * PER
    assert (ledger, events) == (total, total), f"landed {ledger} ledger rows / {events} events of {total}"
