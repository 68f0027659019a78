"""Hot projects' messages go to the overflow topic (kafka.topic_overflow), and the spool's bookkeeping follows
them there: their markers name that topic, and the reconciler prunes them once the overflow group, not the raw
topic's group, committed past them (api/ingest/publisher.py, api/ingest/spool.py, api/ingest/reconcile.py)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient
from psycopg_pool import ConnectionPool

from api.ingest.publisher import Publisher
from api.ingest.reconcile import Reconciler
from api.ingest.spool import ACK, DATA, Ack, Data, Spool, frame, read_records
from api.main import create_app
from pulseops.settings import KafkaSettings, Settings
from pulseops.topics import ensure_topics
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant, new_event
from warehouse.events import RawEvent, encode_raw_event, message_key, split_message


def _with_overflow(settings: Settings) -> Settings:
    settings.kafka.topic_overflow = f"events-overflow-{uuid.uuid4().hex[:8]}"
    return settings


def _read(k: KafkaSettings, topic: str, partitions: int, expected: int) -> dict[str, int]:
    """distinct_id prefix ('hot' or 'quiet') -> events of it on `topic`, reading every partition from 0."""
    consumer = Consumer(
        {"bootstrap.servers": k.servers, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: dict[str, int] = defaultdict(int)
    seen = empty = 0
    try:
        while seen < expected and empty < 6:
            msg = consumer.poll(0.5)
            if msg is None:
                empty += 1
                continue
            if msg.error() is not None:
                continue
            for value in split_message(msg.value()):
                out["hot" if b'"distinct_id":"hot-' in value else "quiet"] += 1
                seen += 1
    finally:
        consumer.close()
    return dict(out)


@pytest.fixture
def routed(db: psycopg.Connection, database_url: str, broker: str, redis_url: str) -> Iterator[tuple]:
    settings = _with_overflow(make_settings(database_url, broker, redis_url, hot_project_events_per_s=150))
    hot, quiet = make_tenant(db, "hotco", "web"), make_tenant(db, "quietco", "web")
    with TestClient(create_app(settings)) as client:
        yield client, settings, hot, quiet


def test_a_hot_project_goes_to_the_overflow_topic_and_its_markers_name_it(routed: tuple) -> None:
    client, settings, hot, quiet = routed
    k = settings.kafka
    for i in range(4):  # 400 events within a second: hot from the second batch on (200 > 150)
        batch = [new_event(distinct_id=f"hot-{i}-{j}") for j in range(100)]
        r = client.post("/v1/batch", json={"batch": batch}, headers={"X-API-Key": hot["ingest_key"]})
        assert r.status_code == 202, r.text
    for i in range(20):
        r = client.post(
            "/v1/events", json=new_event(distinct_id=f"quiet-{i}"), headers={"X-API-Key": quiet["ingest_key"]}
        )
        assert r.status_code == 202, r.text
    assert _read(k, k.topic_overflow, k.overflow_partitions, 300) == {"hot": 300}  # batches 2 to 4
    assert _read(k, k.topic_raw, k.partitions, 120) == {"hot": 100, "quiet": 20}  # nothing reserved in raw
    markers = [
        r for p in Path(settings.spool_dir).glob("*.seg") for r in read_records(p) if isinstance(r, Ack)
    ]
    by_topic: dict[str, int] = defaultdict(int)
    for m in markers:
        by_topic[m.topic] += 1
    assert by_topic == {"": 21, k.topic_overflow: 3}, by_topic
    overflow_id = next(m.topic_id for m in markers if m.topic)
    raw_id = next(m.topic_id for m in markers if not m.topic)
    assert overflow_id and raw_id and overflow_id != raw_id  # each topic's own incarnation


def _message(tenant: dict) -> tuple[bytes, bytes]:
    now = datetime.now(UTC)
    raw = RawEvent(
        org_id=tenant["org_id"], project_id=tenant["project_id"], event_id=uuid.uuid4(),
        event="spooled", distinct_id="u-1", timestamp=now, received_at=now,
    )  # fmt: skip
    return message_key(tenant["project_id"], "u-1"), encode_raw_event(raw)


def _commit(k: KafkaSettings, group: str, topic: str, offsets: dict[int, int]) -> None:
    consumer = Consumer({"bootstrap.servers": k.servers, "group.id": group})
    try:
        consumer.commit(
            offsets=[TopicPartition(topic, p, off + 1) for p, off in offsets.items()], asynchronous=False
        )
    finally:
        consumer.close()


def test_an_overflow_record_is_kept_until_the_overflow_group_commits_past_it(
    db, database_url: str, broker: str, redis_url: str, tmp_path: Path
) -> None:
    settings = _with_overflow(make_settings(database_url, broker, redis_url))
    k = settings.kafka
    ensure_topics(k, 10)
    publisher = Publisher(k)
    pool = ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True})
    spool = Spool(tmp_path / "spool")
    try:
        publisher.refresh_topic_id()
        publisher.refresh_partitions()
        rec = Reconciler(spool, publisher, settings, pool)
        message = _message(make_tenant(db))
        delivery = asyncio.run(publisher.publish([message], hot=True))
        assert delivery.topic == k.topic_overflow and delivery.topic_id == publisher.overflow_id != ""
        path = spool.directory / f"{1:020d}-1-deadbeef.seg"  # a sealed segment of a process that is gone
        path.write_bytes(
            frame(DATA, Data(1, [message]))
            + frame(ACK, Ack(1, delivery.topic_id, delivery.offsets, 0, delivery.topic))
        )
        first = asyncio.run(rec.run_once())
        # Acknowledged on the overflow topic's incarnation: neither published again nor pruned before landing
        assert first.pending == 1 and first.replayed_events == 0 and path.exists()
        # The raw topic's group at the same offsets vouches for nothing on the overflow topic
        _commit(k, k.consumer_group, k.topic_raw, delivery.offsets)
        assert asyncio.run(rec.run_once()).pending == 1 and path.exists()
        _commit(k, k.overflow_group, k.topic_overflow, delivery.offsets)
        assert asyncio.run(rec.run_once()).pruned == 1 and not path.exists()
    finally:
        spool.close()
        publisher.close()
        pool.close()


def test_with_the_overflow_topic_s_offsets_unknown_its_records_wait_and_the_raw_ones_settle(
    db, database_url: str, broker: str, redis_url: str, tmp_path: Path, monkeypatch
) -> None:
    settings = _with_overflow(make_settings(database_url, broker, redis_url))
    k = settings.kafka
    ensure_topics(k, 10)
    publisher = Publisher(k)
    pool = ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True})
    spool = Spool(tmp_path / "spool")
    try:
        publisher.refresh_topic_id()
        rec = Reconciler(spool, publisher, settings, pool)
        tenant = make_tenant(db)
        hot_msg, raw_msg = _message(tenant), _message(tenant)
        hot = asyncio.run(publisher.publish([hot_msg], hot=True))
        raw = asyncio.run(publisher.publish([raw_msg]))
        hot_path = spool.directory / f"{1:020d}-1-deadbeef.seg"
        raw_path = spool.directory / f"{2:020d}-1-deadbeef.seg"
        hot_path.write_bytes(
            frame(DATA, Data(1, [hot_msg])) + frame(ACK, Ack(1, hot.topic_id, hot.offsets, 0, hot.topic))
        )
        raw_path.write_bytes(frame(DATA, Data(1, [raw_msg])) + frame(ACK, Ack(1, raw.topic_id, raw.offsets)))
        _commit(k, k.consumer_group, k.topic_raw, raw.offsets)
        _commit(k, k.overflow_group, k.topic_overflow, hot.offsets)
        real = publisher.committed_view

        def overflow_down(group: str, timeout: float = 2.0, topic: str = ""):
            if topic:
                raise RuntimeError("overflow topic not answering")
            return real(group, timeout, topic)

        monkeypatch.setattr(publisher, "committed_view", overflow_down)
        result = asyncio.run(rec.run_once())
        # the raw topic's record is settled; the overflow one waits: neither trusted nor published again
        assert result.pruned == 1 and result.pending == 1 and result.replayed_events == 0
        assert hot_path.exists() and not raw_path.exists()
        monkeypatch.setattr(publisher, "committed_view", real)
        assert asyncio.run(rec.run_once()).pruned == 1 and not hot_path.exists()
    finally:
        spool.close()
        publisher.close()
        pool.close()
