"""streams/trace.py: with STREAMS_TRACE_FILE set, each landing transaction leaves one timing record."""

from __future__ import annotations

import json

import pytest

import streams.trace as trace
from pulseops.topics import ensure_topics
from streams.sink import PostgresLandingSink
from tests.fixtures.system import make_settings
from tests.streams.test_sink import _packed
from tests.utils.tenants import make_tenant


@pytest.fixture
def sink(database_url, broker, redis_url):
    settings = make_settings(database_url, broker, redis_url)
    ensure_topics(settings.kafka)
    s = PostgresLandingSink(settings)
    s.setup()
    yield s
    s._drop_connection()


def test_each_landing_transaction_and_flush_is_traced_in_order(sink, db, tmp_path, monkeypatch):
    path = tmp_path / "trace.jsonl"
    monkeypatch.setattr(trace, "PATH", str(path))
    tenant = make_tenant(db)
    for offset, value in enumerate(_packed(tenant, 20, per=10)):
        sink.add(value, None, 1_000, [], "events-raw-t", 0, offset)
    sink.flush()
    landing, flush = [json.loads(line) for line in path.read_text().splitlines()]
    assert landing["rows"] == 20 and [t for _, t in landing["adds"]] == [1.0, 1.0]
    assert landing["adds"][0][0] <= landing["handed"] <= landing["began"] <= landing["committed"]
    assert flush["flush"] <= landing["handed"] and landing["committed"] <= flush["done"]


def test_nothing_is_written_unless_asked(sink, db, tmp_path, monkeypatch):
    monkeypatch.setattr(trace, "PATH", None)
    monkeypatch.chdir(tmp_path)
    for offset, value in enumerate(_packed(make_tenant(db), 10, per=10)):
        sink.add(value, None, 1_000, [], "events-raw-t", 0, offset)
    sink.flush()
    assert sink._open.normal.adds == [] and list(tmp_path.iterdir()) == []
