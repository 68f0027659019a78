"""streams.decode: one `events-raw` message (format 1 or packed format 2) -> landing rows and dead-letter
reasons. Pure: no services."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from streams.decode import MAX_PROPERTIES_BYTES, Reason, Rejected, Window, _Event, decode, decode_message
from warehouse.events import RawEvent, encode_forwarded, encode_raw_event, pack_raw_events, split_message

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
WINDOW = Window(retention_days=90, max_future_s=24 * 3600, now=NOW)
ORG, PROJECT, EVENT = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()


def message(**overrides) -> bytes:
    """A raw message as JSON; `properties` is embedded verbatim when given as bytes."""
    body: dict = {
        "org_id": str(ORG),
        "project_id": str(PROJECT),
        "event_id": str(EVENT),
        "event": "page_view",
        "distinct_id": "user-1",
        "timestamp": "2026-11-25T11:00:00Z",
        "received_at": "2026-11-25T11:00:01Z",
        "properties": {"path": "/"},
        "v": 1,
    }
    raw_props = overrides.pop("raw_properties", None)
    body.update(overrides)
    for name in [k for k, v in body.items() if v is ...]:
        del body[name]
    out = json.dumps(body).encode()
    if raw_props is not None:
        out = out.replace(b'"properties": {"path": "/"}', b'"properties": ' + raw_props)
    return out


def rejected(value: bytes | None) -> Rejected:
    out = decode(value, WINDOW)
    assert isinstance(out, Rejected), out
    assert out.detail
    return out


def test_valid_message_round_trips_to_a_landing_row() -> None:
    ev = RawEvent(
        org_id=ORG,
        project_id=PROJECT,
        event_id=EVENT,
        event="purchase",
        distinct_id="user-ü",
        timestamp=datetime(2026, 11, 25, 13, 30, tzinfo=timezone(timedelta(hours=2))),
        received_at=datetime(2026, 11, 25, 11, 30, 2, 123000, tzinfo=UTC),
        properties=msgspec.Raw(b'{"amount":9.5,"items":["a","b"],"nested":{"k":null}}'),
    )
    row = decode(encode_raw_event(ev), WINDOW)
    assert row == (
        PROJECT,
        datetime(2026, 11, 25, 11, 30, tzinfo=UTC),
        EVENT,
        ORG,
        "purchase",
        "user-ü",
        datetime(2026, 11, 25, 11, 30, 2, 123000, tzinfo=UTC),
        '{"amount":9.5,"items":["a","b"],"nested":{"k":null}}',
    )
    assert row[1].utcoffset() == timedelta(0)  # landed in UTC whatever offset it was sent with
    assert row[1].date() == datetime(2026, 11, 25).date()


def test_missing_properties_and_version_default() -> None:
    row = decode(message(properties=..., v=...), WINDOW)
    assert isinstance(row, tuple)
    assert row[7] == "{}"


@pytest.mark.parametrize(
    "value",
    [None, b"", b"{not json", b'{"event": "x"', b"\xff\xfe"],
    ids=["none", "empty", "bad", "cut", "bytes"],
)
def test_invalid_json(value: bytes | None) -> None:
    assert rejected(value).reason is Reason.INVALID_JSON


@pytest.mark.parametrize(
    "value",
    [
        message(timestamp="2026-11-25T11:00:00"),  # naive
        message(received_at="2026-11-25T11:00:01"),  # naive
        message(event=""),
        message(distinct_id=""),
        message(event="e" * 201),
        message(event_id="not-a-uuid"),
        message(org_id=...),
        message(project_id=...),
        message(timestamp=...),
        message(event=5),
        b"[1, 2]",
        b'"just a string"',
    ],
    ids=[
        "naive-timestamp",
        "naive-received-at",
        "empty-event",
        "empty-distinct-id",
        "event-too-long",
        "bad-event-id",
        "no-org",
        "no-project",
        "no-timestamp",
        "event-int",
        "array",
        "string",
    ],
)
def test_schema_violation(value: bytes) -> None:
    assert rejected(value).reason is Reason.SCHEMA_VIOLATION


@pytest.mark.parametrize("version", [0, 2, 99])
def test_unsupported_version(version: int) -> None:
    out = rejected(message(v=version))
    assert out.reason is Reason.UNSUPPORTED_VERSION
    assert str(version) in out.detail


@pytest.mark.parametrize("props", [b"[1, 2]", b'"text"', b"42", b"null", b"true"])
def test_properties_not_object(props: bytes) -> None:
    assert rejected(message(raw_properties=props)).reason is Reason.PROPERTIES_NOT_OBJECT


def test_properties_too_large() -> None:
    big = message(properties={"pad": "x" * MAX_PROPERTIES_BYTES})
    assert rejected(big).reason is Reason.PROPERTIES_TOO_LARGE
    fits = message(properties={"pad": "x" * (MAX_PROPERTIES_BYTES - 20)})
    assert isinstance(decode(fits, WINDOW), tuple)


@pytest.mark.parametrize(
    "value",
    [
        message(event="a\x00b"),
        message(distinct_id="\x00"),
        message(properties={"path": "/\x00"}),
        message(properties={"k\x00": 1}),
    ],
    ids=["event", "distinct-id", "property-value", "property-key"],
)
def test_nul_character(value: bytes) -> None:
    assert rejected(value).reason is Reason.NUL_CHARACTER


@pytest.mark.parametrize(
    ("timestamp", "reason"),
    [
        ("2026-08-27T11:59:00Z", Reason.TIMESTAMP_TOO_OLD),  # 90 days and a minute before NOW
        ("1970-01-01T00:00:00Z", Reason.TIMESTAMP_TOO_OLD),
        ("2026-11-26T12:01:00Z", Reason.TIMESTAMP_IN_FUTURE),  # a day and a minute after NOW
        ("2026-11-26T13:01:00+01:00", Reason.TIMESTAMP_IN_FUTURE),  # same instant, other offset
        ("2999-01-01T00:00:00Z", Reason.TIMESTAMP_IN_FUTURE),
    ],
)
def test_timestamp_outside_the_window(timestamp: str, reason: Reason) -> None:
    assert rejected(message(timestamp=timestamp)).reason is reason


@pytest.mark.parametrize(
    "timestamp", ["2026-08-27T12:01:00Z", "2026-11-26T11:59:00Z", "2026-11-26T12:59:00+01:00"]
)
def test_timestamp_just_inside_the_window_lands(timestamp: str) -> None:
    row = decode(message(timestamp=timestamp), WINDOW)
    assert isinstance(row, tuple)
    assert row[1] == datetime.fromisoformat(timestamp).astimezone(UTC)


@pytest.mark.parametrize("timestamp", ["9999-12-31T23:00:00-05:00", "0001-01-01T00:30:00+01:00"])
def test_timestamp_outside_datetime_range_in_utc_is_rejected_not_raised(timestamp: str) -> None:
    out = decode(message(timestamp=timestamp), WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason in (Reason.TIMESTAMP_IN_FUTURE, Reason.TIMESTAMP_TOO_OLD)


def test_deeply_nested_message_is_rejected_not_raised() -> None:
    deep = b'{"a": ' + b"[" * 3000 + b"]" * 3000 + b"}"
    out = decode(message(raw_properties=deep), WINDOW)
    assert isinstance(out, Rejected)
    assert out.reason in (Reason.INVALID_JSON, Reason.SCHEMA_VIOLATION)


# -- decode_message: format 1 and format 2 ("packed", warehouse/events.py) -----------------------------------


def packed(*values: bytes) -> bytes:
    """A format-2 value exactly as ingest builds it."""
    [(start, value)] = pack_raw_events(list(values))
    assert start == 0
    return value


def test_decode_message_packed_equals_each_event_decoded_alone() -> None:
    values = [message(event_id=str(uuid.uuid4()), event=f"e{i}") for i in range(5)]
    out = decode_message(packed(*values), WINDOW)
    assert out.events == 5 and out.rejected == []
    assert out.rows == [decode(v, WINDOW) for v in values]


def test_decode_message_format_1_is_one_event() -> None:
    out = decode_message(message(), WINDOW)
    assert (out.events, out.rows, out.rejected) == (1, [decode(message(), WINDOW)], [])
    bad = decode_message(b"{not json", WINDOW)
    assert bad.events == 1 and bad.rows == []
    [(index, payload, rejected_)] = bad.rejected
    assert (index, payload, rejected_.reason) == (None, b"{not json", Reason.INVALID_JSON)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (message(event_id="not-a-uuid"), Reason.SCHEMA_VIOLATION),  # the one-call decode refuses the array
        (message(v=2), Reason.UNSUPPORTED_VERSION),  # decodes, refused per event afterwards
        (message(timestamp="2020-01-01T00:00:00Z"), Reason.TIMESTAMP_TOO_OLD),
        (message(raw_properties=b"[1]"), Reason.PROPERTIES_NOT_OBJECT),
        (b"42", Reason.SCHEMA_VIOLATION),  # not even an object
    ],
    ids=["bad-uuid", "version", "too-old", "properties-array", "number"],
)
def test_a_bad_event_in_a_packed_message_is_rejected_alone_with_its_own_bytes(
    bad: bytes, reason: Reason
) -> None:
    good = [message(event_id=str(uuid.uuid4())) for _ in range(3)]
    out = decode_message(packed(good[0], bad, good[1], good[2]), WINDOW)
    assert out.events == 4
    assert out.rows == [decode(v, WINDOW) for v in good]
    [(index, payload, rejected_)] = out.rejected
    assert (index, payload, rejected_.reason) == (1, bad, reason)


@pytest.mark.parametrize(
    "value",
    [b'[{"org_id": "x"', b"[" + message() + b",", b"[\xff]", b"[" + message() + b"] trailing"],
    ids=["cut", "cut-after-event", "bytes", "trailing"],
)
def test_a_corrupt_packed_value_is_rejected_whole(value: bytes) -> None:
    out = decode_message(value, WINDOW)
    assert out.rows == []
    [(index, payload, rejected_)] = out.rejected
    assert (index, payload, rejected_.reason) == (None, value, Reason.INVALID_JSON)
    assert "packed message" in rejected_.detail


def test_an_empty_packed_message_carries_no_events() -> None:
    out = decode_message(b"[]", WINDOW)
    assert (out.events, out.rows, out.rejected) == (0, [], [])


def test_the_landing_struct_mirrors_raw_event() -> None:
    """streams.decode._Event is RawEvent without GC tracking; a field added to the contract must show here."""
    mirror = [(f.name, f.type, f.default) for f in msgspec.structs.fields(_Event)]
    contract = [(f.name, f.type, f.default) for f in msgspec.structs.fields(RawEvent)]
    assert mirror == contract


# -- format 3: the client's validated batch forwarded in an envelope (warehouse/events.py) -------------------

RECEIVED = datetime(2026, 11, 25, 11, 0, 1, tzinfo=UTC)


def item(**overrides) -> bytes:
    """A client item as the API forwards it; `...` drops a field."""
    body: dict = {"event": "page_view", "distinct_id": "user-1", "properties": {"path": "/"},
                  "event_id": str(uuid.uuid4())}  # fmt: skip
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not ...}).encode()


def forwarded(*items: bytes) -> bytes:
    return encode_forwarded(ORG, PROJECT, RECEIVED, b"[" + b", ".join(items) + b"]")


def as_format_1(value: bytes) -> bytes:
    """The format-1 value a forwarded item stands for, built from the item's JSON."""
    body = json.loads(value)
    return message(event_id=body["event_id"], event=body["event"], distinct_id=body["distinct_id"],
                   timestamp=body.get("timestamp", "2026-11-25T11:00:01Z"),
                   properties=body.get("properties", {}))  # fmt: skip


def test_a_forwarded_message_lands_like_the_raw_events_it_stands_for() -> None:
    items = [item(event=f"e{i}") for i in range(4)]
    items += [item(timestamp="2026-11-25T12:30:00+01:00"), item(properties=...)]
    value = forwarded(*items)
    out = decode_message(value, WINDOW)
    assert out.events == 6 and out.rejected == []
    assert out.rows == [decode(as_format_1(i), WINDOW) for i in items]
    assert out.rows[4][1] == datetime(2026, 11, 25, 11, 30, tzinfo=UTC)  # normalised to UTC on landing
    assert out.rows[5][1] == RECEIVED and out.rows[5][-1] == "{}"  # no timestamp: received_at
    # re-publication (api/ingest/reconcile.py) and tests read it as format-1 values
    assert [decode(v, WINDOW) for v in split_message(value)] == out.rows


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (item(event_id="not-a-uuid"), Reason.SCHEMA_VIOLATION),  # the one-call decode refuses the envelope
        (item(timestamp="2020-01-01T00:00:00Z"), Reason.TIMESTAMP_TOO_OLD),  # refused per event afterwards
        (b"42", Reason.SCHEMA_VIOLATION),
    ],
    ids=["bad-uuid", "too-old", "number"],
)
def test_a_bad_item_in_a_forwarded_message_is_rejected_alone(bad: bytes, reason: Reason) -> None:
    good = [item() for _ in range(3)]
    out = decode_message(forwarded(good[0], bad, good[1], good[2]), WINDOW)
    assert out.events == 4
    assert out.rows == [decode(as_format_1(v), WINDOW) for v in good]
    [(index, payload, rejected_)] = out.rejected
    assert (index, rejected_.reason) == (1, reason)
    if reason == Reason.TIMESTAMP_TOO_OLD:  # decodable: dead-lettered as the format-1 value it stands for
        assert decode(payload, WINDOW).reason == reason
    else:
        assert payload == bad


def test_a_corrupt_forwarded_envelope_is_rejected_whole() -> None:
    value = forwarded(item())[:-2]
    out = decode_message(value, WINDOW)
    assert out.rows == []
    [(index, payload, rejected_)] = out.rejected
    assert (index, payload, rejected_.reason) == (None, value, Reason.INVALID_JSON)
