"""RawEvent: the body of an `events-raw` message and the shape of one raw row.

The ingest API encodes it, the landing worker decodes it; both import it from here so they share a contract
without importing each other. `properties` stays undecoded (msgspec.Raw) on the landing side: the worker
passes the JSON text straight to PostgreSQL's jsonb input instead of parsing and re-serialising it.
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
    """Kafka key: project + user, so a hot tenant spreads over partitions and one user's events stay ordered."""
    return project_id.bytes + distinct_id.encode()


# A JSON \u0000 escape is a backslash-u preceded by an even number of other backslashes; "\\u0000" is the
# literal text \u0000 and is fine. PostgreSQL's jsonb cannot store the NUL character itself.
_NUL_ESCAPE = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def has_nul_escape(json_text: bytes) -> bool:
    return b"\\u0000" in json_text and _NUL_ESCAPE.search(json_text) is not None
