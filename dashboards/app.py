"""The web dashboard: one page of plain JS modules, plotly.js from the installed wheel, and a same-origin
relay to the GraphQL API (HTTP POST and the graphql-transport-ws WebSocket).

Why a relay instead of CORS: the browser then talks to one origin only, the API needs no CORS policy, and the
read key (an `X-API-Key` header or the WebSocket `connection_init` payload, never a URL) goes to the host it
came from. The relay forwards only the body and the key; it adds no authority of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import logging
import mimetypes
import zoneinfo
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
import plotly
import websockets
from fastapi import APIRouter, Depends, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from starlette.requests import HTTPConnection

from pulseops.settings import Settings, get_settings

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).parent / "node_modules" / "plotly.js-basic-dist-min"


def plotly_bundle() -> tuple[Path, str]:
    """plotly.js "basic" (scatter, bar, pie: all the dashboard draws; 1.2 MB) when `make venv` installed it
    with npm, else the full bundle of the plotly wheel (4.6 MB: evaluating it costs ~2 s of CPU on a small
    machine, which is most of the time to first chart). Paths are versioned, so browsers cache them for good."""
    basic = VENDOR / "plotly-basic.min.js"
    if basic.is_file():
        version = json.loads((VENDOR / "package.json").read_text())["version"]
        return basic, f"/static/vendor/plotly-basic-{version}.min.js"
    return Path(
        plotly.__file__
    ).parent / "package_data" / "plotly.min.js", f"/static/vendor/plotly-{plotly.__version__}.min.js"


PLOTLY_JS, PLOTLY_PATH = plotly_bundle()
SUBPROTOCOL = "graphql-transport-ws"
MAX_BODY_BYTES = 256 * 1024  # a GraphQL document of the API's 2,000 tokens with variables fits many times
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str
    media_type: str


class Assets:
    """Files read once and gzipped once (plotly.min.js: 4.6 MB → ~1.4 MB on the wire), served with ETags."""

    def __init__(self, rewrite: dict[str, tuple[bytes, bytes]] | None = None) -> None:
        self._cache: dict[Path, Asset] = {}
        self._rewrite = rewrite or {}

    def get(self, path: Path) -> Asset:
        found = self._cache.get(path)
        if found is None:
            body = path.read_bytes()
            if path.name in self._rewrite:
                body = body.replace(*self._rewrite[path.name])
            media = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
            if path.suffix in (".js", ".mjs"):
                media = "text/javascript"
            found = Asset(
                body, gzip.compress(body, 6), '"' + hashlib.sha256(body).hexdigest()[:20] + '"', media
            )
            self._cache[path] = found
        return found

    def response(self, request: Request, path: Path, cache_control: str) -> Response:
        asset = self.get(path)
        headers = {
            "ETag": asset.etag,
            "Cache-Control": cache_control,
            "Vary": "Accept-Encoding",
            **SECURITY_HEADERS,
        }
        if request.headers.get("if-none-match") == asset.etag:
            return Response(status_code=304, headers=headers)
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            return Response(asset.gzipped, media_type=asset.media_type, headers=headers)
        return Response(asset.body, media_type=asset.media_type, headers=headers)


@dataclass(frozen=True)
class Dashboard:
    """What the routes need, built once per app from settings and kept on `app.state.dashboard`."""

    api_url: str
    dagster_url: str
    alert_interval_s: float
    relay_timeout_s: float
    zones: list[str]
    assets: Assets


def _dashboard(conn: HTTPConnection) -> Dashboard:
    return conn.app.state.dashboard


def _http(request: Request) -> httpx.AsyncClient:
    return request.app.state.http


DashboardDep = Annotated[Dashboard, Depends(_dashboard)]
HttpDep = Annotated[httpx.AsyncClient, Depends(_http)]

router = APIRouter(include_in_schema=False)


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    d: Dashboard = app.state.dashboard
    app.state.http = httpx.AsyncClient(timeout=d.relay_timeout_s, limits=httpx.Limits(max_connections=50))
    await asyncio.to_thread(d.assets.get, PLOTLY_JS)  # gzip plotly once, before the first page load
    try:
        yield
    finally:
        await app.state.http.aclose()


@router.get("/")
async def index(request: Request, d: DashboardDep) -> Response:
    return d.assets.response(request, STATIC / "index.html", "no-cache")


@router.get(PLOTLY_PATH)
async def plotly_js(request: Request, d: DashboardDep) -> Response:
    return d.assets.response(request, PLOTLY_JS, "public, max-age=31536000, immutable")


@router.get("/static/{name:path}")
async def static(request: Request, name: str, d: DashboardDep) -> Response:
    path = (STATIC / name).resolve()
    if not path.is_file() or STATIC.resolve() not in path.parents:
        return JSONResponse({"error": "not_found"}, status_code=404)
    return d.assets.response(request, path, "no-cache")


@router.get("/config.json")
async def config(d: DashboardDep) -> JSONResponse:
    return JSONResponse(
        {
            "dagsterUrl": d.dagster_url,
            "plotly": PLOTLY_PATH,
            "alertIntervalSeconds": d.alert_interval_s,
            "zones": d.zones,
        },
        headers={"Cache-Control": "no-cache"},
    )


@router.get("/healthz")
async def healthz() -> dict:
    return {"status": "ok"}


async def _read_capped(request: Request, limit: int) -> bytes | None:
    """The body, or None once it exceeds `limit` (declared or streamed): never buffers more than that."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


@router.post("/graphql")
async def relay(request: Request, d: DashboardDep, http: HttpDep) -> Response:
    headers = {"Content-Type": "application/json"}
    for name in ("x-api-key", "authorization"):
        if name in request.headers:
            headers[name] = request.headers[name]
    body = await _read_capped(request, MAX_BODY_BYTES)
    if body is None:
        return JSONResponse(
            {
                "error": "too_large",
                "detail": [{"field": "body", "reason": f"at most {MAX_BODY_BYTES} bytes"}],
            },
            status_code=413,
        )
    try:
        r = await http.post(f"{d.api_url}/graphql", content=body, headers=headers)
    except httpx.HTTPError as exc:
        log.warning("GraphQL API unreachable at %s: %s", d.api_url, exc)
        return JSONResponse(
            {
                "error": "api_unavailable",
                "detail": [{"field": "api", "reason": "the PulseOps API is not answering"}],
            },
            status_code=502,
        )
    passed = {k: v for k, v in r.headers.items() if k.lower() in ("retry-after", "content-type")}
    return Response(r.content, status_code=r.status_code, headers=passed)


async def _browser_to_api(ws: WebSocket, upstream: websockets.ClientConnection) -> None:
    with contextlib.suppress(WebSocketDisconnect, websockets.ConnectionClosed):
        while True:
            await upstream.send(await ws.receive_text())


async def _api_to_browser(ws: WebSocket, upstream: websockets.ClientConnection) -> None:
    with contextlib.suppress(WebSocketDisconnect, websockets.ConnectionClosed, RuntimeError, OSError):
        async for message in upstream:
            await ws.send_text(message if isinstance(message, str) else message.decode())


@router.websocket("/graphql")
async def relay_ws(ws: WebSocket, d: DashboardDep) -> None:
    if SUBPROTOCOL not in ws.scope.get("subprotocols", []):
        await ws.close(code=4406)
        return
    target = "ws" + d.api_url.removeprefix("http") + "/graphql"
    try:
        upstream = await websockets.connect(target, subprotocols=[SUBPROTOCOL], open_timeout=5)
    except (OSError, websockets.WebSocketException, TimeoutError) as exc:
        log.warning("GraphQL WebSocket unreachable at %s: %s", target, exc)
        await ws.close(code=1011)
        return
    await ws.accept(subprotocol=SUBPROTOCOL)
    tasks = [
        asyncio.create_task(_browser_to_api(ws, upstream)),
        asyncio.create_task(_api_to_browser(ws, upstream)),
    ]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        code = upstream.close_code or 1000
        await upstream.close()
        # The browser may be gone already (a closed page): closing its socket then is a normal disconnect,
        # not "Exception in ASGI application".
        with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
            await ws.close(code=code if 1000 <= code < 5000 and code not in (1005, 1006) else 1000)


def create_app(settings: Settings | None = None) -> FastAPI:
    """Wiring only: the routes above, with what they need from `settings` on `app.state`."""
    settings = settings or get_settings()
    d = settings.dashboard
    o = settings.orchestration
    app = FastAPI(
        title="PulseOps dashboard", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.dashboard = Dashboard(
        api_url=(d.api_url or f"http://{settings.ingest.host}:{settings.ingest.port}").rstrip("/"),
        dagster_url=(d.dagster_url or f"http://{o.webserver_host}:{o.webserver_port}").rstrip("/"),
        alert_interval_s=settings.alerts.interval_s,
        relay_timeout_s=d.relay_timeout_s,
        # The API accepts exactly these names; browsers list ICU's names, some of them legacy (Asia/Calcutta).
        zones=sorted(
            z for z in zoneinfo.available_timezones() if not z.startswith(("posix/", "right/", "Etc/"))
        ),
        assets=Assets({"index.html": (b"__PLOTLY__", PLOTLY_PATH.encode())}),
    )
    app.include_router(router)
    return app


def app() -> FastAPI:
    """Factory for `uvicorn --factory dashboards.app:app`."""
    return create_app()
