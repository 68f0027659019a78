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
A topic holding both (a rolling upgrade) lands both.
"""

from __future__ import annotations

import re
import uuid
from datetime import datetime
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
    """Kafka key: project + user, so a hot tenant spreads over partitions and one user's events stay ordered.
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
    return [value]


# A JSON \u0000 escape is a backslash-u preceded by an even number of other backslashes; "\\u0000" is the
# literal text \u0000 and is fine. PostgreSQL's jsonb cannot store the NUL character itself.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_nul_escape(json_text: bytes) -> bool:
    return b"\\u0000" in json_text and _NUL_ESCAPE.search(json_text) is not None
