"""Exact reads: aggregates where they are complete, raw events where they are not, never both for one day.

A (project, UTC day) is *clean* when its aggregate build saw every landed row: `aggregate_builds.built_version
= landed_days.version` (or nothing landed at all). Landing bumps the version in the same transaction that
inserts rows, and a build records the version of its own snapshot, so inside one REPEATABLE READ snapshot
"clean" means the aggregates equal the raw rows we could see. Every other day (today, days with late data not
yet rebuilt, never-built days) is read from raw events. An event therefore counts from the moment its landing
commits, and once.

The sources below are SQL fragments that yield the same rows as the aggregate tables (15-minute rollups,
per-user slot maps), so one query shape serves every zone and granularity.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg import sql

from warehouse.cold.reads import cold_days
from warehouse.db import set_local_statement_timeout
from warehouse.partitions import ATTACHED
from warehouse.reads import cold as cold_reads
from warehouse.reads.filters import PropertyFilter, compile_filters
from warehouse.reads.plan import RawDataGone, ReadPlan, plan_reads

if TYPE_CHECKING:
    from pulseops.settings import ColdSettings

_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # 15-minute buckets align to UTC midnight


@dataclass(frozen=True)
class Scope:
    """What one query reads: a project, local dates [start, end] in `tz`, optional event names and filters."""

    project_id: uuid.UUID
    start: date
    end: date
    tz: str = "UTC"
    event_names: tuple[str, ...] | None = None
    filters: tuple[PropertyFilter, ...] = field(default_factory=tuple)

    @property
    def utc_range(self) -> tuple[datetime, datetime]:
        """UTC instants of local midnight on `start` and on the day after `end`."""
        zone = ZoneInfo(self.tz)
        s = datetime.combine(self.start, time(0), zone).astimezone(UTC)
        e = datetime.combine(self.end + timedelta(days=1), time(0), zone).astimezone(UTC)
        return s, e

    @property
    def utc_days(self) -> tuple[date, date]:
        s, e = self.utc_range
        return s.date(), (e - timedelta(microseconds=1)).date()

    def widened(self, days: int) -> Scope:
        """The same scope starting `days` earlier (trailing windows such as WAU need them)."""
        return Scope(
            self.project_id,
            self.start - timedelta(days=days),
            self.end,
            self.tz,
            self.event_names,
            self.filters,
        )


def offset_at(local_start: datetime, zone: ZoneInfo) -> timedelta:
    """UTC offset of a naive local wall time (the earlier one when it repeats)."""
    return local_start.replace(tzinfo=zone).utcoffset() or timedelta(0)


@contextlib.contextmanager
def snapshot(conn: psycopg.Connection, statement_timeout_ms: int) -> Iterator[psycopg.Connection]:
    """One read-only REPEATABLE READ transaction: day classification and the rows it chose agree."""
    if not conn.autocommit:
        raise ValueError("snapshot needs an autocommit connection (it manages its own transaction)")
    conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    try:
        set_local_statement_timeout(conn, statement_timeout_ms)
        # distinct-user questions sort and hash a row per user-day; keep that in memory
        conn.execute("SET LOCAL work_mem = '64MB'")
        yield conn
    finally:
        conn.execute("ROLLBACK")


def raw_days(conn: psycopg.Connection, project_id: uuid.UUID, first: date, last: date) -> list[date]:
    """UTC days in [first, last] whose aggregates miss landed rows (never built, or late data since)."""
    return [
        row[0]
        for row in conn.execute(
            """
            SELECT l.day FROM landed_days l
            LEFT JOIN aggregate_builds b ON b.project_id = l.project_id AND b.day = l.day
            WHERE l.project_id = %s AND l.day BETWEEN %s AND %s
              AND (b.built_version IS NULL OR b.built_version <> l.version)
            ORDER BY l.day
            """,
            (project_id, first, last),
        )
    ]


def days_without_raw(conn: psycopg.Connection, project_id: uuid.UUID, first: date, last: date) -> list[date]:
    """UTC days in [first, last] with landed data whose raw partition is gone (cold tier or detached):
    questions only raw events answer cannot be exact there."""
    return [
        row[0]
        for row in conn.execute(
            f"""
            SELECT l.day FROM landed_days l
            WHERE l.project_id = %s AND l.day BETWEEN %s AND %s
              AND NOT {ATTACHED.format(day="l.day")}
            ORDER BY l.day
            """,  # noqa: S608 - ATTACHED is a module constant of warehouse.partitions
            (project_id, first, last),
        )
    ]


def require_raw(
    conn: psycopg.Connection, project_id: uuid.UUID, days: list[date], cold: ColdSettings | None = None
) -> list[date]:
    """The days of `days` to read from the cold tier (raw partition gone, export verified and current).

    Raises `RawDataGone` for a day that received data, lost its raw partition and is not in the cold tier
    (or for any such day when `cold` is None: the caller cannot read Parquet).
    """
    if not days:
        return []
    wanted = set(days)
    gone = [d for d in days_without_raw(conn, project_id, min(days), max(days)) if d in wanted]
    if not gone:
        return []
    in_cold = set(cold_days(conn, project_id, gone[0], gone[-1])) if cold is not None else set()
    missing = [d for d in gone if d not in in_cold]
    if missing:
        raise RawDataGone(missing)
    return gone


@contextlib.contextmanager
def cold_reader(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    days: list[date],
    cold: ColdSettings,
    plan: ReadPlan | None = None,
) -> Iterator[Any]:
    """The sealed DuckDB views over `days` (see `warehouse.reads.cold`); a file gone since the check refuses.
    With the question's `plan` the days' cold verification is the plan's (same snapshot), not asked again.

    DuckDB knows no statement timeout: the transaction's own (`statement_timeout`) interrupts it, and the
    interruption surfaces as PostgreSQL's `QueryCanceled`, so callers map both engines' timeouts alike.
    """
    import duckdb

    try:
        scope = cold_reads.open_reader(conn, project_id, days, cold, plan.verified_cold if plan else None)
    except cold_reads.ColdMissing as exc:
        raise RawDataGone(exc.days) from None
    timeout_ms = _timeout_ms(conn)
    timer = threading.Timer(timeout_ms / 1000, scope.duck.interrupt) if timeout_ms else None
    try:
        if timer:
            timer.start()
        with scope:
            yield scope.duck
    except duckdb.InterruptException:
        raise psycopg.errors.QueryCanceled("cold-tier read exceeded the statement timeout") from None
    finally:
        if timer:
            timer.cancel()


def _timeout_ms(conn: psycopg.Connection) -> int:
    """The session's statement timeout in milliseconds (0: none)."""
    value = conn.execute(
        "SELECT setting::int * CASE unit WHEN 's' THEN 1000 WHEN 'min' THEN 60000 ELSE 1 END "
        "FROM pg_settings WHERE name = 'statement_timeout'"
    ).fetchone()[0]
    return int(value or 0)


def data_version(conn: psycopg.Connection, project_id: uuid.UUID, first: date, last: date) -> str:
    """Moves whenever rows land in, or aggregates are rebuilt for, the project's UTC days [first, last], and
    when a day's raw partition leaves PostgreSQL: its raw questions are then answered from the cold tier,
    whose float sums may differ in the last bits, so the two answers never share a cache key."""
    landed, built, builds, last_build, gone = conn.execute(
        f"""
        SELECT (SELECT coalesce(sum(version), 0) FROM landed_days
                WHERE project_id = %(p)s AND day BETWEEN %(a)s AND %(b)s),
               coalesce(sum(built_version), 0), count(*), max(built_at),
               (SELECT count(*) FROM landed_days l
                WHERE l.project_id = %(p)s AND l.day BETWEEN %(a)s AND %(b)s
                  AND NOT {ATTACHED.format(day="l.day")})
        FROM aggregate_builds WHERE project_id = %(p)s AND day BETWEEN %(a)s AND %(b)s
        """,  # noqa: S608 - ATTACHED is a module constant of warehouse.partitions
        {"p": project_id, "a": first, "b": last},
    ).fetchone()
    stamp = last_build.timestamp() if last_build else 0
    return f"{landed}.{built}.{builds}.{stamp}" + (f".c{gone}" if gone else "")


def raw_events_sql(scope: Scope, columns: str, raw: list[date]) -> tuple[sql.Composable, dict[str, Any]]:
    """Raw rows of the scope on the UTC days `raw`, as an OR of constant time ranges (consecutive days merged).

    Constant ranges let the planner prune partitions and use the primary key per range; a join against a
    list of days was flattened into a scan of every partition in the scope.
    """
    condition, params = compile_filters(scope.filters)
    s, e = scope.utc_range
    ranges: list[sql.Composable] = []
    for i, (lo, hi) in enumerate(_runs(raw)):
        a = max(s, datetime.combine(lo, time(0), UTC))
        b = min(e, datetime.combine(hi + timedelta(days=1), time(0), UTC))
        if a < b:
            params[f"r{i}a"], params[f"r{i}b"] = a, b
            ranges.append(
                sql.SQL("(e.event_time >= {} AND e.event_time < {})").format(
                    sql.Placeholder(f"r{i}a"), sql.Placeholder(f"r{i}b")
                )
            )
    query = sql.SQL(
        """
        SELECT (e.event_time AT TIME ZONE 'UTC')::date AS day, {columns}
        FROM events e
        WHERE e.project_id = %(p)s AND ({ranges})
          AND (%(names)s::text[] IS NULL OR e.event_name = ANY(%(names)s::text[]))
          AND {condition}
        """
    ).format(
        columns=sql.SQL(columns),
        ranges=sql.SQL(" OR ").join(ranges) if ranges else sql.SQL("FALSE"),
        condition=condition,
    )
    return query, params


def _runs(days: list[date]) -> list[tuple[date, date]]:
    """Sorted days as inclusive runs of consecutive days."""
    runs: list[tuple[date, date]] = []
    for d in sorted(set(days)):
        if runs and runs[-1][1] + timedelta(days=1) == d:
            runs[-1] = (runs[-1][0], d)
        else:
            runs.append((d, d))
    return runs


def base_params(scope: Scope, raw: list[date]) -> dict[str, Any]:
    s, e = scope.utc_range
    names = list(scope.event_names) if scope.event_names is not None else None
    return {"p": scope.project_id, "s": s, "e": e, "raw": raw, "names": names, "epoch": _EPOCH}


UTC_ZONES = frozenset({"UTC", "Etc/UTC", "Etc/UCT", "UCT", "Etc/Universal", "Universal", "Zulu", "Etc/Zulu"})


# The built rows of `rollup_source`, one shape per grain; `{aggregates_allowed}` is FALSE under filters.
# UTC by day: one `daily_aggregates` row per event name and day.
_BUILT_UTC_DAILY = """
SELECT (a.date::timestamp AT TIME ZONE 'UTC') AS bucket, a.dimensions ->> 'event' AS event_name,
       a.value::bigint AS events
FROM daily_aggregates a
WHERE a.project_id = %(p)s AND a.metric = 'events' AND a.dimensions ? 'event'
  AND a.date BETWEEN %(first)s AND %(last)s AND NOT (a.date = ANY(%(raw)s::date[]))
  AND (%(names)s::text[] IS NULL OR a.dimensions ->> 'event' = ANY(%(names)s::text[]))
  AND {aggregates_allowed}
"""
# Other zones by day: per local day and UTC day it touches, the difference of two running counts.
_BUILT_LOCAL_DAILY = """
SELECT k.s AS bucket, d.event_name, d.cum[k.hi + 1] - d.cum[k.lo + 1] AS events
FROM (
    SELECT w.s, u.day,
           greatest(0, floor(extract(epoch FROM w.s - (u.day::timestamp AT TIME ZONE 'UTC')) / 900))::int
               AS lo,
           least(96, ceil(extract(epoch FROM w.e - (u.day::timestamp AT TIME ZONE 'UTC')) / 900))::int
               AS hi
    FROM unnest(%(ls)s::timestamptz[], %(le)s::timestamptz[]) AS w (s, e)
    CROSS JOIN LATERAL (
        SELECT g::date AS day FROM generate_series(
            (w.s AT TIME ZONE 'UTC')::date, ((w.e - interval '1 microsecond') AT TIME ZONE 'UTC')::date,
            interval '1 day') AS g
    ) u
) k
JOIN event_day_slots d ON d.project_id = %(p)s AND d.day = k.day
WHERE k.day BETWEEN %(first)s AND %(last)s AND NOT (k.day = ANY(%(raw)s::date[]))
  AND d.cum[k.hi + 1] > d.cum[k.lo + 1]
  AND (%(names)s::text[] IS NULL OR d.event_name = ANY(%(names)s::text[]))
  AND {aggregates_allowed}
"""
# Hours: the 15-minute rollups themselves.
_BUILT_ROLLUPS = """
SELECT r.bucket, r.event_name, r.events FROM event_rollups r
WHERE r.project_id = %(p)s AND r.bucket >= %(s)s AND r.bucket < %(e)s
  AND NOT ((r.bucket AT TIME ZONE 'UTC')::date = ANY(%(raw)s::date[]))
  AND (%(names)s::text[] IS NULL OR r.event_name = ANY(%(names)s::text[]))
  AND {aggregates_allowed}
"""


def _built_rows(scope: Scope, daily: bool) -> tuple[sql.SQL, str, dict[str, Any]]:
    """The built rows' SQL for the grain the caller groups by, the raw rows' bucket width, extra params."""
    if daily and scope.tz in UTC_ZONES:
        return sql.SQL(_BUILT_UTC_DAILY), "1 day", {}
    if daily:
        starts = local_day_starts(scope)
        return (
            sql.SQL(_BUILT_LOCAL_DAILY),
            "15 minutes",
            {"ls": starts, "le": [*starts[1:], scope.utc_range[1]]},
        )
    return sql.SQL(_BUILT_ROLLUPS), "15 minutes", {}


def rollup_source(
    conn: psycopg.Connection,
    scope: Scope,
    daily: bool = False,
    cold: ColdSettings | None = None,
    plan: ReadPlan | None = None,
) -> tuple[sql.Composable, dict[str, Any]]:
    """SQL yielding (bucket, event_name, events) rows equal to `event_rollups` over the scope, exactly.

    `daily=True` promises the caller groups by whole days or coarser: in UTC, built days then come from
    `daily_aggregates` (one row per event name and day) instead of 96 rollup rows per event name and day; in
    any other zone from `event_day_slots`: per local day and UTC day it touches, one row per event name whose
    bucket is the local day's first instant and whose count is the difference of two running counts (why:
    migration 0009).
    Raw days in the cold tier add DuckDB's rollup rows of their Parquet (given `cold`), bound as arrays.
    `plan`: the request's classified days (`warehouse.reads.plan`); made here when the caller has none.
    """
    first, last = scope.utc_days
    plan = plan or plan_reads(conn, scope.project_id, first, last, cold)
    if scope.filters:
        # Rollups hold no properties: a filtered question is answered from raw events alone.
        raw = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    else:
        raw = plan.stale(first, last)
    in_cold = plan.require_raw(raw)
    hot = [d for d in raw if d not in set(in_cold)]
    raw_query, params = raw_events_sql(scope, "e.event_time, e.event_name", hot)
    built, grain, params_extra = _built_rows(scope, daily)
    union = sql.SQL(
        """
        UNION ALL
        SELECT date_bin({grain}, x.event_time, %(epoch)s), x.event_name, count(*)
        FROM ({raw_query}) x
        GROUP BY 1, 2
        """
    ).format(grain=sql.Literal(grain) + sql.SQL("::interval"), raw_query=raw_query)
    allowed = sql.SQL("FALSE" if scope.filters else "TRUE")
    query = built.format(aggregates_allowed=allowed) + union
    if in_cold:
        assert cold is not None
        condition, duck_params = cold_duck_where(scope)
        with cold_reader(conn, scope.project_id, in_cold, cold, plan) as duck:
            params["cold_b"], params["cold_n"], params["cold_c"] = cold_reads.rollups(
                duck, condition, duck_params, cold_reads.SLOT_US, local_day_starts(scope) if daily else None
            )
        query += sql.SQL(
            " UNION ALL SELECT c.b, c.n, c.c "
            "FROM unnest(%(cold_b)s::timestamptz[], %(cold_n)s::text[], %(cold_c)s::bigint[]) AS c(b, n, c)"
        )
    return query, {**params, **params_extra, **base_params(scope, raw), "first": first, "last": last}


def local_day_starts(scope: Scope) -> list[datetime]:
    """First instant of each local day of the scope: midnight, its first reading when it repeats, the
    transition when it is skipped (zoneinfo's fold=0), i.e. where PostgreSQL's local date changes."""
    zone = ZoneInfo(scope.tz)
    return [
        datetime.combine(scope.start + timedelta(days=i), time(0), zone).astimezone(UTC)
        for i in range((scope.end - scope.start).days + 1)
    ]


def cold_duck_where(scope: Scope) -> tuple[str, list[Any]]:
    """The scope's events (range, names, filters) as a DuckDB condition over the cold `events` view."""
    s, e = scope.utc_range
    return cold_reads.where(s, e, scope.event_names, scope.filters)


def activity_source(
    conn: psycopg.Connection, scope: Scope, cold: ColdSettings | None = None, plan: ReadPlan | None = None
) -> tuple[sql.Composable, dict[str, Any]]:
    """SQL yielding (day, distinct_id, slots) rows equal to `user_activity` over the scope, exactly.

    `user_activity` knows no event names or properties: with either, every day comes from raw events. Raw
    days in the cold tier add DuckDB's (day, user, slots) rows of their Parquet, bound as arrays: a local day
    or window spanning both tiers then unions its users in PostgreSQL (cost: one row per cold user-day).
    """
    first, last = scope.utc_days
    plan = plan or plan_reads(conn, scope.project_id, first, last, cold)
    if scope.filters or scope.event_names is not None:
        raw = [first + timedelta(days=i) for i in range((last - first).days + 1)]
        use_aggregates = False
    else:
        raw = plan.stale(first, last)
        use_aggregates = True
    in_cold = plan.require_raw(raw)
    raw_query, params = raw_events_sql(
        scope,
        # seconds since the event's UTC midnight, floored to its 15-minute slot (as the build does)
        "e.distinct_id, floor(extract(epoch FROM (e.event_time AT TIME ZONE 'UTC')::time) / 900)::int AS slot",
        [d for d in raw if d not in set(in_cold)],
    )
    query = sql.SQL(
        """
        SELECT u.day, u.distinct_id, u.slots FROM user_activity u
        WHERE u.project_id = %(p)s AND u.day BETWEEN %(first)s AND %(last)s
          AND NOT (u.day = ANY(%(raw)s::date[])) AND {aggregates_allowed}
        UNION ALL
        SELECT x.day, x.distinct_id, bit_or(B'1' || repeat('0', 95)::bit(95) >> x.slot)
        FROM ({raw_query}) x
        GROUP BY 1, 2
        """
    ).format(aggregates_allowed=sql.SQL("TRUE" if use_aggregates else "FALSE"), raw_query=raw_query)
    if in_cold:
        assert cold is not None
        condition, duck_params = cold_duck_where(scope)
        with cold_reader(conn, scope.project_id, in_cold, cold, plan) as duck:
            params["cold_d"], params["cold_u"], params["cold_h"], params["cold_l"] = cold_reads.activity(
                duck, condition, duck_params
            )
        query += sql.SQL(
            " UNION ALL SELECT c.d, c.u, c.h::bit(48) || c.l::bit(48) FROM unnest("
            "%(cold_d)s::date[], %(cold_u)s::text[], %(cold_h)s::int8[], %(cold_l)s::int8[]) AS c(d, u, h, l)"
        )
    return query, {**params, **base_params(scope, raw), "first": first, "last": last}
