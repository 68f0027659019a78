"""bytes from `events-raw` -> landing rows and dead-letter reasons. Pure: testable without Kafka.

`decode` takes one format-1 value (one RawEvent); `decode_message` takes any `events-raw` value, format 1,
format 2 ("packed", a JSON array of RawEvents) or format 3 ("forwarded", the client's validated batch in an
envelope; see warehouse/events.py), and answers per event: a bad event
inside a packed message is rejected alone, with its own bytes and its index in the message, and only a value
that is not a JSON array at all is rejected whole.

Speed (the worker's Python time is its first limit, see streams/sink.py): a packed value is decoded in one
msgspec call into `_Event`s, a gc=False mirror of RawEvent (the cyclic GC then has a third fewer objects to
walk per event: measured 4.2 -> 1.4 us/event for the decode alone under the default GC thresholds), and
only a value that fails that call is split and decoded element by element to find the bad ones.

Reason codes are stable snake_case strings: dashboards and alerts group by them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from enum import StrEnum

import msgspec

from warehouse.events import (
    SCHEMA_VERSION,
    ForwardedItem,
    Name,
    RawEvent,
    UtcTime,
    decode_forwarded,
    decode_forwarded_raw,
    decode_raw_event,
    encode_raw_event,
    forwarded_event,
    has_nul_escape,
    has_unstorable_number,
    is_forwarded,
    is_packed,
    unpack_raw_events,
)
from warehouse.landing import LandingRow

MAX_PROPERTIES_BYTES = 64 * 1024  # ingest allows 32 KiB; anything larger did not come through our API


class Reason(StrEnum):
    INVALID_JSON = "invalid_json"
    SCHEMA_VIOLATION = "schema_violation"
    UNSUPPORTED_VERSION = "unsupported_version"
    PROPERTIES_NOT_OBJECT = "properties_not_object"
    PROPERTIES_TOO_LARGE = "properties_too_large"
    NUL_CHARACTER = "nul_character"
    TIMESTAMP_TOO_OLD = "timestamp_too_old"
    TIMESTAMP_IN_FUTURE = "timestamp_in_future"


class Rejected(msgspec.Struct, frozen=True):
    reason: Reason
    detail: str


class Window:
    """Event times the warehouse accepts: inside raw retention and not too far ahead."""

    def __init__(self, retention_days: int, max_future_s: int, now: datetime | None = None) -> None:
        now = now or datetime.now(UTC)
        self.oldest = now - timedelta(days=retention_days)
        self.newest = now + timedelta(seconds=max_future_s)


class _Event(msgspec.Struct, frozen=True, gc=False):
    """RawEvent's fields and constraints (warehouse/events.py; tests/streams/test_decode.py checks they agree),
    as a struct the cyclic GC does not track: it holds no containers, so it can be part of no cycle."""

    org_id: uuid.UUID
    project_id: uuid.UUID
    event_id: uuid.UUID
    event: Name
    distinct_id: Name
    timestamp: UtcTime
    received_at: UtcTime
    properties: msgspec.Raw = msgspec.Raw(b"{}")
    v: int = SCHEMA_VERSION


_decode_packed = msgspec.json.Decoder(list[_Event]).decode


class Decoded(msgspec.Struct, gc=False):
    """What one `events-raw` message carries: how many events, their landing rows, and the rejected ones as
    (index in the packed message, the dead letter's payload, why). The index is None when the payload is the
    whole message: a format-1 message, or a packed value that is not a JSON array of anything."""

    events: int
    rows: list[LandingRow]
    rejected: list[tuple[int | None, bytes, Rejected]]


def decode_message(value: bytes | None, window: Window) -> Decoded:
    """Any `events-raw` value -> Decoded. Never raises."""
    if value is not None and is_forwarded(value):
        return _decode_forwarded(value, window)
    if value is None or not is_packed(value):
        out = decode(value, window)
        if type(out) is tuple:
            return Decoded(1, [out], [])
        return Decoded(1, [], [(None, value or b"", out)])  # type: ignore[list-item]
    try:
        events = _decode_packed(value)
    except Exception:  # some element is bad (or the array is): find out which, below
        return _decode_elements(value, window)
    rows: list[LandingRow] = []
    rejected: list[tuple[int | None, bytes, Rejected]] = []
    oldest, newest = window.oldest, window.newest
    for i, ev in enumerate(events):
        # Fast path (_plain): an event every check surely passes; anything else goes through _check.
        ts = ev.timestamp
        try:
            props = bytes(ev.properties)
            if ev.v == SCHEMA_VERSION and ts.tzinfo is UTC and oldest <= ts <= newest and _plain(props, ev):
                rows.append(
                    (ev.project_id, ts, ev.event_id, ev.org_id, ev.event, ev.distinct_id, ev.received_at,
                     props.decode())
                )  # fmt: skip
                continue
            out = _check(ev, window)
        except Exception as exc:  # as in decode(): a dead letter, never a crashed worker
            out = _unexpected(exc)
        if type(out) is tuple:
            rows.append(out)
        else:
            rejected.append((i, b"", out))  # type: ignore[arg-type]
    if rejected:  # rare: only now pay for each element's own bytes
        raws = unpack_raw_events(value)
        rejected = [(i, bytes(raws[i]), r) for i, _, r in rejected]  # type: ignore[index]
    return Decoded(len(events), rows, rejected)


def _decode_elements(value: bytes, window: Window) -> Decoded:
    """Slow path for a packed value the one-call decode refused: each element on its own, as format 1."""
    try:
        raws = unpack_raw_events(value)
    except Exception as exc:  # not a JSON array: the message cannot be split into events
        return Decoded(
            1,
            [],
            [(None, value, Rejected(Reason.INVALID_JSON, f"packed message is not a JSON array: {exc}"))],
        )
    rows: list[LandingRow] = []
    rejected: list[tuple[int | None, bytes, Rejected]] = []
    for i, raw in enumerate(raws):
        element = bytes(raw)
        out = decode(element, window)
        if type(out) is tuple:
            rows.append(out)
        else:
            rejected.append((i, element, out))  # type: ignore[arg-type]
    return Decoded(len(raws), rows, rejected)


def _decode_forwarded(value: bytes, window: Window) -> Decoded:
    """Format 3: the envelope's fields once, each client item checked like a RawEvent; a bad item is
    dead-lettered alone, as the format-1 value it stands for (or its own bytes if it cannot be decoded)."""
    try:
        env = decode_forwarded(value)
    except Exception:  # some item (or the envelope) is bad: find out which, below
        return _forwarded_elements(value, window)
    rows: list[LandingRow] = []
    rejected: list[tuple[int | None, bytes, Rejected]] = []
    org, project, received = env.org_id, env.project_id, env.received_at
    oldest, newest = window.oldest, window.newest
    for i, item in enumerate(env.events):
        ts = received if item.timestamp is None else item.timestamp
        try:
            props = bytes(item.properties)
            if ts.tzinfo is UTC and oldest <= ts <= newest and _plain(props, item):
                rows.append(
                    (project, ts, item.event_id, org, item.event, item.distinct_id, received, props.decode())
                )
                continue  # the fast path, as in decode_message
        except Exception:  # noqa: S110 - _check below decides, and names the reason
            pass
        ev = _Event(org, project, item.event_id, item.event, item.distinct_id, ts, received, item.properties)
        try:
            out = _check(ev, window)
        except Exception as exc:
            out = _unexpected(exc)
        if type(out) is tuple:
            rows.append(out)
        else:
            rejected.append((i, encode_raw_event(ev), out))  # type: ignore[arg-type]
    return Decoded(len(env.events), rows, rejected)


_decode_item = msgspec.json.Decoder(ForwardedItem).decode


def _forwarded_elements(value: bytes, window: Window) -> Decoded:
    """Slow path of format 3: the envelope with its items undecoded, then each item on its own."""
    try:
        env = decode_forwarded_raw(value)
    except Exception as exc:  # the envelope itself is bad: the message cannot be split into events
        return Decoded(1, [], [(None, value, Rejected(Reason.INVALID_JSON, f"bad forwarded message: {exc}"))])
    rows: list[LandingRow] = []
    rejected: list[tuple[int | None, bytes, Rejected]] = []
    for i, raw in enumerate(env.events):
        element = bytes(raw)
        try:
            ev = forwarded_event(env, _decode_item(element))
        except Exception as exc:
            rejected.append((i, element, Rejected(Reason.SCHEMA_VIOLATION, str(exc))))
            continue
        out = decode(encode_raw_event(ev), window)
        if type(out) is tuple:
            rows.append(out)
        else:
            rejected.append((i, encode_raw_event(ev), out))  # type: ignore[arg-type]
    return Decoded(len(env.events), rows, rejected)


def _plain(props: bytes, ev: _Event | ForwardedItem) -> bool:
    """The fast path of the decode loops: properties that are a JSON object within the size limit, with no NUL
    anywhere (not even a possible \\u0000 escape), and the loop itself checked the schema version and a UTC
    event time inside the window. Such an event lands exactly as `_check` would land it (tests/streams/
    test_decode.py compares both on every rejection reason); anything else goes through `_check`. Why: the
    per-event checks are the worker's main-thread Python time after the msgspec decode (streams/sink.py);
    format 3 also built an `_Event` per item only to check it."""
    return (
        props[:1] == b"{"
        and len(props) <= MAX_PROPERTIES_BYTES
        and b"\\u0000" not in props
        and "\x00" not in ev.event
        and "\x00" not in ev.distinct_id
        and not has_unstorable_number(props)
    )


def _unexpected(exc: Exception) -> Rejected:
    if isinstance(exc, RecursionError):
        return Rejected(Reason.SCHEMA_VIOLATION, "nested too deeply")
    if isinstance(exc, (OverflowError, ValueError)):
        return Rejected(Reason.SCHEMA_VIOLATION, f"value out of range: {exc}")
    return Rejected(Reason.SCHEMA_VIOLATION, f"{type(exc).__name__}: {exc}")


def decode(value: bytes | None, window: Window) -> LandingRow | Rejected:
    """Never raises: a message that breaks the decoder in any way is a dead letter, not a crashed worker."""
    try:
        return _decode(value, window)
    except Exception as exc:
        return _unexpected(exc)


def _decode(value: bytes | None, window: Window) -> LandingRow | Rejected:
    if value is None:
        return Rejected(Reason.INVALID_JSON, "empty message")
    try:
        ev = decode_raw_event(value)
    except msgspec.ValidationError as exc:
        return Rejected(Reason.SCHEMA_VIOLATION, str(exc))
    except msgspec.DecodeError as exc:
        return Rejected(Reason.INVALID_JSON, str(exc))
    return _check(ev, window)


def _check(ev: RawEvent | _Event, window: Window) -> LandingRow | Rejected:
    """What the schema cannot express; the hot loop of every landed event, so keep it lean."""
    if ev.v != SCHEMA_VERSION:
        return Rejected(Reason.UNSUPPORTED_VERSION, f"v={ev.v}")
    props = bytes(ev.properties)
    if props[:1] != b"{":
        props = props.strip()
        if props[:1] != b"{":
            return Rejected(Reason.PROPERTIES_NOT_OBJECT, "properties must be a JSON object")
    if len(props) > MAX_PROPERTIES_BYTES:
        return Rejected(Reason.PROPERTIES_TOO_LARGE, f"{len(props)} bytes")
    if has_nul_escape(props) or "\x00" in ev.event or "\x00" in ev.distinct_id:
        return Rejected(Reason.NUL_CHARACTER, "PostgreSQL text and jsonb cannot hold NUL")
    if has_unstorable_number(props):  # its COPY would fail the whole chunk, on every retry
        return Rejected(Reason.SCHEMA_VIOLATION, "properties hold a number PostgreSQL's numeric cannot store")
    ts = ev.timestamp
    if ts.utcoffset():
        try:
            ts = ts.astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:00-05:00 has no UTC datetime
            late = ts.year > 5000
            return Rejected(
                Reason.TIMESTAMP_IN_FUTURE if late else Reason.TIMESTAMP_TOO_OLD,
                f"{ev.timestamp} out of range",
            )
    if ts < window.oldest:
        return Rejected(Reason.TIMESTAMP_TOO_OLD, f"{ts.isoformat()} is older than raw retention")
    if ts > window.newest:
        return Rejected(Reason.TIMESTAMP_IN_FUTURE, f"{ts.isoformat()} is too far in the future")
    return (
        ev.project_id,
        ts,
        ev.event_id,
        ev.org_id,
        ev.event,
        ev.distinct_id,
        ev.received_at,
        props.decode(),
    )
