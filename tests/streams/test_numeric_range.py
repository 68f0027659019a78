"""Numbers PostgreSQL's jsonb cannot store (numeric: at most 131,072 digits before the point, 16,383 after):
valid JSON, and short enough to pass every size limit, e.g. {"n":1e200000}. The batch fast paths keep the
client's properties text, so such an event used to reach the landing COPY, which failed the whole chunk on
every retry: one event stalled landing. Now the API refuses it by index (`properties`), and a landing worker
that still receives one dead-letters that one event and lands the rest."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest

from api.ingest.schemas import EventBuilder, EventRejected, FastEvent
from streams.decode import Reason, Window, decode_message
from warehouse.events import RawEvent, encode_forwarded, encode_raw_event, has_unstorable_number
from warehouse.landing import land_batch

ORG, PROJECT = uuid.uuid4(), uuid.uuid4()

UNSTORABLE = [
    b'{"n":1e200000}',
    b'{"n":1E+131072}',
    b'{"n":-1.5e-16383}',
    b'{"n":0.' + b"0" * 16383 + b"1}",
    b'{"a":{"b":[1,2,{"n":1e-16384}]}}',
]
STORABLE = [
    b'{"n":1e131071}',
    b'{"n":1e-16383}',
    b'{"n":1e400}',
    b'{"text":"1e200000","e":"e99999"}',  # in strings it is text
    b'{"n":' + b"9" * 20_000 + b"}",
    b'{"n":0.' + b"0" * 16382 + b"1}",
]


@pytest.mark.parametrize("props", UNSTORABLE + STORABLE, ids=lambda p: p[:24].decode())
def test_the_check_agrees_with_postgresql(db: psycopg.Connection, props: bytes) -> None:
    try:
        db.execute("SELECT %s::jsonb", (props.decode(),))
        stored = True
    except psycopg.errors.NumericValueOutOfRange:
        stored = False
    assert has_unstorable_number(props) is not stored
    assert stored is (props in STORABLE)


def _item(props: bytes) -> bytes:
    return b'{"event":"e","distinct_id":"u","event_id":"%s","properties":%s}' % (
        str(uuid.uuid4()).encode(),
        props,
    )


def _builder() -> EventBuilder:
    return EventBuilder(
        org_id=ORG,
        project_id=PROJECT,
        received_at=datetime.now(UTC),
        sent_at=None,
        max_properties_bytes=32 * 1024,
        max_properties_depth=8,
        max_past=timedelta(days=30),
        max_future=timedelta(hours=1),
    )


def test_the_api_refuses_the_event_on_both_batch_paths() -> None:
    ev = msgspec.json.decode(_item(b'{"n":1e200000}'), type=FastEvent)
    builder = _builder()
    builder.nul_free = True
    assert builder.forward([ev]) is None  # not forwarded as sent
    with pytest.raises(EventRejected) as exc:
        builder.check(ev)
    assert exc.value.field == "properties"


@pytest.mark.parametrize("fmt", ["packed", "forwarded"])
def test_landing_dead_letters_the_one_event_and_lands_the_rest(db: psycopg.Connection, fmt: str) -> None:
    now = datetime.now(UTC)
    props = [b'{"ok":1}', b'{"n":1e200000}', b'{"ok":2}']
    if fmt == "forwarded":
        value = encode_forwarded(ORG, PROJECT, now, b"[" + b",".join(_item(p) for p in props) + b"]")
    else:
        raws = [RawEvent(ORG, PROJECT, uuid.uuid4(), "e", "u", now, now, msgspec.Raw(p)) for p in props]
        value = b"[" + b",".join(encode_raw_event(r) for r in raws) + b"]"
    out = decode_message(value, Window(retention_days=30, max_future_s=3600))
    assert out.events == 3
    assert [(i, r.reason) for i, _, r in out.rejected] == [(1, Reason.SCHEMA_VIOLATION)]
    assert b"1e200000" in out.rejected[0][1]  # the dead letter is that one event
    assert land_batch(db, out.rows).landed == 2  # used to raise NumericValueOutOfRange, on every retry
