"""What the PostHog and Segment paths share: request and answer shapes, key lookup, ids, times, publishing.

Both protocols are served twice, like the native endpoints: by the plain ASGI fast path (api/ingest/asgi.py)
and by FastAPI routes (api/routes/compat.py). Both call a protocol handler with a `CompatRequest` and a
`read` callable for the body, and send the `Answer` it returns; handlers never raise ApiError.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import msgspec

from api import metrics
from api.errors import ApiError
from api.ingest.schemas import EventRejected, IngestEvent, Rejection
from api.ingest.service import (
    IngestServices,
    _builder,
    check_ingest_key,
    pack,
    publish,
    rate_limit,
    refuse_if_exhausted,
)
from api.security import KeyCache, resolve_key
from warehouse.events import MAX_PACKED_BYTES, RawEvent, encode_raw_event, message_key
from warehouse.tenants import ApiKeyRow

# Fixed forever: a non-UUID message id (Segment's "ajs-…", "node-next-…") maps to uuid5(this, project/id), so
# a retry of the same message gets the same event_id in the same project and lands once.
ID_NAMESPACE = uuid.UUID("6f1c3c2e-6a43-5b8e-9a55-2f0d7c1f4b10")
MAX_ID_LENGTH = 200

encode = msgspec.json.encode
_decode_any = msgspec.json.decode
_convert = msgspec.convert


@dataclass(frozen=True, slots=True)
class CompatRequest:
    """The parts of an HTTP request the protocol handlers read (header names lower-case)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(slots=True)
class Answer:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


Read = Callable[[], Awaitable[bytes]]
Handler = Callable[[IngestServices, KeyCache, CompatRequest, Read], Awaitable[Answer]]


def error_answer(exc: ApiError) -> Answer:
    """Our error shape plus the fields the SDKs print: `code` and `message` (Segment's analytics-python reads
    both). 422 becomes 400: both protocols document 400 for an invalid payload."""
    status = 400 if exc.status == 422 else exc.status
    body = {
        "error": exc.error,
        "detail": [{"field": f, "reason": r} for f, r in exc.detail],
        "code": exc.error,
        "message": "; ".join(f"{f}: {r}" for f, r in exc.detail) or exc.error,
    }
    return Answer(status, encode(body), dict(exc.headers))


def bad(field_name: str, reason: str, error: str = "invalid_payload") -> ApiError:
    metrics.rejected("body")
    return ApiError(400, error, [(field_name, reason)])


def decode_json(data: bytes, field_name: str = "body") -> Any:
    try:
        return _decode_any(data)
    except msgspec.DecodeError as exc:
        raise bad(field_name, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise bad(field_name, "nested too deeply") from None


def b64decode(text: str, field_name: str) -> bytes:
    """Standard or URL-safe base64, padding optional; '+' turned into ' ' by form decoding is restored."""
    text = text.strip().replace(" ", "+")
    text += "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text)
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad(field_name, "not valid base64", "invalid_base64") from None


def bearer_key(headers: dict[str, str]) -> str | None:
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def basic_user(headers: dict[str, str]) -> str | None:
    """The user name of `Authorization: Basic` (Segment puts the write key there, password empty)."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic" or not token.strip():
        return None
    raw = b64decode(token, "Authorization")
    user, _, password = raw.decode("utf-8", "replace").partition(":")
    return user or password or None


async def authenticate(
    svc: IngestServices, keys: KeyCache, key: str | None, field_name: str, missing: str
) -> ApiKeyRow:
    """The ingest key's row; errors name the protocol's own field (`api_key`, `writeKey`, ...)."""
    if not key:
        raise ApiError(401, "unauthorized", [(field_name, missing)])
    if not isinstance(key, str):
        raise ApiError(401, "unauthorized", [(field_name, "must be a string")])
    try:
        row = await resolve_key(keys, key)
    except ApiError as exc:
        exc.detail = [(field_name, reason) for _, reason in exc.detail]
        raise
    try:
        check_ingest_key(row)
    except ApiError as exc:
        exc.detail = [(field_name, "read keys cannot ingest; use an ingest key")]
        raise
    refuse_if_exhausted(svc, row)
    return row


def text_id(value: Any, field_name: str) -> str | None:
    """An id as text: strings as sent, integers written out (both SDKs allow numeric ids)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise EventRejected(field_name, "must be a string")
    if isinstance(value, int | float):
        value = str(int(value)) if isinstance(value, int) or value.is_integer() else str(value)
    if not isinstance(value, str):
        raise EventRejected(field_name, "must be a string")
    if not value:
        return None
    if len(value) > MAX_ID_LENGTH:
        raise EventRejected(field_name, f"longer than {MAX_ID_LENGTH} characters")
    return value


def event_id_for(value: Any, project_id: uuid.UUID, field_name: str) -> uuid.UUID | None:
    """A client message id -> event_id: a UUID as is, any other text uuid5 under the project (stable)."""
    text = text_id(value, field_name)
    if text is None:
        return None
    try:
        return _convert(text, uuid.UUID)  # canonical or plain hex: ~3x faster than uuid.UUID(text)
    except msgspec.ValidationError:
        pass
    try:  # the forms msgspec refuses and uuid accepts: {...}, urn:uuid:..., odd hyphens
        return uuid.UUID(text)
    except ValueError:
        return uuid.uuid5(ID_NAMESPACE, f"{project_id}/{text}")


def content_id(project_id: uuid.UUID, event: dict[str, Any]) -> uuid.UUID | None:
    """For an event sent without an id but with its own timestamp: an id from its content, so that the SDK's
    retry of the same request (same bytes but for `sent_at`) lands once. Without a timestamp two sends of one
    event may be two real events, so the server assigns a random id (None) as the native path does."""
    if event.get("timestamp") is None and event.get("originalTimestamp") is None:
        return None
    canonical = encode({k: v for k, v in event.items() if k not in ("sent_at", "sentAt")}, order="sorted")
    return uuid.uuid5(ID_NAMESPACE, f"{project_id}/sha256:{hashlib.sha256(canonical).hexdigest()}")


def parse_time(value: Any, field_name: str) -> datetime | None:
    """ISO-8601 text; without a UTC offset it is read as UTC (what the PostHog and Segment servers do)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise EventRejected(field_name, "must be an ISO-8601 string")
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise EventRejected(field_name, "not an ISO-8601 time, e.g. 2026-11-25T10:00:00Z") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def epoch_ms(value: str, field_name: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        raise bad(field_name, "must be milliseconds since the epoch") from None


def name_of(value: Any, field_name: str) -> str:
    if not isinstance(value, str) or not value:
        raise EventRejected(field_name, "required: the event name (1-200 characters)")
    if len(value) > 200:
        raise EventRejected(field_name, "longer than 200 characters")
    return value


def object_of(value: Any, field_name: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise EventRejected(field_name, "must be a JSON object")
    return value


def make_event(
    *,
    event: str,
    distinct_id: str,
    event_id: uuid.UUID | None,
    timestamp: datetime | None,
    properties: dict[str, Any],
    sent_at: datetime | None = None,
) -> IngestEvent:
    """An IngestEvent built from parts already checked here (the constructor does not validate)."""
    return IngestEvent(
        event=event,
        distinct_id=distinct_id,
        timestamp=timestamp,
        event_id=event_id,
        properties=properties,
        sent_at=sent_at,
    )


Mapped = IngestEvent | EventRejected


async def accept_mapped(
    svc: IngestServices, key: ApiKeyRow, mapped: list[Mapped], sent_at: datetime | None, *, single: bool
) -> tuple[int, list[uuid.UUID], list[Rejection]]:
    """Check, pack, journal and publish the valid events of one request, exactly as `/v1/batch` does;
    (accepted, event ids, rejected by index). Raises ApiError 422 when none is valid (fields named
    `<field>` for a single event, `batch[i].<field>` in a batch)."""
    settings = svc.settings
    if not mapped:
        metrics.rejected("body")
        raise ApiError(422, "validation_error", [("batch", "must contain at least one event")])
    if len(mapped) > settings.ingest.max_batch_events:
        raise ApiError(
            413, "batch_too_large", [("batch", f"more than {settings.ingest.max_batch_events} events")]
        )
    rejected: list[Rejection] = []
    candidates: list[tuple[int, IngestEvent]] = []
    for index, item in enumerate(mapped):
        if isinstance(item, EventRejected):
            metrics.rejected(item.field)
            rejected.append(Rejection(index=index, field=item.field, reason=item.reason))
        else:
            candidates.append((index, item))
    raws: list[RawEvent] = []
    if candidates:
        await rate_limit(svc, key, len(candidates))
        builder = _builder(key, settings, sent_at, len(candidates))
        for index, ev in candidates:
            try:
                raws.append(builder.check(ev))
            except EventRejected as exc:
                metrics.rejected(exc.field)
                rejected.append(Rejection(index=index, field=exc.field, reason=exc.reason))
    rejected.sort(key=lambda r: r.index)
    if not raws:
        prefix = (lambda r: r.field) if single else (lambda r: f"batch[{r.index}].{r.field}")
        raise ApiError(422, "validation_error", [(prefix(r), r.reason) for r in rejected])
    packed = encode_raw_event(raws)
    if len(packed) <= MAX_PACKED_BYTES:
        messages = [(message_key(key.project_id, raws[0].distinct_id), packed)]
    else:
        values = [encode_raw_event(r) for r in raws]
        messages = pack(key.project_id, [r.distinct_id for r in raws], values)
    await publish(svc, key.project_id, messages, len(raws))
    return len(raws), [r.event_id for r in raws], rejected


def accepted_body(
    base: dict[str, Any], accepted: int, event_ids: list[uuid.UUID], rejected: list[Rejection]
) -> bytes:
    """The protocol's success body plus, as on `/v1/batch`, the accepted events' PulseOps ids (what a
    non-UUID message id became) and what was refused (the SDKs ignore extra fields)."""
    out = dict(base)
    out["accepted"] = accepted
    out["event_ids"] = event_ids
    if rejected:
        out["rejected"] = [{"index": r.index, "field": r.field, "reason": r.reason} for r in rejected]
    return encode(out)
