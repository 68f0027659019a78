"""Land a batch of raw events exactly once, in the caller's single transaction: claim the event ids in the
`event_ids` ledger, COPY the claimed rows into `events`, record the identity they carry (links between ids,
person properties: warehouse/identity.py), bump the landed-day versions.

Exactly-once comes from the `event_ids` ledger (one row per project/event_id), not from Kafka: the broker
redelivers after a crash and the same event may be re-sent by a client, and both must land once. The
ledger's primary key decides who lands an event: a transaction copies into `events` only rows whose key it
inserted itself, and a concurrent lander of the same key waits on that key until the first one commits or
rolls back.

Why two COPYs rather than COPY into a temp table + INSERT ... SELECT ... ON CONFLICT (the previous design):
PostgreSQL's CPU per landed row in a medium catch-up (1M events, one worker, its backends' CPU over the rows)
went ~12 us -> 8.4 us, against 6.4 us for a plain binary COPY into `events` in the same run (the same GIN and
primary key indexes): no temp table, no executor join, no speculative insertion per row. Side by side on one
connection (200k catch-up rows in 20k-row transactions into emptied tables, alternating, two rounds):
previous design 11.1 / 10.7 us, this one 6.1 / 7.4 us, plain COPY 5.1 / 5.8 us of PostgreSQL CPU per row. Rows are copied in
event-time order (neighbouring leaves of the primary key: 9.0 vs 11.0 us of PostgreSQL CPU per row in
arrival order, 20k-row chunks, measured side by side on 40k rows). One worker landed 63k rows/s = 0.43x that COPY
(streams/sink.py, benchmarks/catchup.py)."""

from __future__ import annotations

import hashlib
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from operator import itemgetter

import orjson
import psycopg
from psycopg import postgres
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.types.json import set_json_dumps

from warehouse import identity
from warehouse.partitions import ensure_partitions, existing_partition_days

# Column order of a landing row tuple (and of the COPY below).
LANDING_COLUMNS = (
    "project_id",
    "event_time",
    "event_id",
    "org_id",
    "event_name",
    "distinct_id",
    "received_at",
    "properties",
)
LandingRow = tuple[uuid.UUID, datetime, uuid.UUID, uuid.UUID, str, str, datetime, str]


@dataclass(frozen=True)
class DeadLetter:
    reason: str
    detail: str
    payload: bytes
    source_topic: str
    source_partition: int
    source_offset: int
    org_id: uuid.UUID | None = None
    project_id: uuid.UUID | None = None
    # Position of the event inside a packed (format 2) message; None when the payload is the whole message.
    source_index: int | None = None


@dataclass
class LandResult:
    received: int = 0
    landed: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    days: dict[tuple[uuid.UUID, date], int] = field(default_factory=dict)
    # identity carried by the landed rows (warehouse/identity.py): id pairs linked, (id, key) properties set
    links: int = 0
    person_properties: int = 0


# The ledger claim, fast path: binary COPY of the keys straight into `event_ids` (no executor, no
# speculative insertion) under a savepoint. The primary key is the arbiter: if any key is already there
# (a replay, a client's retry, another worker landing the same event right now: its uncommitted key makes
# this COPY wait for its commit) the COPY fails with unique_violation and the savepoint is rolled back.
_COPY_LEDGER = "COPY event_ids (project_id, event_id, event_time) FROM STDIN (FORMAT BINARY)"
_LEDGER_TYPES = ["uuid", "uuid", "timestamptz"]

# Slow path, after that conflict: the keys (with their position in the batch) go to a temp table and one
# statement claims what is still free; it answers the positions it could not claim. The claim goes in key
# order: two workers claiming overlapping keys lock them in the same order (no deadlock).
_CREATE_KEYS = """
CREATE TEMP TABLE IF NOT EXISTS landing_keys (
    project_id uuid, event_id uuid, event_time timestamptz, i int4
) ON COMMIT DELETE ROWS
"""
_COPY_KEYS = "COPY landing_keys (project_id, event_id, event_time, i) FROM STDIN (FORMAT BINARY)"
_KEY_TYPES = ["uuid", "uuid", "timestamptz", "int4"]
_CLAIM = """
WITH fresh AS (
    INSERT INTO event_ids (project_id, event_id, event_time)
    SELECT project_id, event_id, event_time FROM landing_keys ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING project_id, event_id
)
SELECT k.i FROM landing_keys k
WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.project_id = k.project_id AND f.event_id = k.event_id)
"""

# Only claimed rows are copied, straight into `events` (PostgreSQL routes them to the day partitions).
_COPY_EVENTS = f"COPY events ({', '.join(LANDING_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_EVENT_TYPES = ["uuid", "timestamptz", "uuid", "uuid", "text", "text", "timestamptz", "jsonb"]

# Last statement before the commit, so the landed_days row locks (which serialise workers landing the same
# project-day) are held only for the commit. Sorted: concurrent workers lock those rows in the same order.
_BUMP_DAYS = """
INSERT INTO landed_days AS l (project_id, day, events)
SELECT * FROM unnest(%s::uuid[], %s::date[], %s::bigint[]) ORDER BY 1, 2
ON CONFLICT (project_id, day) DO UPDATE
SET version = l.version + 1, events = l.events + EXCLUDED.events, last_landed_at = now()
"""

_INSERT_DEAD = """
INSERT INTO dead_letters (reason, detail, org_id, project_id, payload, payload_sha256,
                          source_topic, source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


class _UUIDBinaryDumper(Dumper):
    """uuid.UUID -> 16 bytes. psycopg's own dumper (obj.bytes) took 1.8 us a row to format an events row
    for COPY and 1.0 us a key row; this one 1.1 and 0.5 (20k catch-up rows, format only): the landing
    thread formats every event twice (ledger key, events row) while holding the worker's GIL."""

    oid = postgres.types["uuid"].oid
    format = Format.BINARY

    def dump(self, obj: uuid.UUID) -> bytes:
        return obj.int.to_bytes(16)


def _dumps(obj: object) -> str:
    """Landing rows carry properties as JSON text already (RawEvent keeps them undecoded): pass it through."""
    return obj if isinstance(obj, str) else orjson.dumps(obj).decode()


class PartitionCache:
    """Days known to have a partition, so the hot path skips the catalog except for new days."""

    def __init__(self) -> None:
        self._days: set[date] | None = None

    def ensure(self, conn: psycopg.Connection, days: set[date]) -> None:
        if self._days is None:
            self._days = existing_partition_days(conn)
        missing = days - self._days
        if missing:
            ensure_partitions(conn, missing)
            self._days |= missing

    def reset(self) -> None:
        self._days = None


def land_batch(
    conn: psycopg.Connection,
    rows: Sequence[LandingRow],
    dead: Sequence[DeadLetter] = (),
    partitions: PartitionCache | None = None,
) -> LandResult:
    """Land rows and dead letters in one transaction; safe to call again with the same input.

    Rows must be deduplicated by (project_id, event_id) within the batch and carry UTC event times (zero
    offset: the day of a row is `event_time.date()`). The connection must be in autocommit mode: partitions
    are created in their own transactions, and the landing transaction must really commit (inside an open
    transaction it would only be a savepoint).

    One transaction: claim the keys in the `event_ids` ledger, COPY only the claimed rows into `events`,
    bump `landed_days` for the days that received rows. Whatever fails on the way rolls all of it back.
    """
    if not conn.autocommit:
        raise ValueError("land_batch needs an autocommit connection")
    set_json_dumps(_dumps, conn)
    conn.adapters.register_dumper(uuid.UUID, _UUIDBinaryDumper)
    result = LandResult(received=len(rows), dead_letters=len(dead))
    days = _per_day(rows)
    if rows:
        (partitions or PartitionCache()).ensure(conn, {day for _, day in days})
    with conn.transaction(), conn.cursor() as cur:
        if rows:
            fresh = _claim(cur, rows)
            if len(fresh) != len(rows):
                days = _per_day(fresh)
            if fresh:
                # In event-time order: rows of a project then go to neighbouring B-tree leaves of the primary
                # key (project_id, event_time, event_id), measured cheaper than arrival order (see
                # streams/sink.py).
                with cur.copy(_COPY_EVENTS) as copy:
                    copy.set_types(_EVENT_TYPES)
                    for row in sorted(fresh, key=itemgetter(1)):
                        copy.write_row(row)
                # links and person properties of the claimed rows, before the landed_days locks (identity.py)
                found = identity.record(cur, fresh)
                result.links, result.person_properties = found.links, found.properties
                keys = sorted(days)
                projects = [uuid.UUID(int=p) for p, _ in keys]
                cur.execute(_BUMP_DAYS, (projects, [d for _, d in keys], [days[k] for k in keys]))
                result.days = {(p, k[1]): days[k] for p, k in zip(projects, keys, strict=True)}
                result.landed = len(fresh)
        if dead:
            cur.executemany(
                _INSERT_DEAD,
                [
                    (
                        d.reason,
                        d.detail,
                        d.org_id,
                        d.project_id,
                        d.payload,
                        hashlib.sha256(d.payload).digest(),
                        d.source_topic,
                        d.source_partition,
                        d.source_offset,
                    )
                    for d in dead
                ],
            )
    result.duplicates = result.received - result.landed
    return result


def _per_day(rows: Sequence[LandingRow]) -> Counter[tuple[int, date]]:
    """Rows per (project_id as an int, UTC day): int keys hash in C, UUIDs in Python (0.17 vs 0.34 us)."""
    return Counter((r[0].int, r[1].date()) for r in rows)


def _key_order(r: LandingRow) -> int:
    """(project_id, event_id) as one int: PostgreSQL's uuid order, the ledger's primary key order."""
    return r[0].int << 128 | r[2].int


def _claim(cur: psycopg.Cursor, rows: Sequence[LandingRow]) -> Sequence[LandingRow]:
    """Claim the rows' keys in the ledger inside the caller's transaction; answer the rows claimed.

    A key another transaction holds or committed is never claimed twice: the ledger's primary key decides,
    on either path."""
    # Key order, the claim's: concurrent landers then wait on each other's keys in one order, never in a
    # cycle (in arrival order, two landers copying overlapping batches could each wait on a key the other
    # holds). One int per key: 0.35 us a row to sort, a (project, event_id) tuple of ints 0.8 us.
    rows = sorted(rows, key=_key_order)
    try:
        with cur.connection.transaction(), cur.copy(_COPY_LEDGER) as copy:  # a savepoint
            copy.set_types(_LEDGER_TYPES)
            for r in rows:
                copy.write_row((r[0], r[2], r[1]))
        return rows
    except psycopg.errors.UniqueViolation:
        pass
    # 64 MB keeps the claim's hash anti-join of a 20k-row chunk in memory.
    cur.execute("SET LOCAL work_mem = '64MB'")
    cur.execute(_CREATE_KEYS)
    with cur.copy(_COPY_KEYS) as copy:
        copy.set_types(_KEY_TYPES)
        for i, r in enumerate(rows):
            copy.write_row((r[0], r[2], r[1], i))
    taken = {i for (i,) in cur.execute(_CLAIM).fetchall()}
    return [r for i, r in enumerate(rows) if i not in taken]


_UNLANDED = """
SELECT t.i
FROM unnest(%(projects)s::uuid[], %(events)s::uuid[], %(hashes)s::bytea[], %(idx)s::int[]) AS t(p, e, h, i)
WHERE NOT EXISTS (SELECT 1 FROM event_ids x WHERE x.project_id = t.p AND x.event_id = t.e)
  AND NOT EXISTS (SELECT 1 FROM dead_letters d WHERE d.dead_at >= %(since)s AND d.payload_sha256 = t.h)
ORDER BY t.i
"""


def unlanded(
    conn: psycopg.Connection, items: Sequence[tuple[uuid.UUID, uuid.UUID, bytes]], since: datetime
) -> list[int]:
    """Indexes of (project_id, event_id, payload) that neither landed nor were dead-lettered since `since`.

    The ingest spool asks this about acknowledged events whose broker may have lost them; a dead-lettered
    message counts as handled, or it would be published again forever.
    """
    if not items:
        return []
    params = {
        "projects": [p for p, _, _ in items],
        "events": [e for _, e, _ in items],
        "hashes": [hashlib.sha256(v).digest() for _, _, v in items],
        "idx": list(range(len(items))),
        "since": since,
    }
    return [row[0] for row in conn.execute(_UNLANDED, params).fetchall()]
