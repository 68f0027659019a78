"""bytes from `events-raw` -> a landing row, or a dead-letter reason. Pure: testable without Kafka.

Reason codes are stable snake_case strings: dashboards and alerts group by them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from enum import StrEnum

import msgspec

from warehouse.events import SCHEMA_VERSION, decode_raw_event, has_nul_escape
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


def decode(value: bytes | None, window: Window) -> LandingRow | Rejected:
    """Never raises: a message that breaks the decoder in any way is a dead letter, not a crashed worker."""
    try:
        return _decode(value, window)
    except RecursionError:
        return Rejected(Reason.SCHEMA_VIOLATION, "nested too deeply")
    except (OverflowError, ValueError) as exc:
        return Rejected(Reason.SCHEMA_VIOLATION, f"value out of range: {exc}")
    except Exception as exc:
        return Rejected(Reason.SCHEMA_VIOLATION, f"{type(exc).__name__}: {exc}")


def _decode(value: bytes | None, window: Window) -> LandingRow | Rejected:
    if value is None:
        return Rejected(Reason.INVALID_JSON, "empty message")
    try:
        ev = decode_raw_event(value)
    except msgspec.ValidationError as exc:
        return Rejected(Reason.SCHEMA_VIOLATION, str(exc))
    except msgspec.DecodeError as exc:
        return Rejected(Reason.INVALID_JSON, str(exc))
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
