"""The landing worker's GC thresholds (streams/__main__.py): the rows of every chunk a worker can hold at once
(the open checkpoint's chunk and LANDERS in flight, PIPELINE_ROWS events each) fit under the young-generation
threshold, so the cyclic GC does not walk live rows while the main thread holds the GIL. Pure: no services."""

from __future__ import annotations

import gc
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from streams.__main__ import GC_YOUNG_THRESHOLD, tune_gc
from streams.decode import Window, decode_message
from streams.sink import LANDERS, PIPELINE_ROWS
from warehouse.events import RawEvent, encode_raw_event, pack_raw_events

NOW = datetime.now(UTC)


def packed_messages(events: int, per_message: int = 100) -> list[bytes]:
    """Packed (format 2) values like ingest publishes: one project per message, distinct event ids."""
    org, project = uuid.uuid4(), uuid.uuid4()
    props = msgspec.Raw(b'{"path":"/docs","plan":"pro","country":"DE","device":"mobile"}')
    out: list[bytes] = []
    for first in range(0, events, per_message):
        group = []
        for i in range(min(per_message, events - first)):
            event = RawEvent(org_id=org, project_id=project, event_id=uuid.uuid4(), event="page_view",
                             distinct_id=f"u-{first + i}", timestamp=NOW - timedelta(seconds=i), received_at=NOW,
                             properties=props)  # fmt: skip
            group.append(encode_raw_event(event))
        out.extend(value for _, value in pack_raw_events(group))
    return out


@pytest.fixture
def worker_gc() -> Iterator[list[int]]:
    """The worker's GC settings in this process; yields the generations of the collections that start."""
    before = gc.get_threshold()
    started: list[int] = []

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            started.append(info["generation"])

    tune_gc()
    gc.callbacks.append(on_gc)
    try:
        yield started
    finally:
        gc.callbacks.remove(on_gc)
        gc.unfreeze()
        gc.set_threshold(*before)


def hold_chunks(values: list[bytes]) -> list[dict]:
    """Decode into per-chunk dicts keyed as streams/sink.py keys them, all kept alive (as in flight)."""
    window = Window(retention_days=30, max_future_s=3600)
    chunks: list[dict] = [{}]
    for value in values:
        rows = chunks[-1]
        for row in decode_message(value, window).rows:
            rows.setdefault((row[0].int, row[2].int), row)
        if len(rows) >= PIPELINE_ROWS:
            chunks.append({})
    return chunks


def test_chunks_in_flight_fit_under_the_young_threshold(worker_gc: list[int]) -> None:
    values = packed_messages((LANDERS + 1) * PIPELINE_ROWS)
    gc.collect()  # the young count starts from zero, as after any collection in the worker
    worker_gc.clear()
    chunks = hold_chunks(values)
    assert sum(len(c) for c in chunks) == (LANDERS + 1) * PIPELINE_ROWS
    assert worker_gc == []  # no collection walked the live rows
    # headroom: the objects those chunks hold stay well under the threshold, so a busier chunk still fits
    assert gc.get_count()[0] < GC_YOUNG_THRESHOLD // 2


def test_the_previous_threshold_walked_live_rows() -> None:
    """Why the threshold moved: at 50,000 the same chunks set off collections (streams/__main__.py)."""
    values = packed_messages((LANDERS + 1) * PIPELINE_ROWS)
    before = gc.get_threshold()
    started: list[int] = []
    callback = lambda phase, info: started.append(info["generation"]) if phase == "start" else None  # noqa: E731
    gc.collect()
    gc.set_threshold(50_000, 20, 20)
    gc.callbacks.append(callback)
    try:
        hold_chunks(values)
    finally:
        gc.callbacks.remove(callback)
        gc.set_threshold(*before)
    assert len(started) >= 3
