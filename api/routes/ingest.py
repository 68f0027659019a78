"""POST /v1/events and POST /v1/batch as FastAPI routes: their OpenAPI description, and the framework path.

In production these paths are served by the pure-ASGI handler of api/ingest/asgi.py, in front of FastAPI;
with `PULSEOPS_INGEST__FAST_PATH=false` these routes serve them. Both call api/ingest/service.py.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from api.deps import Ingest, IngestContext, ingest_context
from api.ingest.admission import refuse_before_body
from api.ingest.body import read_body
from api.ingest.compat import segment
from api.ingest.schemas import openapi_components
from api.ingest.service import accept_batch, accept_event
from api.routes.compat import serve

router = APIRouter(prefix="/v1", tags=["ingest"])

_SCHEMAS, COMPONENTS = openapi_components()

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


async def _body(request: Request, ctx: IngestContext) -> bytes:
    await refuse_before_body(ctx.services, ctx.key)
    h = request.headers
    return await read_body(
        request.receive,
        h.get("content-length"),
        h.get("content-encoding"),
        ctx.services.settings.ingest.max_body_bytes,
    )


def _accepted(body: bytes) -> Response:
    return Response(body, status_code=202, media_type="application/json")


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
    return _accepted(await accept_event(ctx.services, ctx.key, await _body(request, ctx)))


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
        "events carry `event_id`). Without `X-API-Key`, a request with `Authorization: Basic` or a top-level "
        "`writeKey` is Segment's batch (docs/sdks.md); any other is refused 401."
    ),
    response_class=Response,
    responses=_responses("Accepted events were acknowledged by the broker; invalid ones are listed."),
    openapi_extra=_body_doc(_SCHEMAS["IngestBatch"]),
)
async def ingest_batch(
    request: Request,
    api_key: Annotated[
        str | None,
        Header(alias="X-API-Key", description="Project ingest key (po_ingest_...). Binds org and project."),
    ] = None,
) -> Response:
    if api_key is None:  # Segment's shape (Basic auth or writeKey; api/ingest/compat/segment.py), else 401
        if segment.is_segment_batch({k.lower(): v for k, v in request.headers.items()}, None):
            return await serve(request, segment.batch)
        services = request.app.state.ingest
        h = request.headers
        body = await read_body(
            request.receive, h.get("content-length"), h.get("content-encoding"),
            services.settings.ingest.max_body_bytes,
        )  # fmt: skip
        if segment.is_segment_batch({}, body):
            return await serve(request, segment.batch, body)
    ctx = await ingest_context(request, api_key)
    return _accepted(await accept_batch(ctx.services, ctx.key, await _body(request, ctx)))
