"""What an ingest request does once its key is known: rate limit, validate, pack, journal, publish, answer.

Both entry points call these functions: the pure-ASGI fast path (`api/ingest/asgi.py`), which serves every
`POST /v1/events` and `/v1/batch` in production, and the FastAPI routes of `api/routes/ingest.py`, which
describe the same endpoints in the OpenAPI document.

The accepted events of one request travel in one Kafka message (format 2 in `warehouse/events.py`), so the
broker and the landing worker pay their per-message cost once per request, not once per event.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import msgspec

from api import metrics
from api.errors import ApiError
from api.ingest.hot import HotProjects
from api.ingest.publisher import BrokerUnavailable, ProducerQueueFull, Publisher
from api.ingest.schemas import (
    AcceptedResponse,
    BatchSlice,
    EventBuilder,
    EventRejected,
    IngestBatch,
    IngestEvent,
    Rejection,
    TypedBatch,
    split_validation_error,
)
from api.ingest.spool import Spool, SpoolUnavailable
from api.ratelimit import RateLimiter, retry_after_header
from pulseops.pressure import PressureGauge
from pulseops.settings import Settings
from warehouse.events import (
    MAX_PACKED_BYTES,
    RawEvent,
    encode_forwarded,
    encode_raw_event,
    message_key,
    pack_raw_events,
)
from warehouse.tenants import ApiKeyRow

_decode_batch = msgspec.json.Decoder(IngestBatch).decode
_decode_typed = msgspec.json.Decoder(TypedBatch).decode
_decode_slice = msgspec.json.Decoder(BatchSlice).decode
encode = msgspec.json.encode


@dataclass(frozen=True, slots=True)
class IngestServices:
    """The process-wide objects an ingest request uses (built once in the app's lifespan)."""

    settings: Settings
    publisher: Publisher
    limiter: RateLimiter
    spool: Spool | None
    hot: HotProjects
    pressure: PressureGauge | None = None  # the embedded broker's memory pressure (pulseops/pressure.py)


def check_ingest_key(key: ApiKeyRow) -> None:
    if key.kind != "ingest":
        raise ApiError(403, "forbidden", [("X-API-Key", "read keys cannot ingest; use an ingest key")])


def key_limits(key: ApiKeyRow, settings: Settings) -> tuple[float, float]:
    return key.rate_per_s or settings.ingest.rate_per_s, key.burst or settings.ingest.burst


def _too_many(rate: float, burst: float, wait: float) -> ApiError:
    return ApiError(
        429,
        "rate_limited",
        [("X-API-Key", f"more than {rate:g} events/s (burst {burst:g}) for this key")],
        {"Retry-After": retry_after_header(wait)},
    )


def refuse_if_exhausted(svc: IngestServices, key: ApiKeyRow) -> None:
    """Cheap 429 before the body is read or parsed: a key whose bucket is known empty (from this process's
    last answer of the shared limiter) costs one dict lookup, so a hot tenant over its limit cannot take the
    CPU that quiet tenants' requests need."""
    wait = svc.limiter.known_wait(str(key.id))
    if wait > 0:
        rate, burst = key_limits(key, svc.settings)
        raise _too_many(rate, burst, wait)


async def rate_limit(svc: IngestServices, key: ApiKeyRow, cost: int) -> None:
    rate, burst = key_limits(key, svc.settings)
    wait = await svc.limiter.acquire(str(key.id), cost, rate, burst)
    if wait > 0:
        raise _too_many(rate, burst, wait)


def _builder(key: ApiKeyRow, settings: Settings, sent_at: datetime | None, events: int = 1) -> EventBuilder:
    s = settings.ingest
    try:
        return EventBuilder(
            org_id=key.org_id,
            project_id=key.project_id,
            received_at=datetime.now(UTC),
            sent_at=sent_at,
            max_properties_bytes=s.max_properties_bytes,
            max_properties_depth=s.max_properties_depth,
            # One day of margin so an event accepted now is still inside retention when the worker lands it.
            max_past=timedelta(days=settings.warehouse.raw_retention_days - 1),
            max_future=timedelta(seconds=s.max_future_s),
            skew_tolerance=timedelta(seconds=s.skew_tolerance_s),
            expected_events=events,
        )
    except EventRejected as exc:
        metrics.rejected(exc.field)
        raise ApiError(422, "validation_error", [(exc.field, exc.reason)]) from None


def pack(project_id: uuid.UUID, distinct_ids: list[str], values: list[bytes]) -> list[tuple[bytes, bytes]]:
    """A request's encoded RawEvents -> Kafka (key, value) messages, one per ≤ 900 kB of events."""
    return [(message_key(project_id, distinct_ids[i]), v) for i, v in pack_raw_events(values)]


async def publish(
    svc: IngestServices, project_id: uuid.UUID, messages: list[tuple[bytes, bytes]], events: int
) -> None:
    """Journal, publish, make the journal durable, mark: 202 needs both the local fsync and the broker's acks
    (api/ingest/spool.py).

    The record is written (page cache) before the first byte goes to the broker and synced after the ack:
    every request written during the broker round trip shares that one fdatasync (group commit). A crash
    before both finished leaves a request the client was never told was accepted; the reconciler checks such
    a record against the ledger like any record without a marker."""
    settings, spool = svc.settings, svc.spool
    retry = {"Retry-After": str(settings.ingest.retry_after_s)}
    started = time.perf_counter()
    if svc.pressure is not None and svc.pressure.active():
        metrics.BROKER_PRESSURE.inc()
        raise ApiError(
            503,
            "broker_full",
            [("body", "not accepted, retry: the embedded broker is freeing memory while landing catches up")],
            retry,
        )
    entry = None
    if spool is not None:
        try:
            entry = spool.write(messages)
        except SpoolUnavailable as exc:
            raise ApiError(
                503, "spool_unavailable", [("body", f"not accepted, retry: {exc}")], retry
            ) from None
    try:
        hot = svc.hot.note(project_id, events)
        delivery = await svc.publisher.publish(messages, hot)
        if hot:
            metrics.HOT_EVENTS.inc(events)
    except (BrokerUnavailable, ProducerQueueFull) as exc:
        if entry is not None:
            spool.abort(entry)
        raise ApiError(503, "broker_unavailable", [("body", f"not accepted, retry: {exc}")], retry) from None
    except BaseException:
        if entry is not None:
            spool.forget(entry)
        raise
    if entry is not None:
        try:
            await spool.sync(entry)
        except SpoolUnavailable as exc:
            # The broker has the events but the journal cannot vouch for them: 503, and the client's retry
            # with the same event ids lands once (the ledger deduplicates).
            raise ApiError(
                503, "spool_unavailable", [("body", f"not accepted, retry: {exc}")], retry
            ) from None
        spool.acknowledge(entry, delivery.topic_id, delivery.offsets, delivery.topic)
    metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
    metrics.EVENTS_ACCEPTED.inc(events)


async def accept_event(svc: IngestServices, key: ApiKeyRow, body: bytes) -> bytes:
    """One event (`POST /v1/events`): the 202 body, or ApiError."""
    await rate_limit(svc, key, 1)
    builder = _builder(key, svc.settings, None)
    try:
        ev = builder.decode(body)
        event_id, value = builder.build(ev)
    except EventRejected as exc:
        metrics.rejected(exc.field)
        raise ApiError(422, "validation_error", [(exc.field, exc.reason)]) from None
    await publish(
        svc, key.project_id, [(message_key(key.project_id, ev.distinct_id), b"[" + value + b"]")], 1
    )
    return encode(AcceptedResponse(accepted=1, event_ids=[event_id]))


async def accept_batch(svc: IngestServices, key: ApiKeyRow, body: bytes) -> bytes:
    """Up to `max_batch_events` events (`POST /v1/batch`): the 202 body, or ApiError."""
    try:
        typed = _decode_typed(body)
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        typed = None  # some item (or the envelope) is bad: the per-item path says which
    if typed is not None:
        n = len(typed.batch)
        if 0 < n <= svc.settings.ingest.max_batch_events:
            return await _accept_valid(svc, key, typed.batch, typed.sent_at, body)
    return await _accept_items(svc, key, body)


def _check_size(n: int, settings: Settings) -> None:
    if n == 0:
        raise ApiError(422, "validation_error", [("batch", "must contain at least one event")])
    if n > settings.ingest.max_batch_events:
        raise ApiError(
            413, "batch_too_large", [("batch", f"more than {settings.ingest.max_batch_events} events")]
        )


async def _accept_valid(
    svc: IngestServices,
    key: ApiKeyRow,
    events: list[IngestEvent],
    sent_at: datetime | None,
    body: bytes | None = None,
) -> bytes:
    """A batch whose items all passed the schema: checked one by one, then published as the client sent it
    (format 3, `_forwardable`) or encoded as one packed array by a single msgspec call. `body`: the request
    body the events were decoded from; without a `\\u0000` escape in it no event can hold a NUL
    (EventBuilder.nul_free)."""
    await rate_limit(svc, key, len(events))
    builder = _builder(key, svc.settings, sent_at, len(events))
    builder.nul_free = body is not None and b"\\u0000" not in body
    ids = builder.forward(events) if body is not None else None
    if ids is not None:  # every item valid and forwardable as sent: no RawEvent per event
        value = encode_forwarded(
            key.org_id, key.project_id, builder.received_at, bytes(_decode_slice(body).batch)
        )
        if len(value) <= MAX_PACKED_BYTES:
            await publish(
                svc, key.project_id, [(message_key(key.project_id, events[0].distinct_id), value)], len(ids)
            )
            return encode(AcceptedResponse(accepted=len(ids), event_ids=ids))
    raws: list[RawEvent] = []
    rejected: list[Rejection] = []
    for index, ev in enumerate(events):
        try:
            raws.append(builder.check(ev))
        except EventRejected as exc:
            metrics.rejected(exc.field)
            rejected.append(Rejection(index=index, field=exc.field, reason=exc.reason))
    if not raws:
        raise ApiError(422, "validation_error", [(f"batch[{r.index}].{r.field}", r.reason) for r in rejected])
    value = None
    if body is not None and not rejected and _forwardable(builder, events, raws):
        batch = bytes(_decode_slice(body).batch)
        value = encode_forwarded(key.org_id, key.project_id, builder.received_at, batch)
    if value is None or len(value) > MAX_PACKED_BYTES:
        value = encode_raw_event(raws)
    if len(value) <= MAX_PACKED_BYTES:
        messages = [(message_key(key.project_id, raws[0].distinct_id), value)]
    else:
        values = [encode_raw_event(r) for r in raws]
        messages = pack(key.project_id, [r.distinct_id for r in raws], values)
    await publish(svc, key.project_id, messages, len(raws))
    event_ids = [r.event_id for r in raws]
    return encode(AcceptedResponse(accepted=len(raws), event_ids=event_ids, rejected=rejected))


def _forwardable(builder: EventBuilder, events: list[IngestEvent], raws: list[RawEvent]) -> bool:
    """Whether the client's items are byte for byte what the RawEvents carry besides the envelope's fields
    (warehouse/events.py, format 3): each has its own event_id, no clock skew moves a timestamp, and the
    properties are the client's text unchanged. Forwarding them saves re-encoding every event (~1 us each)
    and journals, produces and stores about 140 instead of 330 bytes an event."""
    if builder.skew:
        return False
    for ev, raw in zip(events, raws, strict=True):
        if ev.event_id is None or ev.sent_at is not None or raw.properties is not ev.properties:
            return False
    return True


async def _accept_items(svc: IngestServices, key: ApiKeyRow, body: bytes) -> bytes:
    """The general path: each item decoded on its own so that bad ones are reported by index."""
    try:
        envelope = _decode_batch(body)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        field, reason = split_validation_error(exc)
        metrics.rejected("body")
        raise ApiError(422, "validation_error", [(field, reason)]) from None
    except RecursionError:
        metrics.rejected("body")
        raise ApiError(422, "validation_error", [("body", "nested too deeply")]) from None
    n = len(envelope.batch)
    _check_size(n, svc.settings)
    await rate_limit(svc, key, n)
    builder = _builder(key, svc.settings, envelope.sent_at, n)
    values: list[bytes] = []
    distinct_ids: list[str] = []
    event_ids: list[uuid.UUID] = []
    rejected: list[Rejection] = []
    for index, raw in enumerate(envelope.batch):
        try:
            ev = builder.decode(raw)
            event_id, value = builder.build(ev)
        except EventRejected as exc:
            metrics.rejected(exc.field)
            rejected.append(Rejection(index=index, field=exc.field, reason=exc.reason))
            continue
        values.append(value)
        distinct_ids.append(ev.distinct_id)
        event_ids.append(event_id)
    if not values:
        raise ApiError(422, "validation_error", [(f"batch[{r.index}].{r.field}", r.reason) for r in rejected])
    await publish(svc, key.project_id, pack(key.project_id, distinct_ids, values), len(values))
    return encode(AcceptedResponse(accepted=len(values), event_ids=event_ids, rejected=rejected))
