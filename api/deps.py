"""Dependencies of the FastAPI routes: the authenticated key, and the ingest services for it.

All are `async def`: FastAPI runs plain `def` dependencies in a thread pool, which cost ~20 % of a
single-event request's CPU. (Production ingest requests take the pure-ASGI path of api/ingest/asgi.py.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from starlette.requests import HTTPConnection

from api.ingest.service import IngestServices, check_ingest_key
from api.security import resolve_key
from warehouse.tenants import ApiKeyRow

_KEY_HEADER = Header(
    alias="X-API-Key", description="Project ingest key (po_ingest_...). Binds org and project."
)


async def authenticate(request: HTTPConnection, api_key: str | None) -> ApiKeyRow:
    return await resolve_key(request.app.state.key_cache, api_key)


@dataclass(frozen=True, slots=True)
class IngestContext:
    """The ingest key of the request and the process's ingest services, resolved by one dependency."""

    key: ApiKeyRow
    services: IngestServices


async def ingest_context(
    request: Request, api_key: Annotated[str | None, _KEY_HEADER] = None
) -> IngestContext:
    row = await authenticate(request, api_key)
    check_ingest_key(row)
    return IngestContext(row, request.app.state.ingest)


Ingest = Annotated[IngestContext, Depends(ingest_context)]
