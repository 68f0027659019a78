"""Raw retention: a day partition of `events` is dropped only when every project in it has a verified export
of the day's current data."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

import psycopg
from psycopg import sql

from pulseops.settings import ColdSettings
from warehouse.aggregates import day_bounds
from warehouse.cold.store import ColdStore
from warehouse.partitions import is_attached, partition_name


@dataclass
class Retention:
    dropped: list[date] = field(default_factory=list)
    kept: dict[date, str] = field(default_factory=dict)  # day -> why its raw data stays in PostgreSQL


def drop_exported_partitions_before(conn: psycopg.Connection, cutoff: date, cold: ColdSettings) -> Retention:
    """Raw retention: drop each events day partition older than `cutoff` (attached, or detached by an
    earlier retention) whose every project has a verified export of the current data, and forget the day's
    ids in the dedup ledger. Anything else stays attached and is reported with the reason."""
    store = ColdStore.from_settings(cold)
    out = Retention()
    for day in _raw_days(conn):
        if day >= cutoff:
            continue
        reason = _drop_if_exported(conn, store, day)
        if reason is None:
            out.dropped.append(day)
        else:
            out.kept[day] = reason
    return out


def _raw_days(conn: psycopg.Connection) -> list[date]:
    rows = conn.execute(
        "SELECT relname FROM pg_class WHERE relkind = 'r' AND relname ~ '^events_p[0-9]{8}$' "
        "AND pg_table_is_visible(oid) ORDER BY 1"
    ).fetchall()
    return [datetime.strptime(name, "events_p%Y%m%d").date() for (name,) in rows]


def _drop_if_exported(conn: psycopg.Connection, store: ColdStore, day: date) -> str | None:
    table = sql.Identifier(partition_name(day))
    start, end = day_bounds(day)
    with conn.transaction():
        # No writer can add rows while we compare: landing refuses days this old anyway.
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(table))
        counts = dict(conn.execute(sql.SQL("SELECT project_id, count(*) FROM {} GROUP BY 1").format(table)))
        exports = {
            p: (rows, status, version, current, rel, size)
            for p, rows, status, version, current, rel, size in conn.execute(
                """
                SELECT c.project_id, c.rows, c.status, c.source_version, coalesce(l.version, 0), c.path, c.bytes
                FROM cold_exports c LEFT JOIN landed_days l ON l.project_id = c.project_id AND l.day = c.day
                WHERE c.dataset = 'events' AND c.day = %s
                """,
                (day,),
            )
        }
        for project_id, n in counts.items():
            e = exports.get(project_id)
            if e is None:
                return f"project {project_id}: not exported"
            rows, status, version, current, rel, size = e
            if status != "verified":
                return f"project {project_id}: export {status}, parity not proven"
            if version != current or rows != n:
                return f"project {project_id}: export of version {version} ({rows} rows), raw has {current} ({n})"
            if store.size(rel) != size:
                return f"project {project_id}: {rel} missing or changed size since the export"
        if is_attached(conn, day):
            conn.execute(sql.SQL("ALTER TABLE events DETACH PARTITION {}").format(table))
        conn.execute(sql.SQL("DROP TABLE {}").format(table))
        conn.execute("DELETE FROM event_ids WHERE event_time >= %s AND event_time < %s", (start, end))
    return None
