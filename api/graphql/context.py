"""Per-request context: the authenticated read key, what it may see, and how resolvers reach the warehouse.

Only request-scoped things live here: the key and its projects (the tenant check behind `CanReadProject`),
`run()` / `write()` / `cached()` (one pooled connection, one read-only snapshot with a statement timeout and
its read plan, the result cache, errors mapped to safe GraphQL errors). Validating the shared arguments is
`api.graphql.arguments.read_scope`; domain helpers live in the domain's package.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from starlette.concurrency import run_in_threadpool
from strawberry.fastapi import BaseContext

from api.graphql.cache import QueryCache, Recording, VersionMemo, cache_key
from api.graphql.errors import QUERY_TIMEOUT, UNAVAILABLE, ClientError, bad_input, forbidden
from api.ratelimit import RateLimiter
from api.security import KeyCache
from pulseops.settings import Settings
from warehouse.db import set_local_statement_timeout
from warehouse.reads.exact import data_version, snapshot
from warehouse.reads.plan import RawDataGone, ReadPlan, plan_reads
from warehouse.tenants import ApiKeyRow, readable_projects

T = TypeVar("T")


@dataclass(frozen=True)
class ProjectAccess:
    id: uuid.UUID
    org_id: uuid.UUID
    slug: str
    name: str
    org_slug: str
    timezone: str


class ProjectsCache:
    """Projects a read key may read, cached like keys (a new project shows up within the TTL)."""

    def __init__(self, pool: ConnectionPool, ttl_s: float) -> None:
        self._pool = pool
        self._ttl = ttl_s
        self._entries: dict[uuid.UUID, tuple[float, dict[uuid.UUID, ProjectAccess]]] = {}

    def cached(self, key: ApiKeyRow) -> dict[uuid.UUID, ProjectAccess] | None:
        """Non-blocking probe, so a hit costs no worker-thread hop."""
        hit = self._entries.get(key.id)
        return hit[1] if hit and hit[0] > time.monotonic() else None

    def lookup(self, key: ApiKeyRow) -> dict[uuid.UUID, ProjectAccess]:
        hit = self.cached(key)
        if hit is not None:
            return hit
        with self._pool.connection() as conn:
            rows = readable_projects(conn, key.org_id, key.project_id)
        projects = {r[0]: ProjectAccess(*r) for r in rows}
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key.id] = (time.monotonic() + self._ttl, projects)
        return projects


@dataclass
class ReadServices:
    """What the GraphQL endpoint needs from the app, created once in the lifespan."""

    settings: Settings
    pool: ConnectionPool
    cache: QueryCache
    limiter: RateLimiter
    keys: KeyCache
    projects: ProjectsCache
    lag: Callable[[], int | None] = field(default=lambda: None)
    versions: VersionMemo = field(default_factory=lambda: VersionMemo(1.0))


class Context(BaseContext):
    def __init__(self, services: ReadServices, key: ApiKeyRow | None) -> None:
        super().__init__()
        self.services = services
        self.settings = services.settings.query
        self.cold = services.settings.cold  # raw days gone from PostgreSQL are read from here
        self._key = key
        self.recording: Recording | None = None  # set by the /graphql route when the answer may be stored

    @property
    def read_key(self) -> ApiKeyRow | None:
        """The key authenticated from the request's headers (None over WebSocket until `key()`, and on GET)."""
        return self._key

    # --- tenant ------------------------------------------------------------------------------------------

    async def key(self) -> ApiKeyRow:
        """The read key; over WebSocket it may arrive in the connection_init payload instead of a header."""
        if self._key is None:
            params = self.connection_params if isinstance(self.connection_params, dict) else {}
            supplied = params.get("apiKey") or params.get("X-API-Key")
            if not isinstance(supplied, str) or not supplied:
                raise ClientError("a read key is required (X-API-Key)", "UNAUTHENTICATED")
            row = await run_in_threadpool(self.services.keys.lookup, supplied)
            if row is None:
                raise ClientError("unknown or revoked key", "UNAUTHENTICATED")
            if row.kind != "read":
                raise ClientError("ingest keys cannot read; use a read key", "FORBIDDEN")
            self._key = row
        return self._key

    async def projects(self) -> dict[uuid.UUID, ProjectAccess]:
        key = await self.key()
        hit = self.services.projects.cached(key)
        if hit is not None:
            return hit
        try:
            return await run_in_threadpool(self.services.projects.lookup, key)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise ClientError("the warehouse is unavailable; retry shortly", UNAVAILABLE) from exc

    async def project(self, project_id: str, argument: str = "projectId") -> ProjectAccess:
        try:
            pid = uuid.UUID(str(project_id))
        except ValueError:
            raise bad_input(argument, "not a project id (UUID)") from None
        found = (await self.projects()).get(pid)
        if found is None:
            raise forbidden()
        return found

    # --- execution ---------------------------------------------------------------------------------------

    async def run(self, fn: Callable[[psycopg.Connection], T], gone_field: str = "from") -> T:
        """`fn(conn)` in a worker thread inside one read-only snapshot; database errors become safe errors.
        Its answer is not tracked by a data version: the whole answer is then never stored."""
        self._uncacheable()
        return await run_in_threadpool(self._run, fn, gone_field)

    def _uncacheable(self) -> None:
        if self.recording is not None:
            self.recording.uncacheable = True

    def _run(self, fn: Callable[[psycopg.Connection], T], gone_field: str = "from") -> T:
        try:
            with self.services.pool.connection() as conn, snapshot(conn, self.settings.statement_timeout_ms):
                return fn(conn)
        except RawDataGone as exc:
            raise bad_input(
                gone_field,
                f"raw events of {exc.days[0].isoformat()}..{exc.days[-1].isoformat()} (UTC) are neither in "
                "PostgreSQL nor in the cold tier (not exported before they were dropped); this question needs "
                "them: start after that day",
            ) from None
        except psycopg.errors.QueryCanceled as exc:
            raise ClientError(
                f"the query ran longer than {self.settings.statement_timeout_ms} ms; narrow the range or filters",
                QUERY_TIMEOUT,
            ) from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise ClientError("the warehouse is unavailable; retry shortly", UNAVAILABLE) from exc

    def _plain(self, fn: Callable[[psycopg.Connection], T]) -> T:
        try:
            with self.services.pool.connection() as conn:
                return fn(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise ClientError("the warehouse is unavailable; retry shortly", UNAVAILABLE) from exc

    async def write(self, fn: Callable[[psycopg.Connection], T]) -> T:
        """`fn(conn)` in one read-write transaction (metric definitions)."""
        self._uncacheable()

        def work() -> T:
            try:
                with self.services.pool.connection() as conn, conn.transaction():
                    set_local_statement_timeout(conn, self.settings.statement_timeout_ms)
                    return fn(conn)
            except (psycopg.OperationalError, PoolTimeout) as exc:
                raise ClientError("the warehouse is unavailable; retry shortly", UNAVAILABLE) from exc

        return await run_in_threadpool(work)

    async def cached(
        self,
        field_name: str,
        project: ProjectAccess,
        days: tuple[date, date],
        arguments: dict[str, Any],
        result_type: type[T],
        build: Callable[[psycopg.Connection, ReadPlan], T],
        extra_version: Callable[[psycopg.Connection], str] | None = None,
    ) -> T:
        """`build(conn, plan)` through the result cache. The key's data version is read at request time; on a
        miss the answer's own snapshot classifies the UTC days `days` once (`warehouse.reads.plan`) and that
        plan gives both the key's version and every query's choice of tier."""

        def version(conn: psycopg.Connection) -> str:
            v = data_version(conn, project.id, *days)
            return v + "/" + extra_version(conn) if extra_version else v

        cache = self.services.cache
        memo_key = (project.id, days) if extra_version is None else None
        if memo_key is None:
            self._uncacheable()  # the whole-answer cache checks memo versions only
        if cache.available:
            current = self.services.versions.get(memo_key) if memo_key else None
            if current is None:
                read_at = time.monotonic()
                current = await run_in_threadpool(self._plain, version)  # one statement: no snapshot needed
                if memo_key:
                    self.services.versions.put(memo_key, current, read_at)
            hit = await cache.get(
                cache_key(project.org_id, project.id, field_name, current, arguments), field_name, result_type
            )
            if hit is not None:
                self._record(field_name, project, days, current)
                return hit

        def compute(conn: psycopg.Connection) -> tuple[str, T]:
            plan = plan_reads(conn, project.id, *days, self.cold)
            seen = plan.version + "/" + extra_version(conn) if extra_version else plan.version
            return seen, build(conn, plan)  # the version of the snapshot the answer comes from

        read_at = time.monotonic()
        seen, result = await run_in_threadpool(self._run, compute, "from")
        if memo_key:
            self.services.versions.put(memo_key, seen, read_at)
        await cache.put(cache_key(project.org_id, project.id, field_name, seen, arguments), result)
        self._record(field_name, project, days, seen)
        return result

    def _record(self, field_name: str, project: ProjectAccess, days: tuple[date, date], version: str) -> None:
        if self.recording is not None:
            self.recording.reads.append((project, days, version, field_name))
