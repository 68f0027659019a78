"""Whole answers of repeated GraphQL queries, served before Strawberry parses, validates and executes them.

A hit of the result cache (api/graphql/cache.py) still paid Strawberry's execution and the JSON encoding of the
answer, most of a hit's time for a large answer (a 168-point hourly series). This cache keeps the encoded
response bytes instead, under sha256(read key id, schema, Content-Type, Accept, exact body bytes), together with
what they were computed from: the projects read (as the key saw them) and, per (project, UTC days), the data
version of each cached field. A hit is served only when:
- the request passed the same gates as any other (key authenticated through the key cache, read key, per-key
  rate limit, body limit: all in `get_context` of api/routes/graphql.py, before the lookup);
- the key may still read every project, unchanged (`ProjectsCache`, the bound of the normal path);
- every data version is still the one stored (`VersionMemo`, read from PostgreSQL when expired: the bound of
  the result cache, `query.version_ttl_s`).
An answer is stored only for a single query operation whose root fields are all plain, undirected fields of
`CACHEABLE_FIELDS`, each answered through `Context.cached()`, with no error, nothing read otherwise (a
`Context.run()`, a person version) and no stream. Entries live in a per-process LRU (bounded in entries and
bytes) and in Redis with the result cache's TTL, so another API process hits through Redis; while Redis is
down the cache steps aside like the result cache.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections import OrderedDict
from datetime import date
from typing import TYPE_CHECKING

import msgspec
import psycopg
from graphql import FieldNode, GraphQLError, OperationType, parse
from graphql.utilities import get_operation_ast
from prometheus_client import Counter
from psycopg_pool import PoolTimeout
from starlette.concurrency import run_in_threadpool

from api.graphql.cache import LOOKUPS, Recording
from api.graphql.context import ProjectAccess
from warehouse.reads.exact import data_version

if TYPE_CHECKING:
    from api.graphql.context import ReadServices
    from warehouse.tenants import ApiKeyRow

PREFIX = "pulseops:gqlresp:"
# Root fields whose resolver reads only through `Context.cached()` (api/graphql/events/queries.py).
CACHEABLE_FIELDS = frozenset(
    {"eventCounts", "activeUsers", "totalEvents", "topEvents", "metrics", "breakdown"}
)

RESPONSES = Counter(
    "pulseops_graphql_response_cache_total",
    "Whole-answer cache lookups of GraphQL POSTs (api/graphql/response_cache.py).",
    ["result"],  # local_hit | hit | miss | stale | error | bypass
)


class Entry(msgspec.Struct, array_like=True):
    fields: list[str]  # root field names, for the per-field counter
    projects: list[ProjectAccess]
    reads: list[tuple[uuid.UUID, date, date, str]]  # project, first and last UTC day, data version
    body: bytes


_decoder = msgspec.msgpack.Decoder(Entry)
_encoder = msgspec.msgpack.Encoder()


def root_field_count(query: str | None, operation_name: str | None) -> int | None:
    """How many root fields the operation selects if it is a query made only of plain fields of
    `CACHEABLE_FIELDS` (no fragment, no directive at the root); else None."""
    if not query:
        return None
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return None
    if operation is None or operation.operation != OperationType.QUERY:
        return None
    selections = operation.selection_set.selections
    for node in selections:
        if not isinstance(node, FieldNode) or node.directives or node.name.value not in CACHEABLE_FIELDS:
            return None
    return len(selections)


class _Body(msgspec.Struct):
    """The parts of a GraphQL POST body that decide whether its answer may be stored (others are skipped)."""

    query: str | None = None
    operationName: str | None = None  # the GraphQL-over-HTTP name


_body_decoder = msgspec.json.Decoder(_Body)


class ResponseCache:
    """Per-process LRU of entries in front of Redis (the result cache's client, TTL and down state)."""

    MAX_LOCAL_BYTES = 32 * 1024 * 1024
    MAX_ENTRY_BYTES = 512 * 1024

    def __init__(self, schema_id: str, ttl_s: float, local_entries: int) -> None:
        self._schema_id = schema_id.encode()
        self._ttl = ttl_s
        self._local_entries = local_entries
        self._local: OrderedDict[str, tuple[float, int, Entry]] = OrderedDict()
        self._bytes = 0
        self._shapes: dict[tuple[str | None, str | None], int | None] = {}

    def root_fields(self, query: str | None, operation_name: str | None) -> int | None:
        """`root_field_count`, remembered per document (most clients send a few fixed documents)."""
        shape = (query, operation_name)
        if shape in self._shapes:
            return self._shapes[shape]
        count = root_field_count(query, operation_name)
        if query is not None and len(query) <= 8192:
            if len(self._shapes) >= 1000:
                self._shapes.clear()
            self._shapes[shape] = count
        return count

    def may_store(self, body: bytes) -> bool:
        """Whether the body's operation could ever be stored: if not, it costs no lookup (no Redis round trip
        for mutations, `recentEvents`, ...)."""
        try:
            request = _body_decoder.decode(body)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return False  # a batch, or a body Strawberry refuses (JSON nested too deep: its clean 400)
        return self.root_fields(request.query, request.operationName) is not None

    def storable(self, recording: Recording) -> bool:
        """One execution without errors, every root field answered through `Context.cached()`, nothing else
        read."""
        if recording.uncacheable or recording.results != 1 or not recording.reads:
            return False
        return self.root_fields(recording.query, recording.operation_name) == len(recording.reads)

    def key(self, key_id: uuid.UUID, content_type: str, accept: str, body: bytes) -> str:
        """The entry's name: the read key, the schema, the request's first Content-Type and Accept values (as
        Starlette's `Headers.get` returns them) and the exact body. api/routes/graphql_asgi.py computes it
        from the raw ASGI headers, api/routes/graphql.py from the Request: both must name the same entry."""
        h = hashlib.sha256(self._schema_id)
        for part in (key_id.bytes, content_type.encode(), accept.encode(), body):
            h.update(len(part).to_bytes(8, "big") + part)  # length-prefixed: no two splits hash alike
        return f"{PREFIX}{key_id}:{h.hexdigest()}"

    # --- lookup -----------------------------------------------------------------------------------------

    async def get(self, key: str, services: ReadServices, read_key: ApiKeyRow) -> bytes | None:
        """The stored answer if it is still exact for this key, else None (the request is then executed)."""
        entry = self._recall(key)
        if entry is not None:
            if await _still_valid(entry, services, read_key):
                return _counted(entry, "local_hit")
            self._forget(key)  # another process may have stored a newer answer in Redis
        raw = await services.cache.get_raw(key)
        if raw is None:
            RESPONSES.labels("miss" if services.cache.available else "error").inc()
            return None
        try:
            entry = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            RESPONSES.labels("miss").inc()
            return None
        if not await _still_valid(entry, services, read_key):
            RESPONSES.labels("stale").inc()
            return None
        self._remember(key, entry)
        return _counted(entry, "hit")

    async def put(self, key: str, recording: Recording, body: bytes, services: ReadServices) -> None:
        if not self.storable(recording) or not services.cache.available:
            return
        projects = {p.id: p for p, _days, _version, _field in recording.reads}
        reads = sorted({(p.id, days[0], days[1], v) for p, days, v, _f in recording.reads})
        if len({r[:3] for r in reads}) != len(reads) or len({r[0] for r in recording.reads}) != len(projects):
            return  # two fields saw different versions of the same days: no version makes both exact
        entry = Entry([f for _p, _d, _v, f in recording.reads], list(projects.values()), reads, body)
        self._remember(key, entry)
        await services.cache.set_raw(key, _encoder.encode(entry))

    # --- per-process LRU --------------------------------------------------------------------------------

    def _recall(self, key: str) -> Entry | None:
        hit = self._local.get(key)
        if hit is None:
            return None
        if hit[0] <= time.monotonic():
            self._forget(key)
            return None
        self._local.move_to_end(key)
        return hit[2]

    def _remember(self, key: str, entry: Entry) -> None:
        size = len(entry.body) + 200 * (len(entry.reads) + len(entry.projects)) + len(key)
        if self._local_entries <= 0 or size > self.MAX_ENTRY_BYTES:
            return
        self._forget(key)
        self._local[key] = (time.monotonic() + self._ttl, size, entry)
        self._bytes += size
        while len(self._local) > self._local_entries or self._bytes > self.MAX_LOCAL_BYTES:
            _key, (_expires, dropped, _entry) = self._local.popitem(last=False)
            self._bytes -= dropped

    def _forget(self, key: str) -> None:
        old = self._local.pop(key, None)
        if old is not None:
            self._bytes -= old[1]


def _counted(entry: Entry, source: str) -> bytes:
    RESPONSES.labels(source).inc()
    for name in entry.fields:  # each field was served from the cache, as a result-cache hit would count it
        LOOKUPS.labels(name, source).inc()
    return entry.body


async def _still_valid(entry: Entry, services: ReadServices, read_key: ApiKeyRow) -> bool:
    """The key still reads every project as it was, and every data version is unchanged; a database error
    is a miss (the executed request then answers it as the normal path does)."""
    projects = services.projects.cached(read_key)
    try:
        if projects is None:
            projects = await run_in_threadpool(services.projects.lookup, read_key)
        if any(projects.get(p.id) != p for p in entry.projects):
            return False
        current: dict[tuple, str] = {}
        missing = []
        for project, first, last, _version in entry.reads:
            memo_key = (project, (first, last))
            found = services.versions.get(memo_key)
            if found is None:
                missing.append(memo_key)
            else:
                current[memo_key] = found
        if missing:
            current.update(await run_in_threadpool(_read_versions, services, missing))
    except (psycopg.Error, PoolTimeout):
        return False
    return all(current[(p, (a, b))] == v for p, a, b, v in entry.reads)


def _read_versions(services: ReadServices, keys: list[tuple]) -> dict[tuple, str]:
    """Versions read now, one connection, remembered in the memo as `Context.cached()` does."""
    read_at = time.monotonic()
    out = {}
    with services.pool.connection() as conn:
        for memo_key in keys:
            project, (first, last) = memo_key
            out[memo_key] = data_version(conn, project, first, last)
    for memo_key, version in out.items():
        services.versions.put(memo_key, version, read_at)
    return out
