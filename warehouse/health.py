"""Per-project pipeline health from the warehouse: freshness, dead letters, late arrivals."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg


@dataclass(frozen=True)
class LateShare:
    day: date
    events: int
    late: int


@dataclass(frozen=True)
class ProjectHealth:
    last_landed_at: datetime | None
    events_today: int
    dead_letters_by_reason: dict[str, int]
    late_by_day: list[LateShare]
    stale_days: int  # days with landed data their aggregates do not include yet


def project_health(
    conn: psycopg.Connection, project_id: uuid.UUID, now: datetime, days: int, late_lag_s: float
) -> ProjectHealth:
    """Health over the last `days` UTC days; dead letters over the last 24 hours."""
    today = now.date()
    first = today - timedelta(days=days - 1)
    last_landed, events_today, stale = conn.execute(
        """
        SELECT max(l.last_landed_at),
               coalesce(sum(l.events) FILTER (WHERE l.day = %(today)s), 0)::bigint,
               count(*) FILTER (WHERE b.built_version IS DISTINCT FROM l.version AND l.day < %(today)s)::int
        FROM landed_days l
        LEFT JOIN aggregate_builds b ON b.project_id = l.project_id AND b.day = l.day
        WHERE l.project_id = %(p)s
        """,
        {"p": project_id, "today": today},
    ).fetchone()
    dead = dict(
        conn.execute(
            "SELECT reason, count(*)::bigint FROM dead_letters WHERE project_id = %s AND dead_at >= %s "
            "GROUP BY 1 ORDER BY 1",
            (project_id, now - timedelta(hours=24)),
        ).fetchall()
    )
    late = [
        LateShare(d, n, k)
        for d, n, k in conn.execute(
            """
            SELECT (event_time AT TIME ZONE 'UTC')::date, count(*)::bigint,
                   count(*) FILTER (WHERE received_at - event_time > %(lag)s * interval '1 second')::bigint
            FROM events
            WHERE project_id = %(p)s AND event_time >= %(s)s::timestamp AT TIME ZONE 'UTC'
              AND event_time < %(e)s::timestamp AT TIME ZONE 'UTC'
            GROUP BY 1 ORDER BY 1
            """,
            {"p": project_id, "s": first, "e": today + timedelta(days=1), "lag": late_lag_s},
        )
    ]
    return ProjectHealth(last_landed, events_today, dead, late, stale)


@dataclass(frozen=True)
class SystemHealth:
    """The whole warehouse at a glance, for `pulseops status` (all projects)."""

    last_landed_at: datetime | None
    stale_days: int  # (project, day) pairs with landed data their aggregates do not include yet
    dead_letters_24h: int


def system_health(conn: psycopg.Connection, now: datetime) -> SystemHealth:
    """Last landed event, days awaiting a rebuild (before today: today's is rebuilt continuously) and dead
    letters of the last 24 hours, over every project."""
    last_landed, stale = conn.execute(
        """
        SELECT max(l.last_landed_at),
               count(*) FILTER (WHERE b.built_version IS DISTINCT FROM l.version AND l.day < %(today)s)::int
        FROM landed_days l
        LEFT JOIN aggregate_builds b ON b.project_id = l.project_id AND b.day = l.day
        """,
        {"today": now.date()},
    ).fetchone()
    (dead,) = conn.execute(
        "SELECT count(*)::bigint FROM dead_letters WHERE dead_at >= %s", (now - timedelta(hours=24),)
    ).fetchone()
    return SystemHealth(last_landed, stale or 0, dead)
