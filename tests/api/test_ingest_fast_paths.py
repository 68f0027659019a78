"""The batch fast path keeps properties as the client's JSON text (FastEvent) and the spool reconciler reads
Data records without their messages (DataHead): both must decide exactly as the slow paths do."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import msgspec
import pytest

from api.ingest.reconcile import _fold
from api.ingest.schemas import (
    EventBuilder,
    EventRejected,
    FastEvent,
    IngestEvent,
    split_validation_error,
)
from api.ingest.spool import ACK, DATA, Ack, Data, DataHead, frame, read_records

PROPERTIES = [
    b'{"path":"/pricing","plan":"pro"}',
    b'{ "spaced" : [ 1 , 2 ] ,\n "nested": {"a": {"b": 1}} }',  # whitespace is fine, stored or not
    b'{"caf\\u00e9": "\\u00e9t\\u00e9"}',
    b"{}",
    b"null",
    b"[1, 2]",
    b'"text"',
    b"17",
    b'{"nul": "a\\u0000b"}',
    b'{"backslash": "printf(\'\\\\u0000\')"}',  # literal backslash-u0000 text is not a NUL
    b'{"deep": ' + b'{"a": ' * 9 + b"1" + b"}" * 9 + b"}",
    b'{"deep": ' + b'{"a": ' * 6 + b"1" + b"}" * 6 + b"}",
    b'{"brackets": "{{{{{{{{{{[[[[[["}',  # many brackets inside a string are not nesting
    b'{"pad": "' + b"x" * 32_000 + b'"}',
    b'{"pad": "' + b"x" * 33_000 + b'"}',
    b'{"pad":' + b" " * 2_000 + b'"' + b"x" * 31_000 + b'"}',  # over the cap as sent, under it compacted
]


def _builder() -> EventBuilder:
    return EventBuilder(
        org_id=uuid.uuid4(),
        project_id=uuid.uuid4(),
        received_at=datetime.now(UTC),
        sent_at=None,
        max_properties_bytes=32 * 1024,
        max_properties_depth=8,
        max_past=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


def _outcome(builder: EventBuilder, kind: type, body: bytes) -> tuple[str, object]:
    try:
        ev = msgspec.json.decode(body, type=kind)
    except msgspec.ValidationError as exc:
        return ("rejected", split_validation_error(exc))
    try:
        raw = builder.check(ev)
    except EventRejected as exc:
        return ("rejected", (exc.field, exc.reason))
    return ("accepted", json.loads(bytes(raw.properties)))


@pytest.mark.parametrize("properties", PROPERTIES, ids=range(len(PROPERTIES)))
def test_fast_event_decides_like_ingest_event(properties: bytes) -> None:
    body = b'{"event": "e", "distinct_id": "u", "properties": ' + properties + b"}"
    builder = _builder()
    slow = _outcome(builder, IngestEvent, body)
    fast = _outcome(builder, FastEvent, body)
    assert fast == slow
    if fast[0] == "accepted":
        raw = builder.check(msgspec.json.decode(body, type=FastEvent))
        assert len(bytes(raw.properties)) <= 32 * 1024  # what is stored stays under the cap


def test_fast_event_without_properties_stores_an_empty_object() -> None:
    raw = _builder().check(msgspec.json.decode(b'{"event": "e", "distinct_id": "u"}', type=FastEvent))
    assert bytes(raw.properties) == b"{}"


def test_event_time_checks_still_apply_with_a_timestamp() -> None:
    old = (datetime.now(UTC) - timedelta(days=60)).isoformat()
    body = f'{{"event": "e", "distinct_id": "u", "timestamp": "{old}"}}'.encode()
    with pytest.raises(EventRejected) as exc:
        _builder().check(msgspec.json.decode(body, type=FastEvent))
    assert exc.value.field == "timestamp"


def test_heads_read_the_same_records_without_messages(tmp_path: Path) -> None:
    path = tmp_path / "x.seg"
    data = Data(7, [(b"k", b"[" + b"v" * 50_000 + b"]")])
    path.write_bytes(bytes(frame(DATA, data) + frame(ACK, Ack(7, "topic", {0: 3}))))
    assert list(read_records(path)) == [data, Ack(7, "topic", {0: 3})]
    assert list(read_records(path, heads=True)) == [DataHead(7), Ack(7, "topic", {0: 3})]
    heads, full = _fold(path), _fold(path, full=True)
    assert heads[7].ack == full[7].ack == Ack(7, "topic", {0: 3})
    assert full[7].data == data


def test_a_corrupt_payload_stops_the_heads_read_too(tmp_path: Path) -> None:
    path = tmp_path / "x.seg"
    first = frame(DATA, Data(1, [(b"k", b"v1")]))
    second = bytearray(frame(DATA, Data(2, [(b"k", b"v2")])))
    second[-1] ^= 0xFF
    path.write_bytes(bytes(first + second + frame(ACK, Ack(1, "t", {0: 1}))))
    assert list(read_records(path, heads=True)) == [DataHead(1)]


def _forwardable_by_check(builder: EventBuilder, ev: FastEvent) -> bool:
    """What the per-event path decides: accepted, and carried as sent (api/ingest/service.py _forwardable)."""
    try:
        raw = builder.check(ev)
    except EventRejected:
        return False
    return ev.event_id is not None and ev.sent_at is None and raw.properties is ev.properties


_NOW = datetime.now(UTC)
ITEMS = [
    {},
    {"event_id": None},
    {"timestamp": (_NOW - timedelta(days=2)).isoformat()},
    {"timestamp": (_NOW - timedelta(days=60)).isoformat()},  # older than retention
    {"timestamp": (_NOW + timedelta(days=1)).isoformat()},  # too far ahead
    {"timestamp": "2026-11-25T10:00:00"},  # no UTC offset
    {"timestamp": (_NOW - timedelta(hours=1)).astimezone(timezone(timedelta(hours=5))).isoformat()},
    {"sent_at": _NOW.isoformat()},
]


@pytest.mark.parametrize("item", ITEMS, ids=range(len(ITEMS)))
@pytest.mark.parametrize("properties", PROPERTIES, ids=range(len(PROPERTIES)))
def test_forward_decides_like_check(properties: bytes, item: dict) -> None:
    """`EventBuilder.forward` (a whole valid batch as sent, no RawEvent per event) says yes exactly when
    `check` accepts every item unchanged; otherwise None, and the per-event path decides and names the field."""
    fields = {"event": "e", "distinct_id": "u", "event_id": str(uuid.uuid4()), **item}
    body = json.dumps(fields)[:-1].encode() + b', "properties": ' + properties + b"}"
    try:
        ev = msgspec.json.decode(body, type=FastEvent)
    except msgspec.ValidationError:
        return  # the schema refuses it: the per-item path reports it
    builder = _builder()
    builder.nul_free = b"\\u0000" not in body
    # a body with a \u0000 escape (even literal backslash text) takes the per-event path, which still forwards it
    expected = builder.nul_free and _forwardable_by_check(builder, ev)
    assert builder.forward([ev]) == ([ev.event_id] if expected else None)
    good = msgspec.json.decode(
        b'{"event": "e", "distinct_id": "u", "event_id": "%s"}' % uuid.uuid4().hex.encode(), type=FastEvent
    )
    assert builder.forward([good, ev, good]) == (
        [good.event_id, ev.event_id, good.event_id] if expected else None
    )
