"""Live traffic lands before its checkpoint ends (streams/sink.py EARLY_AFTER_S), one early chunk at a time;
a backlog still waits for full chunks or the checkpoint's flush."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

import streams.sink as sink_module
from pulseops.topics import ensure_topics
from streams.sink import PostgresLandingSink
from tests.fixtures.system import make_settings
from tests.streams.test_sink import _packed
from tests.utils.tenants import make_tenant


@pytest.fixture
def sink(database_url, broker, redis_url, monkeypatch):
    monkeypatch.setattr(sink_module, "EARLY_AFTER_S", 0.0)
    settings = make_settings(database_url, broker, redis_url)
    ensure_topics(settings.kafka)
    s = PostgresLandingSink(settings)
    s.setup()
    yield s
    s._drop_connection()


def _count(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM events").fetchone()[0]


def _wait_for(predicate, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not reached"
        time.sleep(0.01)


def test_live_messages_land_before_the_checkpoint_ends_one_chunk_at_a_time(sink, db, monkeypatch):
    tenant = make_tenant(db)
    values = _packed(tenant, 30, per=10)
    release = threading.Event()
    real = sink_module.land_batch

    def held(*args, **kwargs):
        release.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(sink_module, "land_batch", held)
    live = int(time.time() * 1000)
    sink.add(values[0], None, live, [], "events-raw-t", 0, 0)
    assert sink._open.normal.events == 0  # handed to a landing thread at once
    sink.add(values[1], None, live, [], "events-raw-t", 0, 1)
    assert sink._open.normal.events == 10  # the first is still landing: this one waits
    release.set()
    _wait_for(lambda: _count(db) == 10)
    sink.add(values[2], None, live, [], "events-raw-t", 0, 2)
    assert sink._open.normal.events == 0  # both waiting messages go as the next chunk
    _wait_for(lambda: _count(db) == 30)  # before any flush()
    sink.flush()
    assert _count(db) == 30


def test_a_backlog_waits_for_the_checkpoint(sink, db):
    tenant = make_tenant(db)
    old = int((time.time() - 3600) * 1000)  # produced an hour ago: catching up
    for offset, value in enumerate(_packed(tenant, 30, per=10)):
        sink.add(value, None, old, [], "events-raw-t", 0, offset)
    assert sink._open.normal.events == 30
    time.sleep(0.2)
    assert _count(db) == 0
    sink.flush()
    assert _count(db) == 30
