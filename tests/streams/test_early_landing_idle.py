"""An early chunk lands when no message follows it (streams/sink.py `tick`, run by Quix after every poll).

Why: the sink handed an early chunk (EARLY_AFTER_S) to a lander only from `add()`, so the last messages before
a pause in traffic waited for the next message or the checkpoint's end (commit_interval_s) to land.

Real Tansu, the worker's own Quix application (streams/app.py) and PostgreSQL. The checkpoint interval is set
to seconds, and the messages are produced right after a checkpoint committed, so that only the early landing
can make them visible soon; the offsets still move only at the checkpoint, after the rows committed."""

from __future__ import annotations

import signal
import threading
import time

import psycopg
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

import streams.app as app_module
import streams.sink as sink_module
from pulseops.topics import ensure_topics
from tests.fixtures.system import make_settings
from tests.streams.test_offset_gap_rewind import _committed, _ledger, _wait
from tests.streams.test_sink import _packed
from tests.utils.signals import restored_signals
from tests.utils.tenants import make_tenant

CHECKPOINT_S = 3.0
SLACK_S = 0.35  # a poll (50 ms), the landing transaction and this test's 10 ms look, on a shared machine
PER, MESSAGES = 4, 3  # a few rows, in a few messages produced together


@pytest.mark.parametrize("lane", ["normal", "hot"])
def test_an_early_chunk_lands_without_a_message_after_it(
    database_url, broker, redis_url, db, monkeypatch, lane
):
    settings = make_settings(database_url, broker, redis_url)
    settings.streams.commit_interval_s = CHECKPOINT_S
    k = settings.kafka
    ensure_topics(k)
    partition = 0 if lane == "normal" else k.partitions - 1  # the last is reserved for hot projects
    tenant = make_tenant(db)
    values = _packed(tenant, (1 + MESSAGES) * PER, per=PER)
    producer = Producer({"bootstrap.servers": broker, "acks": "all", "linger.ms": 0})
    admin = AdminClient({"bootstrap.servers": broker})
    added: list[float] = []
    real_add = sink_module.PostgresLandingSink.add

    def add(self, *args, **kwargs):  # the real add(), timed
        real_add(self, *args, **kwargs)
        added.append(time.monotonic())

    monkeypatch.setattr(sink_module.PostgresLandingSink, "add", add)
    app = app_module.build_app(settings)
    failure: list[BaseException] = []
    visible: list[float] = []

    def drive() -> None:
        try:
            producer.produce(k.topic_raw, values[0], b"k", partition=partition)
            assert producer.flush(10) == 0
            # a checkpoint just ended: the next one ends CHECKPOINT_S from now
            _wait(
                lambda: _committed_on(admin, k, partition) == 1, 3 * CHECKPOINT_S, "first message committed"
            )
            for v in values[1:]:
                producer.produce(k.topic_raw, v, b"k", partition=partition)
            assert producer.flush(10) == 0
            total = (1 + MESSAGES) * PER
            with psycopg.connect(database_url, autocommit=True) as look:
                deadline = time.monotonic() + 2 * CHECKPOINT_S
                while _count(look, tenant) < total and time.monotonic() < deadline:
                    time.sleep(0.01)
                visible.append(time.monotonic())
            _wait(
                lambda: _committed_on(admin, k, partition) == 1 + MESSAGES, 3 * CHECKPOINT_S, "all committed"
            )
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
    assert len(added) == 1 + MESSAGES, added
    waited = visible[0] - added[-1]
    assert waited < sink_module.EARLY_AFTER_S + SLACK_S, (
        f"visible {waited * 1000:.0f} ms after the last add()"
    )
    total = (1 + MESSAGES) * PER
    assert _ledger(db, tenant) == (total, total)  # once each, and committed after they landed


def _committed_on(admin: AdminClient, k, partition: int) -> int:
    if partition == 0:
        return _committed(admin, k.consumer_group, k.topic_raw)
    from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition

    request = [ConsumerGroupTopicPartitions(k.consumer_group, [TopicPartition(k.topic_raw, partition)])]
    result = admin.list_consumer_group_offsets(request, request_timeout=5)[k.consumer_group].result(5)
    return next((tp.offset for tp in result.topic_partitions if tp.error is None), -1)


def _count(conn: psycopg.Connection, tenant: dict) -> int:
    return conn.execute(
        "SELECT count(*) FROM events WHERE project_id = %s", (tenant["project_id"],)
    ).fetchone()[0]
