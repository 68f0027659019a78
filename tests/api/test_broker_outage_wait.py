"""A request that finds the broker gone waits up to `kafka.outage_wait_ms` for it (api/ingest/publisher.py
`Publisher._await_broker`): a broker replaced within the wait, as the embedded broker's keeper does when it
recycles Tansu (pulseops/broker.py), costs requests time, not 503s; a longer outage still answers 503."""

from __future__ import annotations

import threading
import time
import uuid

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from pulseops.settings import Settings
from tests.api.test_ingest_validation import assert_error, make_ingest, read_topic
from tests.fixtures.system import wait_until
from tests.utils.tenants import new_event

pytestmark = pytest.mark.slow


def _with_wait(settings: Settings, wait_ms: int) -> Settings:
    return settings.model_copy(
        update={"kafka": settings.kafka.model_copy(update={"outage_wait_ms": wait_ms})}
    )


@pytest.mark.parametrize("fast_path", [True, False], ids=["asgi-fast-path", "fastapi-routes"])
def test_a_broker_replaced_within_the_wait_costs_no_503(
    db: psycopg.Connection, database_url: str, redis_url: str, tansu_factory, fast_path: bool
) -> None:
    tansu = tansu_factory().start()
    settings, tenant = make_ingest(db, database_url, tansu.bootstrap, redis_url, fast_path=fast_path)
    settings = _with_wait(settings, 4000)
    headers = {"X-API-Key": tenant["ingest_key"]}
    with TestClient(create_app(settings)) as client:
        before = new_event()
        assert client.post("/v1/events", json=before, headers=headers).status_code == 202
        tansu.stop()
        # Like a recycle: the port stays closed for a while, then an empty broker answers on it.
        replacement = threading.Timer(1.0, lambda: tansu_factory(port=tansu.port).start())
        replacement.start()
        accepted, statuses, slowest = [], [], 0.0
        until = time.monotonic() + 2.5
        try:
            while time.monotonic() < until:
                ev = new_event()
                started = time.monotonic()
                resp = client.post("/v1/events", json=ev, headers=headers)
                slowest = max(slowest, time.monotonic() - started)
                statuses.append(resp.status_code)
                if resp.status_code == 202:
                    accepted.append(uuid.UUID(ev["event_id"]))
        finally:
            replacement.join()
        assert set(statuses) == {202}, statuses
        assert slowest >= 0.5, "no request met the outage: the test proves nothing"
        # Every 202 is on the new broker: those of the outage were produced to it, and the one acknowledged
        # before the stop (lost with the old broker, never landed) is published again by the spool.
        expected = sorted([uuid.UUID(before["event_id"]), *accepted])
        wait_until(
            lambda: (
                sorted(e.event_id for e in read_topic(tansu.bootstrap, settings.kafka.topic_raw)) == expected
            ),
            20,
            "every acknowledged event on the replacement broker",
            interval=1.0,
        )


def test_an_outage_longer_than_the_wait_answers_503_after_it(
    db: psycopg.Connection, database_url: str, redis_url: str, tansu_factory
) -> None:
    tansu = tansu_factory().start()
    settings, tenant = make_ingest(db, database_url, tansu.bootstrap, redis_url)
    settings = _with_wait(settings, 600)
    headers = {"X-API-Key": tenant["ingest_key"]}
    with TestClient(create_app(settings)) as client:
        assert client.post("/v1/events", json=new_event(), headers=headers).status_code == 202
        tansu.stop()
        # The first request may meet a producer that has not noticed yet: it waits for librdkafka's own
        # delivery timeout. Once the publisher knows the broker is down, each request waits the outage wait.
        wait_until(lambda: client.get("/readyz").status_code == 503, 10, "the broker noticed as down")
        for _ in range(3):
            started = time.monotonic()
            resp = client.post("/v1/events", json=new_event(), headers=headers)
            took = time.monotonic() - started
            assert_error(resp, 503, "broker_unavailable", "body")
            assert int(resp.headers["Retry-After"]) >= 1
            assert 0.55 <= took < 3.0, took
