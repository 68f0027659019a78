"""API-key authentication with a short-lived in-process cache.

Every request carries a key; hitting PostgreSQL for each would cost more than the rest of the request. The
cache holds hits and misses for `key_cache_ttl_s` seconds, which bounds how long a revoked key keeps working.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager

import psycopg
from starlette.concurrency import run_in_threadpool

from api.errors import ApiError
from warehouse.tenants import ApiKeyRow, hash_key, lookup_api_key, touch_api_keys


class KeyCache:
    def __init__(
        self, connection: Callable[[], AbstractContextManager[psycopg.Connection]], ttl_s: float
    ) -> None:
        self._connection = connection
        self._ttl = ttl_s
        self._entries: dict[bytes, tuple[float, ApiKeyRow | None]] = {}
        self._used: set[uuid.UUID] = set()

    def lookup(self, key: str) -> ApiKeyRow | None:
        """Blocking (may query PostgreSQL): call from a worker thread, not the event loop."""
        digest = hash_key(key)
        hit = self._entries.get(digest)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            row = hit[1]
        else:
            with self._connection() as conn:
                row = lookup_api_key(conn, key)
            if len(self._entries) > 100_000:  # bound memory against floods of random keys
                self._entries.clear()
            self._entries[digest] = (now + self._ttl, row)
        if row is not None:
            self._used.add(row.id)
        return row

    def cached(self, key: str) -> tuple[bool, ApiKeyRow | None]:
        """Non-blocking probe: (found, row)."""
        hit = self._entries.get(hash_key(key))
        if hit is not None and hit[0] > time.monotonic():
            if hit[1] is not None:
                self._used.add(hit[1].id)
            return True, hit[1]
        return False, None

    def flush_last_used(self) -> None:
        used, self._used = self._used, set()
        if used:
            with self._connection() as conn:
                touch_api_keys(conn, list(used))


async def resolve_key(cache: KeyCache, api_key: str | None) -> ApiKeyRow:
    """The key's row, or ApiError 401 (missing/unknown/revoked) / 503 (keys cannot be checked now)."""
    if not api_key:
        raise ApiError(401, "unauthorized", [("X-API-Key", "missing")])
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


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    """`X-API-Key`, or `Authorization: Bearer <key>` for clients that only speak OAuth-style headers."""
    key = headers.get("x-api-key")
    if key:
        return key
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
