"""The ingest spool's journal format and its reconciler, against a real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from psycopg_pool import ConnectionPool

from api.ingest.publisher import Publisher
from api.ingest.reconcile import Reconciler
from api.ingest.spool import ABORT, ACK, DATA, Abort, Ack, Data, Spool, SpoolUnavailable, frame, read_records
from pulseops.topics import ensure_topics
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows
from tests.utils.tenants import make_tenant
from warehouse.events import RawEvent, decode_raw_event, encode_raw_event, message_key


def _message(tenant: dict, event_id: uuid.UUID | None = None) -> tuple[bytes, bytes]:
    now = datetime.now(UTC)
    raw = RawEvent(
        org_id=tenant["org_id"], project_id=tenant["project_id"], event_id=event_id or uuid.uuid4(),
        event="spooled", distinct_id="u-1", timestamp=now, received_at=now,
    )  # fmt: skip
    return message_key(tenant["project_id"], "u-1"), encode_raw_event(raw)


def _segment(directory: Path, *records: bytes) -> Path:
    """A sealed segment as a process that died would leave it."""
    path = directory / f"{1:020d}-1-deadbeef.seg"
    path.write_bytes(b"".join(records))
    return path


def test_a_torn_tail_is_ignored_and_earlier_records_read(tmp_path: Path) -> None:
    whole = frame(DATA, Data(1, [(b"k", b"v1")])) + frame(ACK, Ack(1, "t", {0: 5}))
    torn = frame(DATA, Data(2, [(b"k", b"v2")]))[:-3]
    path = tmp_path / "x.seg"
    path.write_bytes(whole + torn)
    assert [type(r).__name__ for r in read_records(path)] == ["Data", "Ack"]
    flipped = bytearray(whole)
    flipped[-1] ^= 0xFF  # a corrupt record is not trusted, nor anything after it
    path.write_bytes(bytes(flipped))
    assert [type(r).__name__ for r in read_records(path)] == ["Data"]


def test_concurrent_appends_share_fsyncs(tmp_path: Path, monkeypatch) -> None:
    calls = []
    real = os.fdatasync

    def counting(fd: int) -> None:
        calls.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", counting)
    spool = Spool(tmp_path, segment_max_age_s=60)

    async def many() -> None:
        entries = await asyncio.gather(*(spool.append([(b"k", b"v" * 100)]) for _ in range(200)))
        for e in entries:
            spool.acknowledge(e, "t", {0: 1})

    asyncio.run(many())
    assert 1 <= len(calls) < 50, f"{len(calls)} fsyncs for 200 concurrent requests: no group commit"
    spool.close()
    (segment,) = tmp_path.glob("*.seg")
    records = list(read_records(segment))
    assert (
        sum(isinstance(r, Data) for r in records) == 200 and sum(isinstance(r, Ack) for r in records) == 200
    )


def test_the_markers_of_one_loop_pass_share_one_write_and_hold_their_segment(
    tmp_path: Path, monkeypatch
) -> None:
    """Requests released by one fdatasync are acknowledged in one pass of the event loop: their ACK markers
    go to the file in one write() at the end of that pass, and until then the sealed segment stays open (its
    requests are still in flight). Spool.close() writes what is still buffered."""
    spool = Spool(tmp_path, segment_max_age_s=60)
    writes: list[int] = []
    real_write = os.write

    def counting(fd: int, data) -> int:
        writes.append(fd)
        return real_write(fd, data)

    async def scenario() -> None:
        entries = [spool.write([(b"k", str(i).encode())]) for i in range(20)]
        await asyncio.gather(*(spool.sync(e) for e in entries))
        segment = entries[0].segment
        monkeypatch.setattr(os, "write", counting)
        for e in entries:
            spool.acknowledge(e, "t", {0: e.seq})
        spool._seal(segment)
        assert writes == [] and not segment.closed and segment.inflight == 20
        await asyncio.sleep(0)  # the end of this pass
        assert writes == [segment.fd] and segment.closed and segment.inflight == 0
        acks = [r for r in read_records(segment.path) if isinstance(r, Ack)]
        assert [a.offsets for a in acks] == [{0: e.seq} for e in entries]
        last = spool.write([(b"k", b"last")])
        await spool.sync(last)
        spool.acknowledge(last, "t", {0: 99})
        spool.close()  # before the pass ended: written by close, once
        assert last.segment.closed
        assert [r.seq for r in read_records(last.segment.path) if isinstance(r, Ack)] == [last.seq]
        await asyncio.sleep(0)  # the cancelled pass writes nothing more

    asyncio.run(scenario())
    assert len(writes) == 3  # one marker write per pass, the Data record of `last`, close's marker write
    (_, second) = sorted(tmp_path.glob("*.seg"))
    assert sum(isinstance(r, Ack) for r in read_records(second)) == 1


def test_a_record_asked_to_sync_after_close_is_not_vouched_for_by_another_file(
    tmp_path: Path, monkeypatch
) -> None:
    """A request still running when the Spool closed (shutdown) must not get its durability from an fdatasync
    of whatever file took the closed descriptor's number: 503, not 202."""
    spool = Spool(tmp_path, segment_max_age_s=60)
    calls: list[int] = []
    real = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: (calls.append(fd), real(fd))[1])

    async def scenario() -> None:
        entry = spool.write([(b"k", b"v")])
        fd = entry.segment.fd
        spool.close()
        opened = []  # new files take the lowest free numbers: open until one has the segment's old number
        try:
            while not opened or opened[-1] != fd:
                assert len(opened) < 100
                opened.append(os.open(tmp_path / f"other-{len(opened)}", os.O_WRONLY | os.O_CREAT))
            with pytest.raises(SpoolUnavailable, match="spool closed"):
                await spool.sync(entry)
        finally:
            for other in opened:
                os.close(other)

    asyncio.run(scenario())
    assert calls == []


def _slow_fdatasync(monkeypatch, delay: float = 0.05) -> list[int]:
    calls: list[int] = []
    real = os.fdatasync

    def slow(fd: int) -> None:
        calls.append(fd)
        time.sleep(delay)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", slow)
    return calls


def test_records_written_during_the_broker_round_trip_share_one_fsync(tmp_path: Path, monkeypatch) -> None:
    """Requests journal first and ask for durability after the broker's ack (api/ingest/service.py): all
    written meanwhile are covered by one fdatasync, and none is reported durable before it ran."""
    calls = _slow_fdatasync(monkeypatch, 0.02)
    spool = Spool(tmp_path, segment_max_age_s=60)

    async def scenario() -> None:
        entries = [spool.write([(b"k", str(i).encode())]) for i in range(50)]
        assert calls == [] and entries[0].segment.synced == 0  # writing alone syncs nothing
        await asyncio.gather(*(spool.sync(e) for e in entries))
        assert len(calls) == 1
        assert entries[0].segment.synced >= entries[-1].end
        late = spool.write([(b"k", b"late")])
        await spool.sync(late)  # a record written after that sync needs its own
        assert len(calls) == 2
        for e in [*entries, late]:
            spool.acknowledge(e, "t", {0: 1})

    asyncio.run(scenario())
    spool.close()


def test_a_failed_fsync_fails_every_record_written_before_it(tmp_path: Path, monkeypatch) -> None:
    """After an fdatasync error the kernel may have dropped the dirty pages, and the next fdatasync may then
    succeed without writing them: a record written before the failure is never reported durable, even if
    its request asks only after the failed sync ended (its broker ack came later). New records go to a new
    segment, and their syncs work again."""
    real = os.fdatasync
    fail = {"on": True}

    def flaky(fd: int) -> None:
        time.sleep(0.02)
        if fail["on"]:
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fdatasync", flaky)
    spool = Spool(tmp_path, segment_max_age_s=60)

    async def scenario() -> None:
        a = spool.write([(b"k", b"a")])
        b = spool.write([(b"k", b"b")])
        with pytest.raises(SpoolUnavailable, match="Input/output error"):
            await spool.sync(a)
        fail["on"] = False  # the disk "works" again: a new fdatasync would succeed
        with pytest.raises(SpoolUnavailable):
            await spool.sync(b)
        c = spool.write([(b"k", b"c")])
        assert c.segment is not a.segment and a.segment.sealed
        await spool.sync(c)
        spool.acknowledge(c, "t", {0: 1})

    asyncio.run(scenario())
    spool.close()
    kinds = sorted(type(r).__name__ for path in tmp_path.glob("*.seg") for r in read_records(path))
    assert kinds == ["Abort", "Abort", "Ack", "Data", "Data", "Data"]


def test_a_forgotten_record_does_not_close_the_file_under_its_running_sync(
    tmp_path: Path, monkeypatch
) -> None:
    calls = _slow_fdatasync(monkeypatch, 0.1)
    spool = Spool(tmp_path, segment_max_age_s=60)

    async def scenario() -> None:
        entry = spool.write([(b"k", b"1")])
        waiter = asyncio.ensure_future(spool.sync(entry))
        await asyncio.sleep(0.01)  # its fdatasync is running
        waiter.cancel()  # the request is cancelled (client gone) ...
        spool._seal(entry.segment)
        spool.forget(entry)  # a cancelled request: the segment is released while its fsync runs
        task = entry.segment.sync_task
        await task  # raises OSError (EBADF) if the descriptor was closed under it
        assert entry.segment.closed and len(calls) == 1
        await asyncio.sleep(0)
        with pytest.raises(OSError):
            os.fstat(entry.segment.fd)  # closed once the sync returned

    asyncio.run(scenario())
    spool.close()


@pytest.fixture
def reconciler_for(database_url: str, broker: str, redis_url: str, tmp_path: Path):
    made = []

    def make(**spool_settings):
        settings = make_settings(database_url, broker, redis_url)
        for k, v in spool_settings.items():
            setattr(settings.spool, k, v)
        ensure_topics(settings.kafka, 10)
        publisher = Publisher(settings.kafka)
        publisher.refresh_topic_id()
        pool = ConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True})
        spool = Spool(tmp_path / "spool")
        made.append((publisher, pool, spool))
        return Reconciler(spool, publisher, settings, pool)

    yield make
    for publisher, pool, spool in made:
        spool.close()
        publisher.close()
        pool.close()


def test_an_orphaned_record_is_published_again_unless_it_landed(db, reconciler_for) -> None:
    tenant = make_tenant(db)
    rec = reconciler_for()
    landed_msg, lost_msg = _message(tenant), _message(tenant)
    # One of the two is in the ledger already; the other was acknowledged by a broker that is gone.
    ev = decode_raw_event(landed_msg[1])
    land_rows(db, [(ev.project_id, ev.timestamp, ev.event_id, ev.org_id, ev.event, ev.distinct_id,
                    ev.received_at, "{}")])  # fmt: skip
    path = _segment(
        rec.spool.directory,
        frame(DATA, Data(1, [landed_msg, lost_msg])),
        frame(ACK, Ack(1, "an-earlier-incarnation", {0: 7})),
    )
    result = asyncio.run(rec.run_once())
    assert result.replayed_events == 1 and result.pending == 1
    last = list(read_records(path))[-1]
    assert isinstance(last, Ack) and last.replay == 1
    assert last.topic_id == rec.publisher.topic_id != ""
    # Nothing consumes the topic here, so the record stays until a landing group commits past it.
    assert asyncio.run(rec.run_once()).replayed_events == 0 and path.exists()


def test_a_segment_s_republished_records_are_logged_in_one_line(db, reconciler_for, caplog) -> None:
    """A broker recycle leaves hundreds of records to publish again: one log line per segment, not per record."""
    tenant = make_tenant(db)
    rec = reconciler_for()
    frames = []
    for seq in (1, 2, 3):
        frames += [
            frame(DATA, Data(seq, [_message(tenant), _message(tenant)])),
            frame(ACK, Ack(seq, "gone", {0: seq})),
        ]
    path = _segment(rec.spool.directory, *frames)
    with caplog.at_level(logging.WARNING):
        result = asyncio.run(rec.run_once())
    assert result.replayed_events == 6
    lines = [r.getMessage() for r in caplog.records if "published again" in r.getMessage()]
    assert lines == [
        f"spool: 6 acknowledged events in 3 records of {path.name} were not landed; published again"
    ]


def test_a_record_that_never_lands_is_set_aside_after_max_replays(db, reconciler_for) -> None:
    tenant = make_tenant(db)
    rec = reconciler_for(max_replays=2)
    path = _segment(
        rec.spool.directory,
        frame(DATA, Data(1, [_message(tenant)])),
        frame(ACK, Ack(1, "lost-again", {0: 3}, replay=2)),
    )
    result = asyncio.run(rec.run_once())
    assert result.stuck == 1 and result.replayed_events == 0
    assert not path.exists() and (rec.spool.directory / "stuck" / path.name).exists()


def test_aborted_and_committed_records_let_the_segment_go(db, reconciler_for) -> None:
    tenant = make_tenant(db)
    rec = reconciler_for()
    path = _segment(
        rec.spool.directory,
        frame(DATA, Data(1, [_message(tenant)])),
        frame(ABORT, Abort(1)),  # answered 503: never to be published
    )
    result = asyncio.run(rec.run_once())
    assert result.pruned == 1 and result.replayed_events == 0 and not path.exists()


def test_a_stalled_segment_is_read_once_and_pruned_once_committed(db, reconciler_for, monkeypatch) -> None:
    from confluent_kafka import Consumer, TopicPartition

    import api.ingest.reconcile as reconcile

    tenant = make_tenant(db)
    rec = reconciler_for()
    message = _message(tenant)
    delivery = asyncio.run(rec.publisher.publish([message]))
    path = _segment(
        rec.spool.directory,
        frame(DATA, Data(1, [message])),
        frame(ACK, Ack(1, delivery.topic_id, delivery.offsets)),
    )
    reads = []
    real_fold = reconcile._fold
    monkeypatch.setattr(reconcile, "_fold", lambda p: reads.append(p) or real_fold(p))
    for _ in range(3):  # no landing group committed yet: pending, and read only the first time
        assert asyncio.run(rec.run_once()).pending == 1
    assert len(reads) == 1 and path.exists()
    kafka = rec.settings.kafka
    group = Consumer({"bootstrap.servers": kafka.servers, "group.id": kafka.consumer_group})
    try:
        offsets = [TopicPartition(kafka.topic_raw, p, off + 1) for p, off in delivery.offsets.items()]
        group.commit(offsets=offsets, asynchronous=False)
    finally:
        group.close()
    assert asyncio.run(rec.run_once()).pruned == 1
    assert not path.exists() and len(reads) == 1


def test_a_live_peers_segments_are_left_to_it_and_taken_over_once_it_is_gone(
    db, reconciler_for, tmp_path: Path, monkeypatch
) -> None:
    """Each API process reconciles its own sealed segments: the other live process's are neither read nor
    pruned here (that was a second read of every journaled byte), until its owner lock is released."""
    import api.ingest.reconcile as reconcile

    tenant = make_tenant(db)
    rec = reconciler_for()
    peer = Spool(rec.spool.directory)  # another API process's writer, alive
    entry = peer.write([_message(tenant)])
    peer.abort(entry)  # answered 503: prunable as soon as a reconciler reads it
    peer._seal(entry.segment)
    path = entry.segment.path
    reads = []
    real_fold = reconcile._fold
    monkeypatch.setattr(reconcile, "_fold", lambda p, *a: reads.append(p) or real_fold(p, *a))
    result = asyncio.run(rec.run_once())
    assert reads == [] and path.exists() and result.pruned == 0
    assert result.bytes_left >= path.stat().st_size  # still counted against the spool's size cap
    lock = rec.spool.directory / "owners" / f"{peer.owner}.lock"
    os.close(peer._owner_fd)  # the peer is killed: the kernel drops its flock, the file stays
    peer._owner_fd = None
    result = asyncio.run(rec.run_once())
    assert reads == [path] and result.pruned == 1 and not path.exists()
    assert not lock.exists()  # a dead writer's lock file goes once none of its segments is left
