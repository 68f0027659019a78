"""Day partitions of `events`: created ahead by maintenance, and on demand for late or historical days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

# The one test of "is this UTC day's raw partition attached to `events`" (retention detaches old days; a day
# that never received data may have no partition at all). `{day}` is a SQL expression of type date, so set
# queries (`NOT {ATTACHED}` over landed days) and `is_attached` share the text.
ATTACHED = (
    "EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = 'events'::regclass"
    " AND i.inhrelid = to_regclass('events_p' || to_char({day}, 'YYYYMMDD')))"
)
_IS_ATTACHED = "SELECT " + ATTACHED.format(day="%s::date")


def partition_name(day: date) -> str:
    return f"events_p{day:%Y%m%d}"


def is_attached(conn: psycopg.Connection, day: date) -> bool:
    """Whether the day's raw partition is part of `events` (its raw rows are in PostgreSQL)."""
    return conn.execute(_IS_ATTACHED, (day,)).fetchone()[0]


def ensure_partitions(conn: psycopg.Connection, days: Iterable[date]) -> list[date]:
    """Create missing partitions, each in its own short transaction; returns the days created.

    Must not run inside a transaction that already wrote to `events`: ATTACH waits for concurrent
    writers' locks, so doing it mid-landing could deadlock two workers.
    """
    created = []
    for day in sorted(set(days)):
        with conn.transaction():
            if conn.execute("SELECT ensure_events_partition(%s)", (day,)).fetchone()[0]:
                created.append(day)
    return created


def ensure_window(conn: psycopg.Connection, today: date, back_days: int, ahead_days: int) -> list[date]:
    return ensure_partitions(conn, (today + timedelta(days=i) for i in range(-back_days, ahead_days + 1)))


def existing_partition_days(conn: psycopg.Connection) -> set[date]:
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'events'::regclass
        """
    ).fetchall()
    out = set()
    for (name,) in rows:
        stamp = name.removeprefix("events_p")
        out.add(date(int(stamp[:4]), int(stamp[4:6]), int(stamp[6:8])))
    return out


def detach_partitions_before(conn: psycopg.Connection, cutoff: date) -> list[str]:
    """Raw retention, first step: detach day partitions older than `cutoff` from `events` (data kept in the
    standalone tables) and forget their ids in the dedup ledger. Dropping a detached table is left to the
    cold-tier export, which must first prove the day was exported."""
    detached = []
    for day in sorted(d for d in existing_partition_days(conn) if d < cutoff):
        name = partition_name(day)
        with conn.transaction():
            conn.execute(sql.SQL("ALTER TABLE events DETACH PARTITION {}").format(sql.Identifier(name)))
            conn.execute(
                "DELETE FROM event_ids WHERE event_time >= %s AND event_time < %s",
                (_utc_midnight(day), _utc_midnight(day + timedelta(days=1))),
            )
        detached.append(name)
    return detached


def detached_partitions(conn: psycopg.Connection) -> list[str]:
    """Standalone events_pYYYYMMDD tables that retention detached and nothing has dropped yet."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_class c
        WHERE c.relkind = 'r' AND c.relname ~ '^events_p[0-9]{8}$'
          AND NOT EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid)
        ORDER BY 1
        """
    ).fetchall()
    return [r[0] for r in rows]


def _utc_midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)
