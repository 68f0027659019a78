"""Retention as an older release did it (detach a day's raw partition without exporting it first), so tests can
build the state the product must still handle: raw rows gone from `events`, aggregates kept, no cold copy."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import psycopg
from psycopg import sql

from warehouse.partitions import existing_partition_days, partition_name


def detach_partitions_before(conn: psycopg.Connection, cutoff: date) -> list[str]:
    """Old raw retention: detach day partitions older than `cutoff` from `events` (data kept in the
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
