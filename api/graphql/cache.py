"""Redis cache of resolver results, keyed by tenant, project, data version and the normalized arguments.

The data version is read from PostgreSQL (`warehouse.reads.exact.data_version`) at most every
`query.version_ttl_s` seconds per process and (project, days), and again inside the snapshot that computes a
miss, so a hit is never staler than the database by more than `version_ttl_s` (default 1 s). TTL only
bounds memory. Values are msgspec JSON of the
resolver's result, so a hit renders the same bytes as the miss that stored it. When Redis fails, the cache
steps aside for `RETRY_AFTER_S` and answers are computed uncached.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import msgspec
from prometheus_client import Counter
from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_AFTER_S = 5.0

LOOKUPS = Counter("pulseops_graphql_cache_total", "GraphQL result cache lookups.", ["field", "result"])


def cache_key(org_id: Any, project_id: Any, field: str, version: str, arguments: dict[str, Any]) -> str:
    digest = hashlib.sha256(
        msgspec.json.encode({"f": field, "v": version, "a": arguments}, order="sorted")
    ).hexdigest()
    return f"pulseops:gql:{org_id}:{project_id}:{digest}"


class QueryCache:
    """Redis, fronted by a small per-process LRU of the same entries.

    Keys carry the data version, so a key always means the same bytes: a process may keep its own copy as
    long as Redis would (TTL) without any invalidation, and skip the Redis round trip (~1 ms here) on repeats.
    """

    LOCAL_MAX_BYTES = 256 * 1024  # per entry; bigger answers are shared through Redis only

    def __init__(self, redis: Redis | None, ttl_s: int, local_entries: int = 1000) -> None:
        self._redis = redis
        self._ttl = ttl_s
        self._local_entries = local_entries
        self._down_until = 0.0
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    def _remember(self, key: str, raw: bytes) -> None:
        if len(raw) > self.LOCAL_MAX_BYTES or self._local_entries <= 0:
            return
        self._local[key] = (time.monotonic() + self._ttl, raw)
        self._local.move_to_end(key)
        while len(self._local) > self._local_entries:
            self._local.popitem(last=False)

    def _recall(self, key: str) -> bytes | None:
        hit = self._local.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            del self._local[key]
            return None
        self._local.move_to_end(key)
        return hit[1]

    @property
    def available(self) -> bool:
        return self._redis is not None and time.monotonic() >= self._down_until

    async def get(self, key: str, field: str, result_type: type[T]) -> T | None:
        if not self.available:
            LOOKUPS.labels(field, "bypass").inc()
            return None
        raw = self._recall(key)
        source = "local_hit"
        if raw is None:
            source = "hit"
            try:
                raw = await self._redis.get(key)
            except (RedisError, OSError) as exc:
                self._trip(exc)
                LOOKUPS.labels(field, "error").inc()
                return None
            if raw is None:
                LOOKUPS.labels(field, "miss").inc()
                return None
            self._remember(key, raw)
        try:
            value = msgspec.json.decode(raw, type=result_type)
        except msgspec.ValidationError:
            LOOKUPS.labels(field, "miss").inc()  # a value from an older schema: recompute and overwrite
            return None
        LOOKUPS.labels(field, source).inc()
        return value

    async def put(self, key: str, value: Any) -> None:
        if not self.available:
            return
        raw = msgspec.json.encode(value)
        self._remember(key, raw)
        try:
            await self._redis.set(key, raw, ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._trip(exc)

    async def get_raw(self, key: str) -> bytes | None:
        """Redis only, no local copy and no counting: the whole-answer cache (api/graphql/response_cache.py)
        keeps its own. None on a miss or an error; after an error `available` is False."""
        try:
            return await self._redis.get(key)
        except (RedisError, OSError) as exc:
            self._trip(exc)
            return None

    async def set_raw(self, key: str, raw: bytes) -> None:
        try:
            await self._redis.set(key, raw, ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._trip(exc)

    def _trip(self, exc: Exception) -> None:
        log.warning("query cache: Redis unavailable (%s); answering uncached for %.0f s", exc, RETRY_AFTER_S)
        self._down_until = time.monotonic() + RETRY_AFTER_S


@dataclass
class Recording:
    """What the resolvers of one request read through `Context.cached()`, so that the whole answer may be
    stored (api/graphql/response_cache.py): (project, UTC days, data version seen, field) per cached field.
    Anything read another way (`Context.run()`/`write()`, a version without a memo key) sets `uncacheable`."""

    reads: list[tuple[Any, tuple[date, date], str, str]] = field(default_factory=list)
    uncacheable: bool = False
    results: int = 0  # executions: a batch or a stream is never stored
    query: str | None = None
    operation_name: str | None = None


class VersionMemo:
    """Data versions read in the last `ttl_s` seconds, per (project, UTC days).

    Skips the version query (a thread hop and a database round trip) on most cached requests; the price is
    that a cached answer may be up to `ttl_s` seconds staler than the database. `ttl_s = 0` reads every time.
    """

    def __init__(self, ttl_s: float, max_entries: int = 10_000) -> None:
        self._ttl = ttl_s
        self._max = max_entries
        self._entries: dict[tuple, tuple[float, str]] = {}

    def get(self, key: tuple) -> str | None:
        hit = self._entries.get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def put(self, key: tuple, version: str, read_at: float) -> None:
        """`read_at`: `time.monotonic()` taken before the version was read. The entry expires `ttl_s` after
        that moment (not after a slow computation ends), and an older read never replaces a newer one."""
        expires = read_at + self._ttl
        if self._ttl <= 0 or expires <= time.monotonic():
            return
        current = self._entries.get(key)
        if current is not None and current[0] >= expires:
            return
        if len(self._entries) >= self._max:
            self._entries.clear()
        self._entries[key] = (expires, version)
