"""API-key authentication with a short-lived in-process cache.

Every request carries a key; hitting PostgreSQL for each would cost more than the rest of the request. The
cache holds hits and misses for `key_cache_ttl_s` seconds, which bounds how long a revoked key keeps working.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager

import psycopg

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
