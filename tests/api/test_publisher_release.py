"""A closed ingest publisher is freed at once, and with it librdkafka's threads (api/ingest/publisher.py
`_weak`): before, its producers' error callback held the Publisher in a cycle that only the garbage
collector broke, and until then the producers kept reconnecting to a broker that had gone (seen at the end
of test sessions: "pulseops-ingest#producer-41 ... Connection refused")."""

from __future__ import annotations

import gc
import uuid
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from fastapi.testclient import TestClient

from api.ingest.publisher import Publisher
from api.main import create_app
from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant, new_event


@contextmanager
def collector_off() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def test_a_closed_publisher_is_freed_without_the_garbage_collector(broker: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = KafkaSettings(
        bootstrap=broker,
        topic_raw=f"raw-{suffix}",
        topic_dlq=f"dlq-{suffix}",
        hot_partitions=1,
        topic_overflow="",
    )
    ensure_topics(settings, 10)
    with collector_off():
        publisher = Publisher(settings)
        assert publisher._hot_producer is not None  # both producers carry the error callback
        publisher.close()
        ref = weakref.ref(publisher)
        del publisher
        assert ref() is None, "a closed Publisher outlived its last reference (a cycle holds it)"


def test_the_api_frees_its_publisher_when_it_stops(
    db: psycopg.Connection, database_url: str, broker: str, redis_url: str
) -> None:
    settings = make_settings(database_url, broker, redis_url)
    tenant = make_tenant(db)
    with collector_off():
        with TestClient(create_app(settings)) as client:
            resp = client.post("/v1/events", json=new_event(), headers={"X-API-Key": tenant["ingest_key"]})
            assert resp.status_code == 202, resp.text
            ref = weakref.ref(client.app.state.publisher)
        assert ref() is None, "the stopped API still holds its Publisher (and librdkafka's threads)"
