"""The API application: `create_app(settings)` for tests, `app` for uvicorn (`uvicorn api.main:app`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import swagger_ui_bundle
from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from psycopg_pool import ConnectionPool
from redis.asyncio import Redis
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import State
from starlette.types import Receive, Scope, Send

from api.errors import install_error_handlers
from api.graphql.cache import QueryCache, VersionMemo
from api.graphql.context import ProjectsCache, ReadServices
from api.graphql.lag import ConsumerLag
from api.graphql.response_cache import ResponseCache
from api.ingest import asgi as ingest_asgi
from api.ingest.hot import HotProjects
from api.ingest.publisher import Publisher
from api.ingest.reconcile import Reconciler
from api.ingest.service import IngestServices
from api.ingest.spool import Spool
from api.metrics import RequestMetricsMiddleware
from api.ratelimit import RateLimiter
from api.routes import compat, graphql, graphql_asgi, health, ingest
from api.security import KeyCache
from pulseops.pressure import PressureGauge, pressure_path
from pulseops.settings import Settings, get_settings
from pulseops.topics import ensure_topics
from warehouse.db import libpq_url

log = logging.getLogger(__name__)

DESCRIPTION = """
Send events with an **ingest key** in `X-API-Key`. The key decides org and project; a body cannot name
another tenant. **202** means the broker acknowledged every accepted event; it will be landed exactly once
per (project, `event_id`). Send an `event_id` (UUID) with each event so that retries after 429/503 or a
network error are safe. Errors are JSON: `{"error": code, "detail": [{"field", "reason"}]}`.
"""


class PulseOpsAPI(FastAPI):
    """FastAPI, with `POST /v1/events`, `/v1/batch` and the PostHog/Segment SDK paths answered by the plain
    ASGI handler of api/ingest/asgi.py before the framework's middleware and routing (why: its docstring),
    and `POST /graphql` whole-answer cache hits by api/routes/graphql_asgi.py (None: every request goes
    through the framework)."""

    def __init__(self, *, fast_ingest: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fast_ingest = fast_ingest
        self.graphql_responses: ResponseCache | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == graphql_asgi.PATH:
            responses = self.graphql_responses
            if responses is not None:
                forward = await graphql_asgi.serve_hit(self.state, responses, scope, receive, send)
                if forward is None:
                    return
                receive = forward
        elif self.fast_ingest and scope["type"] == "http" and scope["method"] == "POST":
            accept = ingest_asgi.ROUTES.get(scope["path"])
            if accept is not None:
                state = self.state
                await ingest_asgi.handle(state.ingest, state.key_cache, accept, scope, receive, send)
                return
            handler = ingest_asgi.COMPAT.get(scope["path"])  # PostHog / Segment SDK paths (docs/sdks.md)
            if handler is not None:
                state = self.state
                await ingest_asgi.handle_compat(state.ingest, state.key_cache, handler, scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = _pool(settings)
        publisher = Publisher(settings.kafka)
        try:
            await run_in_threadpool(ensure_topics, settings.kafka, 5.0)
            await run_in_threadpool(publisher.refresh_topic_id)
            await run_in_threadpool(publisher.refresh_partitions)
        except Exception as exc:
            log.warning("broker not reachable at start (%s); answering 503 until it is", exc)
            publisher.mark_down()
        spool = _spool(settings)
        reconciler = None
        if spool is not None:
            reconciler = asyncio.create_task(Reconciler(spool, publisher, settings, pool).run_forever())
        redis = _redis(settings)
        app.state.settings = settings
        app.state.pool = pool
        app.state.publisher = publisher
        app.state.spool = spool
        app.state.rate_limiter = RateLimiter(redis)
        app.state.key_cache = KeyCache(pool.connection, settings.ingest.key_cache_ttl_s)
        app.state.ingest = IngestServices(
            settings,
            publisher,
            app.state.rate_limiter,
            spool,
            HotProjects(settings.ingest.hot_project_events_per_s),
            PressureGauge(pressure_path(settings.state_dir)),
        )
        lag = ConsumerLag(settings.kafka)
        app.state.reads = _read_services(settings, pool, redis, lag, app.state)
        toucher = asyncio.create_task(_touch_keys_forever(app.state.key_cache))
        _freeze_startup_objects()
        try:
            yield
        finally:
            toucher.cancel()
            if reconciler is not None:
                reconciler.cancel()
            try:
                await run_in_threadpool(app.state.key_cache.flush_last_used)
            except Exception as exc:
                log.warning("could not record key use at shutdown: %s", exc)
            await run_in_threadpool(publisher.close)
            if spool is not None:
                spool.close()
            await run_in_threadpool(lag.close)
            await redis.aclose()
            pool.close()
            # Drop the clients now (librdkafka threads live until the Producer is freed) and give
            # start-up objects back to the collector.
            for name in ("publisher", "spool", "pool", "rate_limiter", "key_cache", "reads", "ingest"):
                delattr(app.state, name)
            del publisher
            gc.unfreeze()

    app = PulseOpsAPI(
        fast_ingest=settings.ingest.fast_path,
        title="PulseOps API",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # No tracer/meter is configured; skipping the per-request check saves CPU on the ingest hot path.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        docs_url=None,  # served below from the swagger-ui-bundle wheel: FastAPI's default loads a CDN
        redoc_url=None,
    )
    _offline_docs(app)
    install_error_handlers(app)
    _include_routers(app, settings)
    _add_schema_components(app)
    return app


def _include_routers(app: FastAPI, settings: Settings) -> None:
    # Matched in this order, first match wins, and paths do not overlap: the SDK router's ~50 routes cost
    # ~0.3 ms to *not* match a path (FastAPI's included routers), so /healthz and /graphql (whose cache hits
    # take ~2 ms in all) are tried before it. POST /v1/* ingest is answered by api/ingest/asgi.py before this.
    gql = graphql.graphql_router(settings.query)
    routers = (health.router, gql, ingest.router, compat.router)
    for router in routers:
        app.include_router(router)
    known = {route.path for router in routers for route in router.routes}
    app.add_middleware(RequestMetricsMiddleware, known_paths=known)
    if isinstance(app, PulseOpsAPI):
        app.graphql_responses = gql.responses  # its hits are answered before all of the above


def _pool(settings: Settings) -> ConnectionPool:
    pool = ConnectionPool(
        libpq_url(settings.db.url),
        min_size=settings.db.pool_min,
        max_size=settings.db.pool_max,
        kwargs={"autocommit": True},
        open=False,
    )
    pool.open(wait=False)
    return pool


def _redis(settings: Settings) -> Redis:
    return Redis.from_url(
        settings.redis.url,
        socket_timeout=settings.redis.socket_timeout_s,
        socket_connect_timeout=settings.redis.socket_timeout_s,
    )


def _read_services(
    settings: Settings, pool: ConnectionPool, redis: Redis, lag: ConsumerLag, state: State
) -> ReadServices:
    """What GraphQL reads through: the pool, the result cache over Redis, the key and project caches."""
    return ReadServices(
        settings=settings,
        pool=pool,
        cache=QueryCache(redis, settings.query.cache_ttl_s, settings.query.local_cache_entries),
        limiter=state.rate_limiter,
        keys=state.key_cache,
        projects=ProjectsCache(pool, settings.ingest.key_cache_ttl_s),
        lag=lag,
        versions=VersionMemo(settings.query.version_ttl_s),
    )


def _freeze_startup_objects() -> None:
    # Start-up objects live as long as the process: keep them out of every GC pass.
    gc.collect()
    gc.freeze()
    # Requests allocate many short-lived, acyclic objects; a larger young generation cuts collection passes.
    gc.set_threshold(20_000, 20, 20)


def _spool(settings: Settings) -> Spool | None:
    s = settings.spool
    if not s.enabled:
        return None
    return Spool(
        Path(settings.spool_dir),
        fsync=s.fsync,
        segment_max_bytes=s.segment_max_bytes,
        segment_max_age_s=s.segment_max_age_s,
        max_bytes=s.max_bytes,
    )


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI from an installed package: no CDN, works without internet."""
    app.mount(
        "/static/swagger-ui", StaticFiles(directory=swagger_ui_bundle.swagger_ui_path), name="swagger-ui"
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title=f"{app.title} - docs",
            swagger_js_url="/static/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger-ui/swagger-ui.css",
            swagger_favicon_url="/static/swagger-ui/favicon-32x32.png",
        )


def _add_schema_components(app: FastAPI) -> None:
    """Merge the msgspec-generated body schemas into FastAPI's OpenAPI document."""
    base = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            doc = base()
            doc.setdefault("components", {}).setdefault("schemas", {}).update(ingest.COMPONENTS)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi


async def _touch_keys_forever(cache: KeyCache, every_s: float = 60.0) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            await run_in_threadpool(cache.flush_last_used)
        except Exception as exc:
            log.warning("could not record key use: %s", exc)


def app() -> FastAPI:
    """Factory for `uvicorn --factory api.main:app`."""
    return create_app()
