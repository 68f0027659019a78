"""Annotated dependencies shared by routers: settings, services on app.state, and the authenticated key.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, which cost ~20 % of a
single-event request's CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from api.errors import ApiError
from api.ingest.publisher import Publisher
from api.ingest.spool import Spool
from api.ratelimit import RateLimiter
from api.security import KeyCache
from pulseops.settings import Settings
from warehouse.tenants import ApiKeyRow


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_publisher(request: Request) -> Publisher:
    return request.app.state.publisher


async def get_rate_limiter(request: Request) -> RateLimiter:
    return request.app.state.rate_limiter


SettingsDep = Annotated[Settings, Depends(get_settings)]
PublisherDep = Annotated[Publisher, Depends(get_publisher)]
RateLimiterDep = Annotated[RateLimiter, Depends(get_rate_limiter)]

_KEY_HEADER = Header(
    alias="X-API-Key", description="Project ingest key (po_ingest_...). Binds org and project."
)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """`X-API-Key`, or `Authorization: Bearer <key>` for clients that only speak OAuth-style headers."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(request: HTTPConnection, api_key: str | None) -> ApiKeyRow:
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


@dataclass(frozen=True, slots=True)
class IngestContext:
    """Everything an ingest request needs, resolved by one dependency: each extra FastAPI dependency costs
    measurable CPU on a single-event request."""

    key: ApiKeyRow
    settings: Settings
    publisher: Publisher
    limiter: RateLimiter
    spool: Spool | None


async def ingest_context(
    request: Request, api_key: Annotated[str | None, _KEY_HEADER] = None
) -> IngestContext:
    row = await authenticate(request, api_key)
    if row.kind != "ingest":
        raise ApiError(403, "forbidden", [("X-API-Key", "read keys cannot ingest; use an ingest key")])
    state = request.app.state
    return IngestContext(row, state.settings, state.publisher, state.rate_limiter, state.spool)


Ingest = Annotated[IngestContext, Depends(ingest_context)]
