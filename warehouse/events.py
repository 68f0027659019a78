"""RawEvent and the `events-raw` message formats: the contract between ingest and the landing workers.

The ingest API encodes, the landing worker decodes; both import it from here so they share a contract without
importing each other. `properties` stays undecoded (msgspec.Raw) on the landing side: the worker passes the
JSON text straight to PostgreSQL's jsonb input instead of parsing and re-serialising it.

Two value formats share the topic, told apart by their first byte:
- `{...}`: one RawEvent per message (format 1, what older ingest processes produce);
- `[{...},{...}]`: a JSON array of RawEvents, all of one project (format 2, "packed"): the events of one
  accepted request travel in one message, so the broker and Quix Streams' per-message cost is paid once per
  request instead of once per event (Snowplow's collector does the same with its payloads). Each element is
  byte for byte a format-1 value, so a dead letter still carries exactly the one bad event.
- `{"f":3,...}`: "forwarded", the request's batch as the client sent it, after the API validated every item,
  inside an envelope with the fields the server decides once per request (org, project, received_at):
  `{"f":3,"org_id":..,"project_id":..,"received_at":..,"events":[<client items>]}`. The API sends it only
  when no item needed normalising (all accepted, each with its own event_id, no sent_at skew, properties
  as sent), so the item's bytes are exactly what a RawEvent would carry; an item without `timestamp` happened
  at `received_at`. It saves the API the re-encoding of every event and halves the bytes journaled, produced
  and stored (about 140 instead of 330 bytes an event). `split_message` turns it into format-1 values.
A topic holding several (a rolling upgrade) lands them all; landing workers must be upgraded before the API
processes that send a newer format.
"""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from decimal import Decimal
from typing import Annotated

import msgspec

SCHEMA_VERSION = 1


Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]


class RawEvent(msgspec.Struct, frozen=True):
    org_id: uuid.UUID
    project_id: uuid.UUID
    event_id: uuid.UUID
    event: Name
    distinct_id: Name
    timestamp: UtcTime
    received_at: UtcTime
    properties: msgspec.Raw = msgspec.Raw(b"{}")
    v: int = SCHEMA_VERSION


encode_raw_event = msgspec.json.Encoder().encode
decode_raw_event = msgspec.json.Decoder(RawEvent).decode


def message_key(project_id: uuid.UUID, distinct_id: str) -> bytes:
    """Kafka key: project + user. It picks the partition only with `kafka.partition_window_ms` 0 (ingest
    otherwise writes one partition per window: api/ingest/publisher.py); landing needs no order either way.
    A packed message takes the key of its first event."""
    return project_id.bytes + distinct_id.encode()


# librdkafka's and Kafka's default max message size is 1,000,000 bytes; stay below it with headroom for the
# record's key and framing. A request's body is capped at 1 MiB, so a big batch packs into two or three.
MAX_PACKED_BYTES = 900_000


def pack_raw_events(values: list[bytes], max_bytes: int = MAX_PACKED_BYTES) -> list[tuple[int, bytes]]:
    """Encoded RawEvents -> packed (format 2) values of at most `max_bytes` each (a single larger event gets a
    message of its own). Returns (index of the first event in `values`, packed value) per message."""
    out: list[tuple[int, bytes]] = []
    start, size = 0, 1
    for i, value in enumerate(values):
        n = len(value) + 1
        if i > start and size + n > max_bytes:
            out.append((start, b"[" + b",".join(values[start:i]) + b"]"))
            start, size = i, 1
        size += n
    if start < len(values):
        out.append((start, b"[" + b",".join(values[start:]) + b"]"))
    return out


def is_packed(value: bytes) -> bool:
    """Format 2 (a JSON array of RawEvents) rather than format 1 (one RawEvent object)."""
    return value[:1] == b"[" or value.lstrip()[:1] == b"["


unpack_raw_events = msgspec.json.Decoder(list[msgspec.Raw]).decode
"""Format-2 value -> each event's own bytes (each a format-1 value). Raises msgspec.DecodeError if corrupt."""


def split_message(value: bytes) -> list[bytes]:
    """Any `events-raw` value -> the format-1 values it carries (one for format 1)."""
    if is_packed(value):
        return [bytes(v) for v in unpack_raw_events(value)]
    if is_forwarded(value):
        env = decode_forwarded(value)
        return [encode_raw_event(forwarded_event(env, item)) for item in env.events]
    return [value]


FORWARDED_PREFIX = b'{"f":3,'


class ForwardedItem(msgspec.Struct, frozen=True, gc=False):
    """One client item of a forwarded (format 3) message: IngestEvent's fields the API let through as sent."""

    event: Name
    distinct_id: Name
    event_id: uuid.UUID
    timestamp: UtcTime | None = None
    properties: msgspec.Raw = msgspec.Raw(b"{}")


class Forwarded(msgspec.Struct, frozen=True):
    f: int
    org_id: uuid.UUID
    project_id: uuid.UUID
    received_at: UtcTime
    events: list[ForwardedItem]


class ForwardedRaw(msgspec.Struct, frozen=True):
    """A forwarded message with its items undecoded: to find which of them is bad."""

    f: int
    org_id: uuid.UUID
    project_id: uuid.UUID
    received_at: UtcTime
    events: list[msgspec.Raw]


decode_forwarded = msgspec.json.Decoder(Forwarded).decode
decode_forwarded_raw = msgspec.json.Decoder(ForwardedRaw).decode
_encode_json = msgspec.json.encode


def is_forwarded(value: bytes) -> bool:
    return value[:7] == FORWARDED_PREFIX


def encode_forwarded(org_id: uuid.UUID, project_id: uuid.UUID, received_at: datetime, batch: bytes) -> bytes:
    """A format-3 value around `batch`, the JSON array of validated client items as the client sent it."""
    head = b'%s"org_id":"%s","project_id":"%s","received_at":%s,"events":' % (
        FORWARDED_PREFIX,
        str(org_id).encode(),
        str(project_id).encode(),
        _encode_json(received_at),
    )
    return head + batch + b"}"


def forwarded_event(env: Forwarded | ForwardedRaw, item: ForwardedItem) -> RawEvent:
    """The RawEvent a forwarded item stands for (what format 1 and 2 would have carried)."""
    return RawEvent(
        env.org_id,
        env.project_id,
        item.event_id,
        item.event,
        item.distinct_id,
        env.received_at if item.timestamp is None else item.timestamp,
        env.received_at,
        item.properties,
    )


# A JSON \u0000 escape is a backslash-u preceded by an even number of other backslashes; "\\u0000" is the
# literal text \u0000 and is fine. PostgreSQL's jsonb cannot store the NUL character itself.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_nul_escape(json_text: bytes) -> bool:
    return b"\\u0000" in json_text and _NUL_ESCAPE.search(json_text) is not None


# PostgreSQL's numeric, which jsonb stores numbers in, holds at most 131,072 digits before the point and 16,383
# after it; a JSON number beyond that (e.g. 1e200000, 14 bytes) fails the landing COPY of its whole chunk. Within
# the properties size caps only an exponent of 4+ digits or 15,000+ digits after a point (an exponent under 1,000
# makes up the rest) can make one. Digits mapped to 0 and signs dropped, `e0000` or a point and 15,000 zeros
# find both candidates in C (~0.3 us for 120 bytes; a regex took 0.7-1.7); text that only looks like one (a
# string) costs a full parse and is then let through.
_DIGITS_TO_ZERO = bytes(range(256)).maketrans(b"0123456789E", b"0000000000e")
_LONG_FRACTION = b"." + b"0" * 15_000
_MAX_DIGITS_BEFORE_POINT = 131_072
_MAX_DIGITS_AFTER_POINT = 16_383


class _Unstorable(Exception):
    pass


def _check_number(text: str) -> int:
    _, digits, exponent = Decimal(text).as_tuple()
    assert isinstance(exponent, int)  # JSON has no NaN or Infinity
    if -exponent > _MAX_DIGITS_AFTER_POINT or (
        any(digits) and len(digits) + exponent > _MAX_DIGITS_BEFORE_POINT
    ):
        raise _Unstorable(text)
    return 0


def has_unstorable_number(json_text: bytes) -> bool:
    """Whether valid JSON text holds a number PostgreSQL's jsonb refuses ("value overflows numeric format")."""
    zeros = json_text.translate(_DIGITS_TO_ZERO, b"+-")
    if b"e0000" not in zeros and (len(zeros) <= 15_000 or _LONG_FRACTION not in zeros):
        return False
    try:  # the json module hands over each number's text (msgspec would refuse or round it)
        json.loads(json_text, parse_float=_check_number, parse_int=_check_number)
    except _Unstorable:
        return True
    except (ValueError, RecursionError):  # not JSON, or nested past the parser: the other checks decide
        return False
    return False
