"""The ingest hot path as a plain ASGI handler: `POST /v1/events` and `POST /v1/batch` without a framework.

Why not the FastAPI routes: a py-spy profile of a loaded API process (wrk, single events, shipped
configuration) spent more samples in the framework around the handler — routing through every route,
dependency resolution, five middleware layers each wrapping `send`, Request/Response objects — than in the
handler itself. Here the headers are read straight from the ASGI scope, the key comes from the in-process
cache, an exhausted key is refused before its body is read, and the answer goes out in two `send` calls.
Statuses, bodies and headers are the same as the FastAPI routes' in `api/routes/ingest.py` (which document
the endpoints and serve them when `PULSEOPS_INGEST__FAST_PATH=false`); tests/api run both.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import msgspec
from prometheus_client.metrics import Counter
from starlette.types import Receive, Scope, Send

from api import metrics
from api.errors import ApiError
from api.ingest.body import read_body
from api.ingest.schemas import ErrorDetail, ErrorResponse
from api.ingest.service import (
    IngestServices,
    accept_batch,
    accept_event,
    check_ingest_key,
    refuse_if_exhausted,
)
from api.security import KeyCache, resolve_key
from warehouse.tenants import ApiKeyRow

log = logging.getLogger(__name__)

Accept = Callable[[IngestServices, ApiKeyRow, bytes], Awaitable[bytes]]

ROUTES: dict[str, Accept] = {"/v1/events": accept_event, "/v1/batch": accept_batch}

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
    extra: dict[str, str] = {}
    try:
        key = await resolve_key(keys, headers.get(b"x-api-key"))
        check_ingest_key(key)
        refuse_if_exhausted(services, key)
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
