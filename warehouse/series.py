"""Time series in any IANA time zone, exact, from the aggregate tables.

Rollups are 15-minute UTC buckets and every real zone offset is a multiple of 15 minutes, so each bucket
falls wholly inside one local hour or day. Buckets carry their local start and UTC offset: on a DST
fall-back day the repeated local hour appears twice, with two offsets; a local day has 23, 24 or 25 hours.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

import psycopg

Granularity = Literal["hour", "day"]


@dataclass(frozen=True)
class Point:
    local_start: datetime  # naive local wall time
    utc_offset: timedelta
    value: int


def local_range(start: date, end: date, tz: str) -> tuple[datetime, datetime]:
    """UTC instants of local midnight at `start` and at the day after `end` (inclusive range of days)."""
    zone = ZoneInfo(tz)
    return (
        datetime.combine(start, datetime.min.time(), zone),
        datetime.combine(end + timedelta(days=1), datetime.min.time(), zone),
    )


def event_counts(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    start: date,
    end: date,
    tz: str,
    granularity: Granularity = "day",
    event_names: list[str] | None = None,
) -> list[Point]:
    """Events per local hour or day from `start` to `end` (local dates, inclusive)."""
    s, e = local_range(start, end, tz)
    rows = conn.execute(
        # Hours are keyed by local start and offset (a fall-back hour repeats); days by local date alone.
        """
        SELECT date_trunc(%(g)s, bucket AT TIME ZONE %(tz)s) AS local_start,
               CASE WHEN %(g)s = 'hour' THEN (bucket AT TIME ZONE %(tz)s) - (bucket AT TIME ZONE 'UTC') END,
               sum(events)::bigint
        FROM event_rollups
        WHERE project_id = %(p)s AND bucket >= %(s)s AND bucket < %(e)s
          AND (%(names)s::text[] IS NULL OR event_name = ANY(%(names)s::text[]))
        GROUP BY 1, 2 ORDER BY 1, 2
        """,
        {"g": granularity, "tz": tz, "p": project_id, "s": s, "e": e, "names": event_names},
    ).fetchall()
    return [
        Point(local_start, offset if offset is not None else _offset_at(local_start, tz), n)
        for local_start, offset, n in rows
    ]


def active_users(
    conn: psycopg.Connection, project_id: uuid.UUID, start: date, end: date, tz: str, window_days: int = 1
) -> dict[date, int]:
    """Exact distinct users per local day (window 1 = DAU, 7 = WAU, 30 = MAU ending that day)."""
    return dict(
        conn.execute(
            """
            WITH days AS (
                SELECT d::date AS day,
                       ((d - make_interval(days => %(w)s - 1))::timestamp AT TIME ZONE %(tz)s) AS s,
                       ((d + interval '1 day')::timestamp AT TIME ZONE %(tz)s) AS e
                FROM generate_series(%(start)s::date, %(end)s::date, interval '1 day') AS d
            )
            SELECT days.day, count(DISTINCT u.distinct_id)::int
            FROM days
            LEFT JOIN user_activity u
              ON u.project_id = %(p)s
             AND u.day BETWEEN (days.s AT TIME ZONE 'UTC')::date AND ((days.e - interval '1 microsecond') AT TIME ZONE 'UTC')::date
             AND (u.slots & slot_mask(u.day, days.s, days.e)) <> repeat('0', 96)::bit(96)
            GROUP BY days.day ORDER BY days.day
            """,
            {"p": project_id, "start": start, "end": end, "tz": tz, "w": window_days},
        ).fetchall()
    )


def _offset_at(local_start: datetime, tz: str) -> timedelta:
    return local_start.replace(tzinfo=ZoneInfo(tz)).utcoffset() or timedelta(0)
