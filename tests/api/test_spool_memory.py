"""The reconciler's reads of sealed segments stay off the heap: a segment is mapped, not copied into a bytes
object of its size. Under batch load each read buffer (tens of MiB) was kept by glibc in the reading thread's
malloc arena, and the API processes' RSS grew by ~370 MiB over 10 M events (api/ingest/spool.py
read_records)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from api.ingest.reconcile import _fold
from api.ingest.spool import ACK, DATA, Ack, Data, DataHead, frame, read_records

SEGMENT_MIB = 8


def _segment(tmp_path: Path) -> Path:
    """A sealed segment like one second of batch ingest: requests of ~140 kB, each acknowledged."""
    path = tmp_path / f"{1:020d}-1-deadbeef.seg"
    value = b"[" + b"x" * 140_000 + b"]"
    with path.open("wb") as f:
        seq = 0
        while f.tell() < SEGMENT_MIB * 2**20:
            seq += 1
            f.write(frame(DATA, Data(seq, [(b"key", value)])))
            f.write(frame(ACK, Ack(seq, "topic", {seq % 6: seq})))
    return path


def _peak(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_reading_a_segment_does_not_allocate_its_size(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    peak = _peak(lambda: sum(1 for _ in read_records(path, heads=True)))
    assert peak < 2**20, f"reading an {SEGMENT_MIB} MiB segment allocated {peak / 2**20:.1f} MiB at once"
    peak = _peak(lambda: _fold(path))
    assert peak < 2**20, f"the reconciler's pass allocated {peak / 2**20:.1f} MiB at once"


def test_full_records_outlive_the_mapping(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    records = list(read_records(path))  # the map is closed once the generator is done
    data = [r for r in records if isinstance(r, Data)]
    assert data and all(r.messages[0][1][:2] == b"[x" and len(r.messages[0][1]) == 140_002 for r in data)
    assert [r.seq for r in read_records(path, heads=True) if isinstance(r, DataHead)] == [r.seq for r in data]


def test_an_empty_segment_has_no_records(tmp_path: Path) -> None:
    path = tmp_path / "empty.seg"
    path.write_bytes(b"")
    assert list(read_records(path)) == []


def test_a_reader_stopped_early_releases_the_segment(tmp_path: Path) -> None:
    path = _segment(tmp_path)
    reader = read_records(path, heads=True)
    assert isinstance(next(reader), DataHead)
    reader.close()  # no BufferError: the payload view is released before each record is handed out
