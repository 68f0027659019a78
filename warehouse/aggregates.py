"""Rebuild one UTC day of every aggregate table, atomically and idempotently (DOP's delete-then-insert per
partition, in one transaction).

The build runs at REPEATABLE READ: the raw rows it aggregates and the `landed_days` versions it records in
`aggregate_builds` come from one snapshot, so "version > built_version" (the `late_days` view) means exactly
that rows landed after what this build saw. A session advisory lock per day serialises two builds of the
same day (a second one then sees the first's rows and replaces them).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

import psycopg

from warehouse.partitions import is_attached

_LOCK_CLASS = 0x5053  # advisory lock namespace for day rebuilds ("PS")

_DELETE = (
    "DELETE FROM event_rollups WHERE bucket >= %(start)s AND bucket < %(end)s",
    "DELETE FROM event_day_slots WHERE day = %(day)s",
    "DELETE FROM user_activity WHERE day = %(day)s",
    "DELETE FROM daily_aggregates WHERE date = %(day)s",
)

_ROLLUPS = """
INSERT INTO event_rollups (project_id, bucket, event_name, events)
SELECT project_id, date_bin('15 minutes', event_time, %(start)s), event_name, count(*)
FROM events WHERE event_time >= %(start)s AND event_time < %(end)s
GROUP BY 1, 2, 3
"""

# Running counts over the 96 slots of each UTC day in [start, end), from the day's `event_rollups` (built just
# before in the same transaction): a zone's local day then reads two rows per event name (warehouse/reads/exact.py
# rollup_source; why in migration 0009).
DAY_SLOTS = """
INSERT INTO event_day_slots (project_id, day, event_name, cum)
SELECT project_id, day, event_name, ARRAY[0::bigint] || array_agg(running ORDER BY slot)
FROM (
    SELECT p.project_id, p.day, p.event_name, g.slot,
           sum(coalesce(r.events, 0)) OVER (
               PARTITION BY p.project_id, p.day, p.event_name ORDER BY g.slot
           )::bigint AS running
    FROM (
        SELECT DISTINCT project_id, (bucket AT TIME ZONE 'UTC')::date AS day, event_name
        FROM event_rollups WHERE bucket >= %(start)s AND bucket < %(end)s
    ) p
    CROSS JOIN generate_series(0, 95) AS g (slot)
    LEFT JOIN event_rollups r
      ON r.project_id = p.project_id AND r.event_name = p.event_name
     AND r.bucket = (p.day::timestamp AT TIME ZONE 'UTC') + g.slot * interval '15 minutes'
) x
GROUP BY project_id, day, event_name
"""

_USER_ACTIVITY = """
INSERT INTO user_activity (project_id, day, distinct_id, slots, events)
SELECT project_id, %(day)s, distinct_id,
       bit_or(B'1' || repeat('0', 95)::bit(95) >> slot), sum(n)
FROM (
    SELECT project_id, distinct_id,
           floor(extract(epoch FROM event_time - %(start)s) / 900)::int AS slot, count(*) AS n
    FROM events WHERE event_time >= %(start)s AND event_time < %(end)s
    GROUP BY 1, 2, 3
) s
GROUP BY 1, 2, 3
"""

_BUILTIN_METRICS = """
INSERT INTO daily_aggregates (org_id, project_id, metric, date, dimensions, value, events, sum)
SELECT p.org_id, r.project_id, 'events', %(day)s, d.dimensions, d.n, d.n, NULL
FROM (
    SELECT project_id, jsonb_build_object('event', event_name) AS dimensions, sum(events) AS n
    FROM event_rollups WHERE bucket >= %(start)s AND bucket < %(end)s GROUP BY 1, 2
    UNION ALL
    SELECT project_id, '{}'::jsonb, sum(events)
    FROM event_rollups WHERE bucket >= %(start)s AND bucket < %(end)s GROUP BY 1
) d
JOIN (SELECT DISTINCT project_id FROM event_rollups WHERE bucket >= %(start)s AND bucket < %(end)s) r
  USING (project_id)
JOIN projects p ON p.id = r.project_id;

INSERT INTO daily_aggregates (org_id, project_id, metric, date, dimensions, value, events, sum)
SELECT p.org_id, u.project_id, 'unique_users', %(day)s, '{}'::jsonb, count(*), sum(u.events), NULL
FROM user_activity u JOIN projects p ON p.id = u.project_id
WHERE u.day = %(day)s
GROUP BY 1, 2
"""

_CUSTOM_METRICS = """
INSERT INTO daily_aggregates (org_id, project_id, metric, date, dimensions, value, events, sum)
SELECT md.org_id, md.project_id, 'custom:' || md.id, %(day)s, d.dims,
       CASE md.aggregation
           WHEN 'count' THEN count(*)
           WHEN 'unique_users' THEN count(DISTINCT e.distinct_id)
           WHEN 'sum' THEN sum(n.num)
           ELSE avg(n.num)
       END,
       count(*),
       sum(n.num)
FROM metric_definitions md
JOIN events e
  ON e.project_id = md.project_id AND e.event_time >= %(start)s AND e.event_time < %(end)s
CROSS JOIN LATERAL (
    SELECT coalesce(jsonb_object_agg(k, e.properties -> k) FILTER (WHERE e.properties ? k), '{}'::jsonb) AS dims
    FROM unnest(md.dimensions) AS k
) d
CROSS JOIN LATERAL (
    SELECT CASE WHEN jsonb_typeof(e.properties -> md.property) = 'number'
                THEN (e.properties ->> md.property)::double precision END AS num
) n
WHERE (md.event_name IS NULL OR e.event_name = md.event_name)
  AND e.properties @> md.filters
  AND (md.aggregation NOT IN ('sum', 'avg') OR n.num IS NOT NULL)
GROUP BY md.id, md.org_id, md.project_id, md.aggregation, d.dims
"""

_RECORD_BUILD = """
INSERT INTO aggregate_builds (project_id, day, built_version, built_at, run_id)
SELECT project_id, day, version, now(), %(run_id)s FROM landed_days WHERE day = %(day)s
ON CONFLICT (project_id, day) DO UPDATE
SET built_version = EXCLUDED.built_version, built_at = EXCLUDED.built_at, run_id = EXCLUDED.run_id
"""


@dataclass(frozen=True)
class DayBuild:
    day: date
    raw_events: int
    rollup_rows: int
    user_rows: int
    aggregate_rows: int
    projects: int
    seconds: float
    skipped: str | None = None


def day_bounds(day: date) -> tuple[datetime, datetime]:
    start = datetime.combine(day, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


@contextmanager
def day_build(conn: psycopg.Connection, day: date) -> Iterator[None]:
    """The frame of every rebuild of `day` (from PostgreSQL or from the cold tier): a session advisory lock
    per day, one REPEATABLE READ transaction, committed at the end, rolled back on any error."""
    conn.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, day.toordinal()))
    try:
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, day.toordinal()))


def record_build(conn: psycopg.Connection, day: date, run_id: str | None) -> int:
    """Stamp each project of the day with the landed version this build's snapshot saw; returns projects."""
    return conn.execute(_RECORD_BUILD, {"day": day, "run_id": run_id}).rowcount


def days_built_by(conn: psycopg.Connection, run_ids: list[str]) -> dict[str, set[date]]:
    """Days each of `run_ids` has rebuilt and that no later build has stamped since (`record_build` stamps
    every project of a day with its run): a run still running its checks is done with these days."""
    if not run_ids:
        return {}
    built: dict[str, set[date]] = {}
    for run_id, day in conn.execute(
        "SELECT DISTINCT run_id, day FROM aggregate_builds WHERE run_id = ANY(%s)", (run_ids,)
    ):
        built.setdefault(run_id, set()).add(day)
    return built


def rebuild_day(conn: psycopg.Connection, day: date, run_id: str | None = None) -> DayBuild:
    """Replace every aggregate row of `day` from raw events in one transaction; safe to repeat.

    A run killed midway rolls back and leaves the previous version of the day intact.
    """
    if not conn.autocommit:
        raise ValueError("rebuild_day needs an autocommit connection (it manages its own transaction)")
    started = datetime.now(UTC)
    start, end = day_bounds(day)
    if not is_attached(conn, day) and _has_aggregates(conn, day):
        # Raw data of the day was detached by retention: rebuilding would replace good aggregates with nothing.
        return DayBuild(day, 0, 0, 0, 0, 0, 0.0, skipped="raw partition detached; aggregates kept")
    params = {"day": day, "start": start, "end": end, "run_id": run_id}
    with day_build(conn, day):
        conn.execute("SET LOCAL work_mem = '256MB'")
        raw = conn.execute(
            "SELECT count(*) FROM events WHERE event_time >= %(start)s AND event_time < %(end)s", params
        ).fetchone()[0]
        for statement in _DELETE:
            conn.execute(statement, params)
        rollups = conn.execute(_ROLLUPS, params).rowcount
        conn.execute(DAY_SLOTS, params)
        users = conn.execute(_USER_ACTIVITY, params).rowcount
        aggregates = 0
        for statement in (*_BUILTIN_METRICS.split(";\n\n"), _CUSTOM_METRICS):
            aggregates += conn.execute(statement, params).rowcount
        projects = record_build(conn, day, run_id)
    took = (datetime.now(UTC) - started).total_seconds()
    return DayBuild(day, raw, rollups, users, aggregates, projects, took)


@dataclass(frozen=True)
class StaleDay:
    day: date
    projects: int
    # Sum of the landed versions of all the day's projects: grows whenever any project of the day lands more
    # (a max would not move when a project below the max catches up), so it keys one rebuild per state.
    version: int
    reason: str  # "late_data": built, then more landed; "new_data": landed, never built


def _has_aggregates(conn: psycopg.Connection, day: date) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM daily_aggregates WHERE date = %s)", (day,)).fetchone()[
        0
    ]


def stale_days(conn: psycopg.Connection, include_unbuilt_since: date | None = None) -> list[StaleDay]:
    """Days whose aggregates miss landed data.

    Built days that received data after their build (the `late_days` view), and, from
    `include_unbuilt_since` on, days with landed data that were never built (today, typically).
    """
    rows = conn.execute(
        """
        SELECT day, count(*)::int,
               (SELECT sum(version) FROM landed_days l WHERE l.day = s.day)::bigint,
               bool_or(late)
        FROM (
            SELECT project_id, day, version, true AS late FROM late_days
            UNION ALL
            SELECT l.project_id, l.day, l.version, false FROM landed_days l
            LEFT JOIN aggregate_builds b USING (project_id, day)
            WHERE b.project_id IS NULL AND %(since)s::date IS NOT NULL AND l.day >= %(since)s::date
        ) s
        GROUP BY day ORDER BY day
        """,
        {"since": include_unbuilt_since},
    ).fetchall()
    return [StaleDay(d, n, v, "late_data" if late else "new_data") for d, n, v, late in rows]


@dataclass(frozen=True)
class DayToBuild:
    day: date
    # Exactly the data a build of the day would cover: the day's summed landed version and, when a metric
    # definition of one of its projects changed after its build, that change's time. A run key made of these
    # changes whenever the day's data does, and only then.
    data_key: str
    reasons: tuple[str, ...]  # "late_data", "new_data", "definitions"


def days_to_build(
    conn: psycopg.Connection, unbuilt_since: date, before: date, limit: int = 10_000
) -> list[DayToBuild]:
    """Days before `before` (the open day is excluded by the caller's choice of `before`) whose aggregates miss
    landed data (late data), were never built (from `unbuilt_since` on), or predate an edit of a custom metric
    definition of one of their projects; oldest first."""
    rows = conn.execute(
        """
        SELECT s.day,
               (SELECT sum(version) FROM landed_days l WHERE l.day = s.day)::bigint,
               array_agg(DISTINCT s.reason ORDER BY s.reason),
               (extract(epoch FROM max(s.changed)) * 1e6)::bigint
        FROM (
            SELECT project_id, day, 'late_data' AS reason, NULL::timestamptz AS changed FROM late_days
            UNION ALL
            SELECT l.project_id, l.day, 'new_data', NULL FROM landed_days l
            LEFT JOIN aggregate_builds b USING (project_id, day)
            WHERE b.project_id IS NULL AND l.day >= %(since)s
            UNION ALL
            SELECT b.project_id, b.day, 'definitions', m.changed FROM aggregate_builds b
            JOIN (SELECT project_id, max(updated_at) AS changed FROM metric_definitions GROUP BY 1) m
              USING (project_id)
            WHERE b.built_at < m.changed AND b.day >= %(since)s
        ) s
        WHERE s.day < %(before)s
        GROUP BY s.day ORDER BY s.day LIMIT %(limit)s
        """,
        {"since": unbuilt_since, "before": before, "limit": limit},
    ).fetchall()
    return [
        DayToBuild(d, f"{v or 0}" + (f"@{changed}" if changed else ""), tuple(reasons))
        for d, v, reasons, changed in rows
    ]


def delete_aggregates_before(conn: psycopg.Connection, cutoff: date) -> dict[str, int]:
    """Aggregate retention: drop rows of days before `cutoff` (their raw data is long gone or detached)."""
    start, _ = day_bounds(cutoff)
    deleted = {}
    with conn.transaction():
        deleted["event_rollups"] = conn.execute(
            "DELETE FROM event_rollups WHERE bucket < %s", (start,)
        ).rowcount
        deleted["event_day_slots"] = conn.execute(
            "DELETE FROM event_day_slots WHERE day < %s", (cutoff,)
        ).rowcount
        deleted["user_activity"] = conn.execute(
            "DELETE FROM user_activity WHERE day < %s", (cutoff,)
        ).rowcount
        deleted["daily_aggregates"] = conn.execute(
            "DELETE FROM daily_aggregates WHERE date < %s", (cutoff,)
        ).rowcount
        deleted["aggregate_builds"] = conn.execute(
            "DELETE FROM aggregate_builds WHERE day < %s", (cutoff,)
        ).rowcount
    return deleted
