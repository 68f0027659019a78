"""POST /v1/events and POST /v1/batch: validate, bind the tenant from the key, publish, answer 202 on ack."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec
from fastapi import APIRouter, Request, Response

from api import metrics
from api.deps import Ingest, IngestContext
from api.errors import ApiError
from api.ingest.body import read_body
from api.ingest.publisher import BrokerUnavailable, ProducerQueueFull
from api.ingest.schemas import (
    AcceptedResponse,
    EventBuilder,
    EventRejected,
    IngestBatch,
    Rejection,
    openapi_components,
    split_validation_error,
)
from api.ingest.spool import SpoolUnavailable
from api.ratelimit import retry_after_header
from pulseops.settings import Settings
from warehouse.events import message_key
from warehouse.tenants import ApiKeyRow

router = APIRouter(prefix="/v1", tags=["ingest"])

_SCHEMAS, COMPONENTS = openapi_components()
_decode_batch = msgspec.json.Decoder(IngestBatch).decode
_encode = msgspec.json.encode

_ERRORS = {
    400: "Corrupt or truncated gzip body, or the client went away before sending all of it.",
    401: "Missing, unknown or revoked X-API-Key.",
    403: "A read key was used to ingest.",
    413: "Body (or its decompressed form) larger than 1 MiB.",
    415: "Content-Encoding other than gzip.",
    422: "Invalid JSON or event; `detail` names each field and reason.",
    429: "Rate limit of this key exceeded; retry after `Retry-After` seconds.",
    503: "Broker did not acknowledge (down, slow or queue full) or the spool is full; nothing was accepted, "
    "retry after `Retry-After`.",
}


def _responses(accepted_doc: str) -> dict:
    error = {"application/json": {"schema": _SCHEMAS["ErrorResponse"]}}
    out: dict = {
        202: {
            "description": accepted_doc,
            "content": {"application/json": {"schema": _SCHEMAS["AcceptedResponse"]}},
        }
    }
    for status, doc in _ERRORS.items():
        out[status] = {"description": doc, "content": error}
    return out


def _body_doc(schema: dict) -> dict:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


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


async def _rate_limit(limiter, key: ApiKeyRow, settings: Settings, cost: int) -> None:
    rate = key.rate_per_s or settings.ingest.rate_per_s
    burst = key.burst or settings.ingest.burst
    wait = await limiter.acquire(str(key.id), cost, rate, burst)
    if wait > 0:
        raise ApiError(
            429,
            "rate_limited",
            [("X-API-Key", f"more than {rate:g} events/s (burst {burst:g}) for this key")],
            {"Retry-After": retry_after_header(wait)},
        )


async def _publish(ctx: IngestContext, messages: list[tuple[bytes, bytes]]) -> None:
    """Journal, publish, mark: 202 needs both the local fsync and the broker's acks (see api/ingest/spool.py)."""
    settings, spool = ctx.settings, ctx.spool
    retry = {"Retry-After": str(settings.ingest.retry_after_s)}
    started = time.perf_counter()
    entry = None
    if spool is not None:
        try:
            entry = await spool.append(messages)
        except SpoolUnavailable as exc:
            raise ApiError(
                503, "spool_unavailable", [("body", f"not accepted, retry: {exc}")], retry
            ) from None
    try:
        delivery = await ctx.publisher.publish(messages)
    except (BrokerUnavailable, ProducerQueueFull) as exc:
        if entry is not None:
            spool.abort(entry)
        raise ApiError(503, "broker_unavailable", [("body", f"not accepted, retry: {exc}")], retry) from None
    except BaseException:
        if entry is not None:
            spool.forget(entry)
        raise
    if entry is not None:
        spool.acknowledge(entry, delivery.topic_id, delivery.offsets)
    metrics.PRODUCE_SECONDS.observe(time.perf_counter() - started)
    metrics.EVENTS_ACCEPTED.inc(len(messages))


def _accepted(body: AcceptedResponse) -> Response:
    return Response(_encode(body), status_code=202, media_type="application/json")


@router.post(
    "/events",
    status_code=202,
    summary="Send one event",
    operation_id="ingest-event",
    response_class=Response,
    responses=_responses("The event was acknowledged by the broker and will be landed exactly once."),
    openapi_extra=_body_doc(_SCHEMAS["IngestEvent"]),
)
async def ingest_event(request: Request, ctx: Ingest) -> Response:
    key, settings = ctx.key, ctx.settings
    body = await read_body(request, settings.ingest.max_body_bytes)
    await _rate_limit(ctx.limiter, key, settings, 1)
    builder = _builder(key, settings, None)
    try:
        ev = builder.decode(body)
        event_id, value = builder.build(ev)
    except EventRejected as exc:
        metrics.rejected(exc.field)
        raise ApiError(422, "validation_error", [(exc.field, exc.reason)]) from None
    await _publish(ctx, [(message_key(key.project_id, ev.distinct_id), value)])
    return _accepted(AcceptedResponse(accepted=1, event_ids=[event_id]))


@router.post(
    "/batch",
    status_code=202,
    summary="Send up to 1,000 events",
    operation_id="ingest-batch",
    description=(
        "Valid events are accepted and invalid ones reported by index: "
        '`{"accepted": 2, "event_ids": [...], "rejected": [{"index": 1, "field": "timestamp", '
        '"reason": "must include a UTC offset"}]}`. If no event is valid the answer is 422 with the same '
        "`rejected` list in `detail` (field `batch[i].<field>`). 202 means every accepted event was "
        "acknowledged by the broker; on 503 nothing of the request counts as accepted (retrying is safe when "
        "events carry `event_id`)."
    ),
    response_class=Response,
    responses=_responses("Accepted events were acknowledged by the broker; invalid ones are listed."),
    openapi_extra=_body_doc(_SCHEMAS["IngestBatch"]),
)
async def ingest_batch(request: Request, ctx: Ingest) -> Response:
    key, settings = ctx.key, ctx.settings
    body = await read_body(request, settings.ingest.max_body_bytes)
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
    if n == 0:
        raise ApiError(422, "validation_error", [("batch", "must contain at least one event")])
    if n > settings.ingest.max_batch_events:
        raise ApiError(
            413, "batch_too_large", [("batch", f"more than {settings.ingest.max_batch_events} events")]
        )
    await _rate_limit(ctx.limiter, key, settings, n)
    builder = _builder(key, settings, envelope.sent_at, n)
    messages: list[tuple[bytes, bytes]] = []
    event_ids = []
    rejected: list[Rejection] = []
    project_id = key.project_id
    for index, raw in enumerate(envelope.batch):
        try:
            ev = builder.decode(raw)
            event_id, value = builder.build(ev)
        except EventRejected as exc:
            metrics.rejected(exc.field)
            rejected.append(Rejection(index=index, field=exc.field, reason=exc.reason))
            continue
        messages.append((message_key(project_id, ev.distinct_id), value))
        event_ids.append(event_id)
    if not messages:
        raise ApiError(422, "validation_error", [(f"batch[{r.index}].{r.field}", r.reason) for r in rejected])
    await _publish(ctx, messages)
    return _accepted(AcceptedResponse(accepted=len(messages), event_ids=event_ids, rejected=rejected))
