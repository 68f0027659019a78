"""Pipeline detail for the health page: dead-letter samples and which build (Dagster run) made each day."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg.rows import class_row

MAX_PAYLOAD_BYTES = 4096


@dataclass(frozen=True)
class DeadLetterRow:
    id: int
    dead_at: datetime
    reason: str
    detail: str
    payload: str  # the original bytes as text (invalid UTF-8 replaced), cut at MAX_PAYLOAD_BYTES
    payload_bytes: int
    source_topic: str
    source_partition: int
    source_offset: int


def dead_letter_samples(
    conn: psycopg.Connection, project_id: uuid.UUID, reason: str | None, since: datetime, limit: int
) -> list[DeadLetterRow]:
    """Newest dead letters of a project (optionally one reason); payloads are shown as received."""
    rows = conn.execute(
        """
        SELECT id, dead_at, reason, detail, substring(payload FROM 1 FOR %s), octet_length(payload),
               source_topic, source_partition, source_offset
        FROM dead_letters
        WHERE project_id = %s AND dead_at >= %s AND (%s::text IS NULL OR reason = %s)
        ORDER BY dead_at DESC, id DESC LIMIT %s
        """,
        (MAX_PAYLOAD_BYTES, project_id, since, reason, reason, limit),
    ).fetchall()
    return [
        DeadLetterRow(i, at, r, d, bytes(p).decode("utf-8", "replace"), n, t, part, off)
        for i, at, r, d, p, n, t, part, off in rows
    ]


@dataclass(frozen=True)
class DayBuildRow:
    day: date
    events: int
    landed_version: int
    built_version: int | None
    built_at: datetime | None
    run_id: str | None
    last_landed_at: datetime
    # from the sensors' retry ledger (warehouse/runs.py): runs that left the day's rebuild undone
    build_failures: int
    build_error: str | None
    next_attempt_at: datetime | None
    build_given_up: bool


def day_builds(conn: psycopg.Connection, project_id: uuid.UUID, first: date, last: date) -> list[DayBuildRow]:
    """Per landed UTC day: events, the landed version, the build that last rebuilt it (with its run id) and,
    when rebuild runs keep failing for the day, how often, why, and when the next attempt is due."""
    with conn.cursor(row_factory=class_row(DayBuildRow)) as cur:
        return cur.execute(
            """
            SELECT l.day, l.events, l.version AS landed_version, b.built_version, b.built_at, b.run_id,
                   l.last_landed_at, coalesce(f.failures, 0) AS build_failures, f.last_error AS build_error,
                   f.next_attempt_at, (f.day IS NOT NULL AND f.next_attempt_at IS NULL) AS build_given_up
            FROM landed_days l
            LEFT JOIN aggregate_builds b ON b.project_id = l.project_id AND b.day = l.day
            LEFT JOIN run_failures f ON f.job = 'aggregates' AND f.day = l.day
            WHERE l.project_id = %s AND l.day BETWEEN %s AND %s
            ORDER BY l.day DESC
            """,
            (project_id, first, last),
        ).fetchall()
