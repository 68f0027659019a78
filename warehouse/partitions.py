"""Day partitions of `events`: created ahead by maintenance, and on demand for late or historical days."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, timedelta

import psycopg

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
