"""PostgresLandingSink driven the way Quix drives it (add() per message, flush() per checkpoint), against the
real warehouse and a real broker for its dead-letter producer: chunks land while messages are still being
added, flush() returns only once all of them committed, and a failed chunk makes flush() raise
backpressure (so Quix commits no offsets and re-reads) instead of returning."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from quixstreams.sinks import SinkBackpressureError

from pulseops.topics import ensure_topics
from streams.sink import PostgresLandingSink
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant
from warehouse.events import pack_raw_events


def _packed(tenant: dict, n: int, per: int) -> list[bytes]:
    now = datetime.now(UTC)
    events = [
        json.dumps(
            {
                "org_id": str(tenant["org_id"]),
                "project_id": str(tenant["project_id"]),
                "event_id": str(uuid.uuid4()),
                "event": "click",
                "distinct_id": f"u-{i % 5}",
                "timestamp": (now - timedelta(seconds=i)).isoformat(),
                "received_at": now.isoformat(),
                "properties": {"i": i},
            }
        ).encode()
        for i in range(n)
    ]
    return [v for s in range(0, n, per) for _, v in pack_raw_events(events[s : s + per])]


@pytest.fixture
def sink(database_url, broker, redis_url):
    settings = make_settings(database_url, broker, redis_url)
    settings.streams.batch_max_rows = 25  # chunks of 25 events: several transactions per checkpoint
    ensure_topics(settings.kafka)  # the fence (streams/fence.py) reads the raw topic's id before each commit
    s = PostgresLandingSink(settings)
    s.setup()
    yield s
    s._drop_connection()


def _count(db: psycopg.Connection) -> int:
    return db.execute("SELECT count(*) FROM events").fetchone()[0]


def test_chunks_land_during_the_checkpoint_and_flush_waits_for_the_last(sink, db):
    tenant = make_tenant(db)
    values = _packed(tenant, 230, per=10)
    for offset, value in enumerate(values):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    # 23 messages of 10 events: a chunk closes at >= 25 events, so 7 chunks of 30 were handed over while
    # adding (each only once one of the `landers` chunks before it committed; the last `landers` may still be
    # landing) and 20 events wait
    assert sink._open.normal.events == 20 and _count(db) >= 210 - 30 * sink.landers
    sink.flush()
    assert _count(db) == 230
    assert db.execute("SELECT sum(events) FROM landed_days").fetchone()[0] == 230


def test_a_failed_chunk_makes_flush_raise_backpressure_and_the_replay_lands_once(sink, db):
    tenant = make_tenant(db)
    values = _packed(tenant, 120, per=20)
    # The landing connections die before the checkpoint: its first chunks fail in the background threads.
    for slot in range(sink.landers):
        db.execute("SELECT pg_terminate_backend(%s)", (sink._connection(slot).info.backend_pid,))
    for offset, value in enumerate(values):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    with pytest.raises(SinkBackpressureError):
        sink.flush()
    assert _count(db) < 120  # Quix now seeks back to the committed offsets and re-reads them all
    for offset, value in enumerate(values):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    sink.flush()
    assert _count(db) == 120
    assert db.execute("SELECT count(DISTINCT event_id) FROM events").fetchone()[0] == 120


def test_chunks_land_on_several_connections_and_a_repeated_event_lands_once(sink, db):
    """Chunks of one checkpoint are in flight on `landers` connections at once; a message delivered twice
    (in two chunks, possibly landing at the same moment) still lands its events once."""
    tenant = make_tenant(db)
    values = _packed(tenant, 300, per=10)
    repeated = [*values[:15], *values[5:], values[20], values[0]]
    for offset, value in enumerate(repeated):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    sink.flush()
    assert sink.landers >= 2 and all(c is not None and not c.closed for c in sink._conns)
    assert _count(db) == 300
    assert db.execute("SELECT count(DISTINCT event_id) FROM events").fetchone()[0] == 300
    assert db.execute("SELECT count(*) FROM event_ids").fetchone()[0] == 300
    assert db.execute("SELECT sum(events) FROM landed_days").fetchone()[0] == 300


def test_an_unexpected_landing_error_is_backpressure_not_an_exception(sink, db, monkeypatch):
    """A failure that is not a database outage must not escape flush(): Quix would keep the checkpoint's
    stored offsets and commit them on the revoke when the consumer closes, after flush() swapped its rows
    out: events lost. As backpressure, Quix seeks back and the re-read lands everything."""
    import streams.sink as sink_module

    tenant = make_tenant(db)
    values = _packed(tenant, 60, per=20)
    real = sink_module.land_batch

    def broken(*args, **kwargs):
        raise ValueError("a bug in landing")

    monkeypatch.setattr(sink_module, "land_batch", broken)
    for offset, value in enumerate(values):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    with pytest.raises(SinkBackpressureError):
        sink.flush()
    assert _count(db) == 0
    monkeypatch.setattr(sink_module, "land_batch", real)
    for offset, value in enumerate(values):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    sink.flush()
    assert _count(db) == 60


def test_a_gap_in_a_partitions_offsets_is_re_read_not_committed_past(sink, db):
    """The embedded broker can hand the consumer the batch after one a concurrent producer has not stored
    yet (reproduced: acknowledged events in the topic below the group's committed offset, never landed).
    A skipped offset fails the checkpoint as backpressure, so Quix re-reads from the committed offsets."""
    tenant = make_tenant(db)
    values = _packed(tenant, 100, per=10)  # offsets 0..9 on one partition
    for offset in (0, 1, 2, 3, 7, 8, 9):  # 4..6 not (yet) visible to the fetch
        sink.add(values[offset], None, 0, [], "events-raw-t", 0, offset)
    with pytest.raises(SinkBackpressureError):
        sink.flush()
    assert _count(db) < 100  # chunks before the gap may have landed (idempotent); no offsets are committed
    for offset, value in enumerate(values):  # the re-read from the committed offset sees them all
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    sink.flush()
    assert _count(db) == 100
    # other partitions have their own sequence, and going back (a re-read after a seek) is no gap
    sink.add(values[0], None, 0, [], "events-raw-t", 1, 500)
    sink.add(values[1], None, 0, [], "events-raw-t", 1, 501)
    sink.add(values[2], None, 0, [], "events-raw-t", 0, 3)
    sink.flush()


def test_a_replaced_broker_stops_the_commit_and_restarts_the_worker(
    tansu_factory, database_url, redis_url, db
):
    """Tansu restarted (crash or the keeper's recycle) comes back empty with a new topic id; a worker that
    survived it must not commit its old positions on the new log (streams/fence.py): flush() then hands over
    to the restart hook and raises backpressure instead of returning (so Quix commits nothing)."""
    tansu = tansu_factory().start()
    settings = make_settings(database_url, tansu.bootstrap, redis_url)
    ensure_topics(settings.kafka)
    restarts: list[str] = []
    s = PostgresLandingSink(settings, on_broker_replaced=lambda: restarts.append("restart"))
    s.setup()
    try:
        tenant = make_tenant(db)
        values = _packed(tenant, 40, per=10)
        for offset, value in enumerate(values[:2]):
            s.add(value, None, 0, [], settings.kafka.topic_raw, 0, offset)
        s.flush()  # same broker: returns, Quix would commit
        assert restarts == [] and _count(db) == 20
        tansu.stop()
        tansu_factory(port=tansu.port).start()
        ensure_topics(settings.kafka, timeout=10)
        for offset, value in enumerate(values[2:], start=2):
            s.add(value, None, 0, [], settings.kafka.topic_raw, 0, offset)
        with pytest.raises(SinkBackpressureError):
            s.flush()
        assert restarts == ["restart"]
        assert _count(db) == 40  # what was read still lands (idempotent); only the commit is refused
    finally:
        s._drop_connection()


def _xids(db: psycopg.Connection, tenant: dict) -> set[str]:
    """The transactions that landed a project's rows."""
    rows = db.execute("SELECT DISTINCT xmin::text FROM events WHERE project_id = %s", (tenant["project_id"],))
    return {r[0] for r in rows}


def test_a_quiet_project_lands_in_its_own_transaction_beside_a_busy_one(sink, db, monkeypatch):
    """A chunk where one project is busy (more than BUSY_PROJECT_ROWS events) lands the other projects'
    rows in a separate transaction, handed over first, so they commit without waiting for the busy COPY;
    every event still lands once. A chunk without a busy project stays one transaction."""
    import streams.sink as sink_module

    monkeypatch.setattr(sink_module, "BUSY_PROJECT_ROWS", 20)
    quiet, hot = make_tenant(db, "quiet-org", "quiet"), make_tenant(db, "hot-org", "hot")
    before = sink_module.metrics.QUIET_FIRST._value.get()
    # quiet 3 events, then hot messages of 10: the chunk closes at 33 events (batch_max_rows 25), 30 hot
    values = [*_packed(quiet, 3, per=3), *_packed(hot, 60, per=10)]
    for offset, value in enumerate(values):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    sink.flush()
    assert sink_module.metrics.QUIET_FIRST._value.get() == before + 1
    assert _count(db) == 63
    assert db.execute("SELECT count(*) FROM event_ids").fetchone()[0] == 63
    assert len(_xids(db, quiet)) == 1 and not _xids(db, quiet) & _xids(db, hot)

    # Two projects far below the threshold: one transaction, as before.
    a, b = make_tenant(db, "a-org", "a"), make_tenant(db, "b-org", "b")
    for offset, value in enumerate([*_packed(a, 3, per=3), *_packed(b, 3, per=3)], start=len(values)):
        sink.add(value, None, 0, [], "events-raw-t", 0, offset)
    sink.flush()
    assert sink_module.metrics.QUIET_FIRST._value.get() == before + 1
    assert _xids(db, a) == _xids(db, b) and len(_xids(db, a)) == 1
