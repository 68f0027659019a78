"""Hot projects go to the raw topic's reserved partitions; quiet projects never do (api/ingest/hot.py)."""

from __future__ import annotations

import re
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition
from fastapi.testclient import TestClient

from api.ingest.hot import HotProjects
from api.main import create_app
from pulseops.settings import Settings
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant, new_event
from warehouse.events import split_message


def test_a_project_is_hot_above_its_rate_and_stays_hot_for_the_hold_time() -> None:
    hot = HotProjects(events_per_s=100, hold_s=1.2)
    a, b = uuid.uuid4(), uuid.uuid4()
    assert not hot.note(a, 60)
    assert hot.note(a, 60)  # 120 in this second
    assert not hot.note(b, 99)  # per project
    assert hot.note(a, 1)
    time.sleep(1.05)
    assert hot.note(a, 1)  # a new second with little traffic, but still inside the hold time
    time.sleep(0.35)
    assert not hot.note(a, 1)  # hold over and the rate is low: back to the normal partitions
    assert not HotProjects(events_per_s=0).note(a, 10**9)  # 0 turns routing off


def partitions_of(settings: Settings, expected: int, timeout: float = 15.0) -> dict[str, set[int]]:
    """distinct_id prefix -> partitions its events were published to, reading every partition from 0."""
    k = settings.kafka
    consumer = Consumer(
        {"bootstrap.servers": k.servers, "group.id": f"t-{uuid.uuid4().hex}", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(k.topic_raw, p, 0) for p in range(k.partitions)])
    out: dict[str, set[int]] = defaultdict(set)
    seen = 0
    deadline = time.monotonic() + timeout
    try:
        while seen < expected and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error() is not None:
                continue
            for value in split_message(msg.value()):
                tenant = b"hot" if b'"distinct_id":"hot-' in value else b"quiet"
                out[tenant.decode()].add(msg.partition())
                seen += 1
    finally:
        consumer.close()
    assert seen == expected, f"read {seen} of {expected} events"
    return out


def hot_events(client: TestClient) -> float:
    m = re.search(r"^pulseops_ingest_hot_events_total (\S+)$", client.get("/metrics").text, re.M)
    assert m is not None
    return float(m.group(1))


@pytest.fixture
def routed(db: psycopg.Connection, database_url: str, broker: str, redis_url: str) -> Iterator[tuple]:
    settings = make_settings(database_url, broker, redis_url, hot_project_events_per_s=150)
    settings.kafka.partitions = 4
    settings.kafka.hot_partitions = 1
    settings.kafka.topic_overflow = ""  # reserved partitions are the hot projects' place only without one
    hot, quiet = make_tenant(db, "hotco", "web"), make_tenant(db, "quietco", "web")
    with TestClient(create_app(settings)) as client:
        yield client, settings, hot, quiet


def test_hot_project_goes_to_the_reserved_partition_and_quiet_ones_never_do(routed: tuple) -> None:
    client, settings, hot, quiet = routed
    before = hot_events(client)
    sent = 0
    for i in range(4):  # 400 events within a second: hot from the second batch on (200 > 150)
        batch = [new_event(distinct_id=f"hot-{i}-{j}") for j in range(100)]
        r = client.post("/v1/batch", json={"batch": batch}, headers={"X-API-Key": hot["ingest_key"]})
        assert r.status_code == 202, r.text
        sent += 100
    for i in range(40):  # a quiet project, 40 users
        r = client.post(
            "/v1/events", json=new_event(distinct_id=f"quiet-{i}"), headers={"X-API-Key": quiet["ingest_key"]}
        )
        assert r.status_code == 202, r.text
        sent += 1
    seen = partitions_of(settings, sent)
    reserved = {settings.kafka.partitions - 1}
    assert reserved <= seen["hot"], seen  # once hot, the hot project's messages went to the reserved one
    assert not seen["quiet"] & reserved, seen  # quiet events never share it
    assert len(seen["quiet"]) >= 2, seen  # and still spread over the normal partitions
    assert hot_events(client) - before == 300  # batches 2 to 4 of the hot project, nothing of the quiet one
