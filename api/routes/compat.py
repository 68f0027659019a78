"""The PostHog and Segment SDK paths as FastAPI routes (api/ingest/compat; settings in docs/sdks.md).

With the fast path on (the default) the POST paths are answered by api/ingest/asgi.py before these routes;
these serve them with `PULSEOPS_INGEST__FAST_PATH=false`, and always serve what the fast path leaves to the
framework: GET (remote config, flags) and the CORS preflight (OPTIONS) browsers send before a JSON POST.
They are left out of the OpenAPI document: it describes the native API; the SDKs' protocols are their
vendors' (docs/sdks.md says what is supported).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.ingest.body import read_body
from api.ingest.compat import posthog, segment
from api.ingest.compat.common import Answer, CompatRequest, Handler

router = APIRouter(include_in_schema=False)

_CORS_PREFLIGHT = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Methods": "GET, POST, OPTIONS",
    "Access-Control-Max-Age": "86400",
}


def to_response(answer: Answer) -> Response:
    headers = {"Access-Control-Allow-Origin": "*", **answer.headers}
    return Response(answer.body, status_code=answer.status, headers=headers, media_type=answer.content_type)


def compat_request(request: Request) -> CompatRequest:
    return CompatRequest(
        request.method,
        request.url.path,
        dict(request.query_params),
        {k.lower(): v for k, v in request.headers.items()},
    )


async def serve(request: Request, handler: Handler, body: bytes | None = None) -> Response:
    """Run a protocol handler; `body` when the caller already read it (the `/v1/batch` dispatch)."""
    services = request.app.state.ingest
    req = compat_request(request)

    async def read() -> bytes:
        if body is not None:
            return body
        h = req.headers
        return await read_body(
            request.receive,
            h.get("content-length"),
            h.get("content-encoding"),
            services.settings.ingest.max_body_bytes,
        )

    return to_response(await handler(services, request.app.state.key_cache, req, read))


def _route(path: str, handler: Handler, methods: list[str]) -> None:
    async def endpoint(request: Request) -> Response:
        return await serve(request, handler)

    router.add_api_route(path, endpoint, methods=methods, response_class=Response)


for _base in posthog.CAPTURE_PATHS:
    for _path in (_base, _base.rstrip("/")):
        _route(_path, posthog.capture, ["POST"])
for _base in posthog.FLAGS_PATHS:
    for _path in (_base, _base.rstrip("/")):
        _route(_path, posthog.flags, ["GET", "POST"])
for _path in segment.PATHS:
    _route(_path, segment.single, ["POST"])
_route("/v1/b", segment.batch, ["POST"])


@router.get("/array/{token}/config")
async def remote_config(token: str) -> Response:
    return to_response(posthog.remote_config(token, script=False))


@router.get("/array/{token}/config.js")
async def remote_config_script(token: str) -> Response:
    return to_response(posthog.remote_config(token, script=True))


async def preflight(request: Request) -> Response:
    """CORS preflight of a browser SDK's JSON POST (posthog-js uncompressed, analytics.js)."""
    headers = dict(_CORS_PREFLIGHT)
    headers["Access-Control-Allow-Headers"] = request.headers.get(
        "access-control-request-headers", "Content-Type, Authorization"
    )
    return Response(status_code=204, headers=headers)


for _path in sorted({r.path for r in router.routes} | set(segment.BATCH_PATHS)):
    router.add_api_route(_path, preflight, methods=["OPTIONS"], response_class=Response)
