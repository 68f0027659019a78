"""Land a batch of raw events exactly once: COPY into a temp table, then one statement that claims event ids,
inserts the new rows, and bumps the landed-day versions, all in the caller's single transaction.

Exactly-once comes from the `event_ids` ledger (one row per project/event_id), not from Kafka: the broker
redelivers after a crash and the same event may be re-sent by a client, and both must land once.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import orjson
import psycopg
from psycopg.types.json import set_json_dumps

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


_CREATE_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS landing_batch (
    project_id uuid, event_time timestamptz, event_id uuid, org_id uuid,
    event_name text, distinct_id text, received_at timestamptz, properties jsonb
) ON COMMIT DELETE ROWS
"""

_COPY = f"COPY landing_batch ({', '.join(LANDING_COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_COPY_TYPES = ["uuid", "timestamptz", "uuid", "uuid", "text", "text", "timestamptz", "jsonb"]

# Sorted upsert into landed_days: concurrent workers lock those rows in the same order (no deadlock).
# Both inserts go in their index's key order: neighbouring keys then share B-tree leaf pages, which cut the
# merge's PostgreSQL time per row by ~15-20 % (12 -> 10 us, 20k-row chunks, measured side by side with
# the unsorted statement; the sorts themselves cost well under 1 us a row).
_MERGE = """
WITH fresh AS (
    INSERT INTO event_ids (project_id, event_id, event_time)
    SELECT project_id, event_id, event_time FROM landing_batch ORDER BY 1, 2
    ON CONFLICT DO NOTHING
    RETURNING project_id, event_id
), inserted AS (
    INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at, properties)
    SELECT b.project_id, b.event_time, b.event_id, b.org_id, b.event_name, b.distinct_id, b.received_at, b.properties
    FROM landing_batch b JOIN fresh f USING (project_id, event_id) ORDER BY 1, 2
    RETURNING project_id, event_time
), per_day AS (
    SELECT project_id, (event_time AT TIME ZONE 'UTC')::date AS day, count(*) AS n
    FROM inserted GROUP BY 1, 2 ORDER BY 1, 2
), bumped AS (
    INSERT INTO landed_days AS l (project_id, day, events)
    SELECT project_id, day, n FROM per_day
    ON CONFLICT (project_id, day) DO UPDATE
    SET version = l.version + 1, events = l.events + EXCLUDED.events, last_landed_at = now()
)
SELECT project_id, day, n FROM per_day
"""

_INSERT_DEAD = """
INSERT INTO dead_letters (reason, detail, org_id, project_id, payload, payload_sha256,
                          source_topic, source_partition, source_offset)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT DO NOTHING
"""


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

    Rows must be deduplicated by (project_id, event_id) within the batch and carry UTC event times. The
    connection must be in autocommit mode: partitions are created in their own transactions, and the landing
    transaction must really commit (inside an open transaction it would only be a savepoint).
    """
    if not conn.autocommit:
        raise ValueError("land_batch needs an autocommit connection")
    set_json_dumps(_dumps, conn)
    result = LandResult(received=len(rows), dead_letters=len(dead))
    if rows:
        (partitions or PartitionCache()).ensure(conn, {r[1].date() for r in rows})
    with conn.transaction():
        if rows:
            # 64 MB keeps the ledger join of a 20k-row chunk in memory (the 4 MB default sorted on disk).
            conn.execute("SET LOCAL work_mem = '64MB'")
            conn.execute(_CREATE_TEMP)
            with conn.cursor() as cur:
                with cur.copy(_COPY) as copy:
                    copy.set_types(_COPY_TYPES)
                    for row in rows:
                        copy.write_row(row)
                for project_id, day, n in cur.execute(_MERGE).fetchall():
                    result.days[(project_id, day)] = n
                    result.landed += n
        if dead:
            with conn.cursor() as cur:
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
