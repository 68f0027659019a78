"""Time series in any IANA time zone, exact, from aggregates and (where aggregates lag) raw events.

Rollups are 15-minute UTC buckets and every real zone offset is a multiple of 15 minutes, so each bucket
falls wholly inside one local hour or day. Buckets carry their local start and UTC offset: on a DST
fall-back day the repeated local hour appears twice, with two offsets; a local day has 23, 24 or 25 hours.
Series are dense: every bucket of the range is returned, zeros included. Week buckets start on Monday;
edge weeks and months hold only the days inside the range.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from warehouse import identity
from warehouse.reads import cold as cold_reads
from warehouse.reads.exact import (
    UTC_ZONES,
    Scope,
    activity_source,
    base_params,
    cold_duck_where,
    cold_reader,
    offset_at,
    raw_events_sql,
    rollup_source,
)
from warehouse.reads.plan import ReadPlan, plan_reads

if TYPE_CHECKING:
    from pulseops.settings import ColdSettings

Granularity = Literal["hour", "day", "week", "month"]
SLOT = timedelta(minutes=15)


@dataclass(frozen=True)
class Point:
    local_start: datetime  # naive local wall time
    utc_offset: timedelta
    value: int

    @property
    def start(self) -> datetime:
        """The bucket's first instant, with its local offset."""
        return self.local_start.replace(tzinfo=timezone(self.utc_offset))


def _truncate(local: datetime, granularity: Granularity) -> datetime:
    if granularity == "hour":
        return local.replace(minute=0, second=0, microsecond=0, tzinfo=None)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
    if granularity == "week":
        return day - timedelta(days=day.weekday())
    if granularity == "month":
        return day.replace(day=1)
    return day


def bucket_keys(scope: Scope, granularity: Granularity) -> list[tuple[datetime, timedelta]]:
    """Every (local start, offset) bucket of the scope, in order, derived like the SQL groups them."""
    zone = ZoneInfo(scope.tz)
    s, e = scope.utc_range
    keys: dict[tuple[datetime, timedelta], None] = {}
    t = s
    while t < e:
        local = t.astimezone(zone)
        start = _truncate(local, granularity)
        if granularity == "hour":
            keys[(start, local.utcoffset())] = None
        else:
            keys.setdefault((start, offset_at(start, zone)), None)
        # Hours and DST shifts need every slot; days can step a day at a time after the first slot.
        t += SLOT if granularity == "hour" else _next_local_midnight(local, zone) - t
    return list(keys)


def bucket_edges(scope: Scope, granularity: Granularity) -> list[tuple[datetime, tuple[datetime, timedelta]]]:
    """Each bucket's first UTC instant with its (local start, offset) key, in order: the edges the cold
    tier's DuckDB reads assign events by (it computes in UTC only), the same buckets as `bucket_keys`."""
    zone = ZoneInfo(scope.tz)
    s, e = scope.utc_range
    out: list[tuple[datetime, tuple[datetime, timedelta]]] = []
    t = s
    while t < e:
        local = t.astimezone(zone)
        start = _truncate(local, granularity)
        key = (start, local.utcoffset()) if granularity == "hour" else (start, offset_at(start, zone))
        if not out or out[-1][1] != key:
            out.append((t, key))
        t += SLOT if granularity == "hour" else _next_local_midnight(local, zone) - t
    return out


def bucket_count(scope: Scope, granularity: Granularity) -> int:
    """Upper bound of the buckets a series returns, cheap enough to check before querying."""
    days = (scope.end - scope.start).days + 1
    return {"hour": days * 25, "day": days, "week": days // 7 + 2, "month": days // 28 + 2}[granularity]


def event_counts(
    conn: psycopg.Connection,
    scope: Scope,
    granularity: Granularity = "day",
    cold: ColdSettings | None = None,
    plan: ReadPlan | None = None,
) -> list[Point]:
    """Events per local hour, day, week or month over the scope (`cold`: read cold-tier days' Parquet;
    `plan`: the request's classified days, see warehouse/reads/plan.py)."""
    source, params = rollup_source(conn, scope, daily=granularity != "hour", cold=cold, plan=plan)
    rows = conn.execute(
        sql.SQL(
            """
            SELECT date_trunc(%(g)s, bucket AT TIME ZONE %(tz)s) AS local_start,
                   CASE WHEN %(g)s = 'hour'
                        THEN (bucket AT TIME ZONE %(tz)s) - (bucket AT TIME ZONE 'UTC') END,
                   sum(events)::bigint
            FROM ({source}) src
            GROUP BY 1, 2
            """
        ).format(source=source),
        {**params, "g": granularity, "tz": scope.tz},
    ).fetchall()
    zone = ZoneInfo(scope.tz)
    found = {(ls, off if off is not None else offset_at(ls, zone)): n for ls, off, n in rows}
    return [Point(ls, off, found.pop((ls, off), 0)) for ls, off in bucket_keys(scope, granularity)]


def total_events(
    conn: psycopg.Connection, scope: Scope, cold: ColdSettings | None = None, plan: ReadPlan | None = None
) -> int:
    source, params = rollup_source(conn, scope, daily=True, cold=cold, plan=plan)
    query = sql.SQL("SELECT coalesce(sum(events), 0)::bigint FROM ({source}) src").format(source=source)
    return conn.execute(query, params).fetchone()[0]


def top_events(
    conn: psycopg.Connection,
    scope: Scope,
    limit: int,
    cold: ColdSettings | None = None,
    plan: ReadPlan | None = None,
) -> list[tuple[str, int]]:
    """Most frequent event names; ties broken by name so answers are stable."""
    source, params = rollup_source(conn, scope, daily=True, cold=cold, plan=plan)
    query = sql.SQL(
        "SELECT event_name, sum(events)::bigint AS n FROM ({source}) src "
        "GROUP BY 1 ORDER BY n DESC, event_name LIMIT %(limit)s"
    ).format(source=source)
    return [(name, n) for name, n in conn.execute(query, {**params, "limit": limit})]


# Distinct users per local day over a trailing window, from (day, user, slots) rows `{source}`.
_WINDOW_USERS = """
WITH act AS ({source}),
-- slot_mask is not inlinable: evaluate it once per (UTC day, local day), not once per user row
-- (UTC day, local day, local day's first and next midnight) pairs computed in Python: a midnight
-- that occurs twice must start the day at its first reading (PostgreSQL's AT TIME ZONE takes the
-- later one); slot_mask is not inlinable, so it runs once per pair, not once per user row
masks AS MATERIALIZED (
    SELECT m.day, m.local_day, slot_mask(m.day, m.s, m.e) AS mask
    FROM unnest(%(mu)s::date[], %(mc)s::date[], %(ms)s::timestamptz[], %(me)s::timestamptz[])
         AS m(day, local_day, s, e)
),
local_days AS (
    SELECT DISTINCT a.distinct_id, m.local_day
    FROM act a JOIN masks m ON m.day = a.day
    WHERE (a.slots & m.mask) <> repeat('0', 96)::bit(96)
),
ranges AS (
    SELECT local_day AS a,
           least(local_day + %(w)s - 1,
                 coalesce(lead(local_day) OVER (PARTITION BY distinct_id ORDER BY local_day) - 1,
                          local_day + %(w)s - 1)) AS b
    FROM local_days
)
SELECT d, sum(delta)::bigint FROM (
    SELECT a AS d, 1 AS delta FROM ranges
    UNION ALL
    SELECT b + 1, -1 FROM ranges
) edges
GROUP BY d ORDER BY d
"""


def active_users(
    conn: psycopg.Connection,
    scope: Scope,
    window_days: int = 1,
    cold: ColdSettings | None = None,
    unique_by: str = "distinct_id",
    plan: ReadPlan | None = None,
) -> list[tuple[date, int]]:
    """Exact distinct users per local day; window 1 = DAU, 7 = WAU, 30 = MAU (trailing, ending that day).

    A user active on local days a1 < a2 < ... counts for window ends [a_i, min(a_i + w - 1, a_{i+1} - 1)]:
    disjoint ranges, so the counts are a running sum of +1/-1 edges, with cost linear in user-days instead
    of user-days times the window. `unique_by="person"` counts persons (linked ids as one, warehouse/identity.py):
    every user-day row, built or raw or cold, is joined to its person as the question is asked.
    """
    by_person = unique_by == "person"
    if (
        window_days == 1
        and not by_person
        and scope.tz in UTC_ZONES
        and not scope.filters
        and scope.event_names is None
    ):
        return _utc_daily_users(conn, scope, cold, plan)
    wide = scope.widened(window_days - 1)
    source, params = activity_source(conn, wide, cold, plan)
    if by_person:
        source = sql.SQL("SELECT s.day, {person} AS distinct_id, s.slots FROM ({source}) s {join}").format(
            person=identity.person_column("m", "s"), source=source, join=identity.person_join("m", "s")
        )
    rows = conn.execute(
        sql.SQL(_WINDOW_USERS).format(source=source),
        {
            **params,
            "tz": scope.tz,
            "w": window_days,
            "wstart": wide.start,
            "end": scope.end,
            **_mask_pairs(wide, scope.end),
        },
    ).fetchall()
    edges = dict(rows)
    running = sum(n for d, n in edges.items() if d < scope.start)
    out = []
    day = scope.start
    while day <= scope.end:
        running += edges.get(day, 0)
        out.append((day, running))
        day += timedelta(days=1)
    return out


def _mask_pairs(wide: Scope, end: date) -> dict[str, list]:
    """For each UTC day of the scope, the local days it overlaps, with their bounds as instants."""
    zone = ZoneInfo(wide.tz)
    first, last = wide.utc_days
    out: dict[str, list] = {"mu": [], "mc": [], "ms": [], "me": []}
    day = first
    while day <= last:
        start = datetime.combine(day, datetime.min.time(), UTC)
        candidates = {
            start.astimezone(zone).date(),
            (start + timedelta(days=1, microseconds=-1)).astimezone(zone).date(),
        }
        for local in sorted(c for c in candidates if wide.start <= c <= end):
            out["mu"].append(day)
            out["mc"].append(local)
            out["ms"].append(datetime.combine(local, datetime.min.time(), zone))
            out["me"].append(datetime.combine(local + timedelta(days=1), datetime.min.time(), zone))
        day += timedelta(days=1)
    return out


def _utc_daily_users(
    conn: psycopg.Connection, scope: Scope, cold: ColdSettings | None, plan: ReadPlan | None
) -> list[tuple[date, int]]:
    """DAU in UTC: local days are UTC days, so clean days read the build's per-day count directly, and a
    cold raw day's count comes whole from DuckDB."""
    plan = plan or plan_reads(conn, scope.project_id, scope.start, scope.end, cold)
    raw = plan.stale(scope.start, scope.end)
    in_cold = plan.require_raw(raw)
    raw_query, params = raw_events_sql(scope, "e.distinct_id", [d for d in raw if d not in set(in_cold)])
    rows = dict(
        conn.execute(
            sql.SQL(
                """
                SELECT date, value::bigint FROM daily_aggregates
                WHERE project_id = %(p)s AND metric = 'unique_users' AND dimensions = '{{}}'::jsonb
                  AND date BETWEEN %(a)s AND %(b)s AND NOT (date = ANY(%(raw)s::date[]))
                UNION ALL
                SELECT x.day, count(DISTINCT x.distinct_id) FROM ({raw_query}) x GROUP BY 1
                """
            ).format(raw_query=raw_query),
            {**params, **base_params(scope, raw), "a": scope.start, "b": scope.end},
        ).fetchall()
    )
    if in_cold:
        assert cold is not None
        condition, duck_params = cold_duck_where(scope)
        with cold_reader(conn, scope.project_id, in_cold, cold, plan) as duck:
            rows.update(cold_reads.daily_users(duck, condition, duck_params))
    out, day = [], scope.start
    while day <= scope.end:
        out.append((day, rows.get(day, 0)))
        day += timedelta(days=1)
    return out


def _next_local_midnight(local: datetime, zone: ZoneInfo) -> datetime:
    nxt = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), zone)
    return nxt.astimezone(UTC)
