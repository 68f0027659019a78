"""Annotated dependencies shared by routers: settings, services on app.state, and the authenticated key."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from api.ingest.publisher import Publisher
from api.ratelimit import RateLimiter
from api.security import KeyCache
from pulseops.settings import Settings
from warehouse.tenants import ApiKeyRow


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]

_KEY_HEADER = Header(alias="X-API-Key", description="Project ingest key (po_ingest_...). Binds org and project.")


async def authenticate(request: Request, api_key: str | None) -> ApiKeyRow:
    if not api_key:
        raise ApiError(401, "unauthorized", [("X-API-Key", "missing")])
    cache: KeyCache = request.app.state.key_cache
    found, row = cache.cached(api_key)
    if not found:
        try:
            row = await run_in_threadpool(cache.lookup, api_key)
        except Exception as exc:
            raise ApiError(
                503, "database_unavailable", [("X-API-Key", "cannot verify keys now")], {"Retry-After": "2"}
            ) from exc
    if row is None:
        raise ApiError(401, "unauthorized", [("X-API-Key", "unknown or revoked key")])
    return row


async def ingest_key(request: Request, api_key: Annotated[str | None, _KEY_HEADER] = None) -> ApiKeyRow:
    row = await authenticate(request, api_key)
    if row.kind != "ingest":
        raise ApiError(403, "forbidden", [("X-API-Key", "read keys cannot ingest; use an ingest key")])
    return row


IngestKey = Annotated[ApiKeyRow, Depends(ingest_key)]
