"""The ingest hot path as a plain ASGI handler: `POST /v1/events` and `POST /v1/batch` without a framework.

Why not the FastAPI routes: a py-spy profile of a loaded API process (wrk, single events, shipped
configuration) spent more samples in the framework around the handler — routing through every route,
dependency resolution, five middleware layers each wrapping `send`, Request/Response objects — than in the
handler itself. Here the headers are read straight from the ASGI scope, the key comes from the in-process
cache, an exhausted key is refused before its body is read, and the answer goes out in two `send` calls.
Statuses, bodies and headers are the same as the FastAPI routes' in `api/routes/ingest.py` (which document
the endpoints and serve them when `PULSEOPS_INGEST__FAST_PATH=false`); tests/api run both. The PostHog and
Segment POST paths (api/ingest/compat, docs/sdks.md) are served here too, by `handle_compat`, and mirrored by
api/routes/compat.py.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qs

import msgspec
from prometheus_client.metrics import Counter
from starlette.types import Receive, Scope, Send

from api import metrics
from api.errors import ApiError
from api.ingest.admission import refuse_before_body
from api.ingest.body import read_body
from api.ingest.compat import posthog, segment
from api.ingest.compat.common import Answer, CompatRequest, Handler
from api.ingest.schemas import ErrorDetail, ErrorResponse
from api.ingest.service import (
    IngestServices,
    accept_batch,
    accept_event,
    check_ingest_key,
)
from api.security import KeyCache, resolve_key
from warehouse.tenants import ApiKeyRow

log = logging.getLogger(__name__)

Accept = Callable[[IngestServices, ApiKeyRow, bytes], Awaitable[bytes]]

ROUTES: dict[str, Accept] = {"/v1/events": accept_event, "/v1/batch": accept_batch}

# The SDK-compatible POST paths (api/ingest/compat), served here too; `/v1/batch` of Segment's shape is
# recognised in `handle` (no X-API-Key).
COMPAT: dict[str, Handler] = {
    **{p: posthog.capture for base in posthog.CAPTURE_PATHS for p in (base, base.rstrip("/"))},
    **{p: posthog.flags for base in posthog.FLAGS_PATHS for p in (base, base.rstrip("/"))},
    **dict.fromkeys(segment.PATHS, segment.single),
    "/v1/b": segment.batch,
}

# Ingest keys come in X-API-Key only (documented in the OpenAPI document; Bearer is for read keys).
_WANTED = frozenset({b"x-api-key", b"content-length", b"content-encoding"})
_JSON = [(b"content-type", b"application/json")]
_encode = msgspec.json.encode
_counters: dict[tuple[str, int], Counter] = {}


def _count(route: str, status: int) -> None:
    counter = _counters.get((route, status))
    if counter is None:
        counter = _counters[(route, status)] = metrics.REQUESTS.labels(route=route, status=str(status))
    counter.inc()


def _headers(scope: Scope) -> dict[bytes, str]:
    return {name: value.decode("latin-1") for name, value in scope["headers"] if name in _WANTED}


async def handle(
    services: IngestServices, keys: KeyCache, accept: Accept, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one ingest request; never raises (a bug answers 500 JSON and is logged, like the framework)."""
    headers = _headers(scope)
    if accept is accept_batch and b"x-api-key" not in headers:
        await _segment_or_unauthorized(services, keys, scope, receive, send)
        return
    extra: dict[str, str] = {}
    try:
        key = await resolve_key(keys, headers.get(b"x-api-key"))
        check_ingest_key(key)
        await refuse_before_body(services, key)
        body = await read_body(
            receive,
            headers.get(b"content-length"),
            headers.get(b"content-encoding"),
            services.settings.ingest.max_body_bytes,
        )
        status, out = 202, await accept(services, key, body)
    except ApiError as exc:
        status, extra = exc.status, exc.headers
        out = _encode(ErrorResponse(exc.error, [ErrorDetail(f, r) for f, r in exc.detail]))
    except Exception:
        log.exception("ingest request failed")
        status, out = 500, _encode(ErrorResponse("internal_error"))
    _count(scope["path"], status)
    response_headers = [*_JSON, (b"content-length", str(len(out)).encode())]
    response_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": response_headers})
    await send({"type": "http.response.body", "body": out})


def compat_request(scope: Scope) -> CompatRequest:
    query = {}
    if scope.get("query_string"):
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    return CompatRequest(scope["method"], scope["path"], query, headers)


def _reader(services: IngestServices, req: CompatRequest, receive: Receive) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        h = req.headers
        return await read_body(
            receive,
            h.get("content-length"),
            h.get("content-encoding"),
            services.settings.ingest.max_body_bytes,
        )

    return read


async def handle_compat(
    services: IngestServices, keys: KeyCache, handler: Handler, scope: Scope, receive: Receive, send: Send
) -> None:
    """Serve one PostHog or Segment request (api/ingest/compat); never raises."""
    req = compat_request(scope)
    try:
        answer = await handler(services, keys, req, _reader(services, req, receive))
    except Exception:
        log.exception("compatible ingest request failed")
        answer = Answer(500, _encode(ErrorResponse("internal_error")))
    await send_answer(scope["path"], answer, send)


async def _segment_or_unauthorized(
    services: IngestServices, keys: KeyCache, scope: Scope, receive: Receive, send: Send
) -> None:
    """`/v1/batch` without X-API-Key: Segment's shape (Basic auth or `writeKey`), else the native 401."""
    req = compat_request(scope)
    read = _reader(services, req, receive)
    try:
        body = None
        if not segment.is_segment_batch(req.headers, None):
            try:
                body = await read()
            except ApiError as exc:
                answer = Answer(
                    exc.status,
                    _encode(ErrorResponse(exc.error, [ErrorDetail(f, r) for f, r in exc.detail])),
                    exc.headers,
                )
                await send_answer(scope["path"], answer, send)
                return
            if not segment.is_segment_batch(req.headers, body):
                error = ErrorResponse("unauthorized", [ErrorDetail("X-API-Key", "missing")])
                await send_answer(scope["path"], Answer(401, _encode(error)), send)
                return
        answer = await segment.batch(services, keys, req, read, body)
    except Exception:
        log.exception("compatible ingest request failed")
        answer = Answer(500, _encode(ErrorResponse("internal_error")))
    await send_answer(scope["path"], answer, send)


async def send_answer(route: str, answer: Answer, send: Send) -> None:
    _count(route, answer.status)
    answer.headers.setdefault("Access-Control-Allow-Origin", "*")  # browser SDKs post from any site
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in answer.headers.items()]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
