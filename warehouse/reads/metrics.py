"""Custom metric series: a definition's values per local bucket and dimension combination, exact.

Built days come from `daily_aggregates` (metric `custom:<id>`) when the question is daily in UTC and the
day's build is clean and newer than the definition; everything else is computed from raw events with the same
SQL shape as the build, so a definition edit is visible at once, before any rebuild. The definitions themselves
are stored by warehouse/metric_defs.py.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import orjson
import psycopg
from psycopg import sql

from warehouse import identity
from warehouse.metric_defs import MetricDefinition
from warehouse.reads import cold as cold_reads
from warehouse.reads.exact import (
    Scope,
    base_params,
    cold_duck_where,
    cold_reader,
    offset_at,
    raw_events_sql,
)
from warehouse.reads.filters import FilterOp, PropertyFilter
from warehouse.reads.plan import ReadPlan, plan_reads
from warehouse.reads.series import bucket_edges

if TYPE_CHECKING:
    from pulseops.settings import ColdSettings


@dataclass(frozen=True)
class MetricPoint:
    local_start: datetime
    utc_offset: timedelta
    dimensions: dict[str, Any]
    value: float
    events: int


_VALUE = {
    "count": "count(*)::double precision",
    "unique_users": "count(DISTINCT x.distinct_id)::double precision",
    "sum": "sum(x.num)",
    "avg": "avg(x.num)",
}


# Raw rows bucketed in the query's zone, per dimension values; `columns` are the aggregation's (hot only) or
# its partials (merged with cold partials); a day's built rows join only in UTC by day.
_BUCKETED = """
    SELECT date_trunc(%(g)s, x.event_time AT TIME ZONE %(tz)s) AS local_start,
           CASE WHEN %(g)s = 'hour'
                THEN (x.event_time AT TIME ZONE %(tz)s) - (x.event_time AT TIME ZONE 'UTC') END AS off,
           d.dims, {columns}
    FROM ({raw_query}) x
    CROSS JOIN LATERAL (
        SELECT coalesce(jsonb_object_agg(k, x.properties -> k) FILTER (WHERE x.properties ? k), '{{}}'::jsonb)
               AS dims
        FROM unnest(%(dims)s::text[]) AS k
    ) d
    WHERE %(prop)s::text IS NULL OR x.num IS NOT NULL
    GROUP BY {group}
"""

_BUILT = """
UNION ALL
SELECT a.date::timestamp, NULL, a.dimensions, a.value, a.events
FROM daily_aggregates a
WHERE {use_aggregates} AND a.project_id = %(p)s AND a.metric = %(metric)s
  AND a.date BETWEEN %(first)s AND %(last)s AND NOT (a.date = ANY(%(raw)s::date[]))
"""


def metric_series(
    conn: psycopg.Connection,
    metric: MetricDefinition,
    scope: Scope,
    granularity: str = "day",
    cold: ColdSettings | None = None,
    unique_by: str = "distinct_id",
    plan: ReadPlan | None = None,
) -> list[MetricPoint]:
    """Values per local bucket and dimension combination (sparse: combinations without events are absent).

    `unique_by="person"` (unique_users only) counts persons: built rows hold distinct ids, so every day is
    read raw and each event's id (and each cold partial's) is mapped to its person (warehouse/identity.py)."""
    by_person = unique_by == "person" and metric.aggregation == "unique_users"
    scope = replace(
        scope,
        event_names=(metric.event_name,) if metric.event_name is not None else None,
        filters=tuple(PropertyFilter(k, FilterOp.EQ, v) for k, v in sorted(metric.filters.items())),
    )
    first, last = scope.utc_days
    every_day = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    from_aggregates = scope.tz == "UTC" and granularity == "day" and not by_person
    plan = plan or plan_reads(conn, metric.project_id, first, last, cold)
    raw = _rebuild_needed(plan, metric, first, last) if from_aggregates else every_day
    in_cold = plan.require_raw(raw)
    raw_query, params = raw_events_sql(
        scope,
        "e.event_time, "
        + (identity.person_of("e.distinct_id") + " AS distinct_id" if by_person else "e.distinct_id")
        + ", e.properties, CASE WHEN jsonb_typeof(e.properties -> %(prop)s) = 'number' "
        "THEN (e.properties ->> %(prop)s)::double precision END AS num",
        [d for d in raw if d not in set(in_cold)],
    )
    built = sql.SQL(_BUILT).format(use_aggregates=sql.SQL("TRUE" if from_aggregates else "FALSE"))
    if not in_cold:
        query = (
            sql.SQL(_BUCKETED).format(
                columns=sql.SQL(_VALUE[metric.aggregation] + " AS value, count(*)::bigint AS events"),
                group=sql.SQL("1, 2, 3"),
                raw_query=raw_query,
            )
            + built
        )
    else:
        assert cold is not None
        params.update(_cold_partials(conn, metric, scope, granularity, in_cold, cold, plan))
        query = _merged_query(metric, raw_query, by_person) + built
    rows = conn.execute(
        query,
        {
            **params,
            **base_params(scope, raw),
            "g": granularity,
            "tz": scope.tz,
            "prop": metric.property,
            "dims": metric.dimensions,
            "metric": f"custom:{metric.id}",
            "first": first,
            "last": last,
        },
    ).fetchall()
    zone = ZoneInfo(scope.tz)
    points = [
        MetricPoint(ls, off if off is not None else offset_at(ls, zone), dims, float(value), events)
        for ls, off, dims, value, events in rows
    ]
    points.sort(
        key=lambda p: (p.local_start, p.utc_offset, orjson.dumps(p.dimensions, option=orjson.OPT_SORT_KEYS))
    )
    return points


# Partials of both tiers, merged: counts and sums add, an average is their quotient, users are distinct.
_MERGED = {
    "count": "sum(events)::double precision",
    "unique_users": "count(DISTINCT u)::double precision",
    "sum": "sum(s)",
    "avg": "sum(s) / nullif(sum(n), 0)",
}


def _merged_query(metric: MetricDefinition, raw_query: sql.Composable, by_person: bool) -> sql.Composable:
    """Hot partials (per bucket, dimensions and, for unique users, user) united with the cold partials bound
    as arrays, merged per bucket and dimensions (`_MERGED`)."""
    per_user = metric.aggregation == "unique_users"
    hot = sql.SQL(_BUCKETED).format(
        columns=sql.SQL(
            ("x.distinct_id" if per_user else "NULL::text")
            + " AS u, count(*)::bigint AS events, sum(x.num) AS s, count(x.num)::bigint AS n"
        ),
        group=sql.SQL("1, 2, 3, 4"),
        raw_query=raw_query,
    )
    return (
        sql.SQL("SELECT local_start, off, dims, {merged}, sum(events)::bigint FROM (").format(
            merged=sql.SQL(_MERGED[metric.aggregation])
        )
        + hot
        + sql.SQL(
            """
            UNION ALL
            SELECT c.ls, c.off, c.dims::jsonb, {cold_user}, c.events, c.s, c.n
            FROM unnest(%(c_ls)s::timestamp[], %(c_off)s::interval[], %(c_dims)s::text[], %(c_u)s::text[],
                        %(c_events)s::bigint[], %(c_s)s::float8[], %(c_n)s::bigint[])
                 AS c(ls, off, dims, u, events, s, n) {cold_join}
            ) parts GROUP BY 1, 2, 3
            """
        ).format(
            cold_user=identity.person_column("cm", "c", "u") if by_person else sql.SQL("c.u"),
            cold_join=identity.person_join("cm", "c", "u") if by_person else sql.SQL(""),
        )
    )


def _cold_partials(
    conn: psycopg.Connection,
    metric: MetricDefinition,
    scope: Scope,
    granularity: str,
    days: list[date],
    cold: ColdSettings,
    plan: ReadPlan,
) -> dict[str, list]:
    """The cold days' partial rows per bucket (edges from Python, in the query's zone) and dimensions, as
    arrays for PostgreSQL; per user too for unique users, so the union across tiers stays exact."""
    edges = bucket_edges(scope, granularity)  # type: ignore[arg-type]
    condition, params = cold_duck_where(scope)
    with cold_reader(conn, scope.project_id, days, cold, plan) as duck:
        rows = cold_reads.metric_partials(
            duck, condition, params, [t for t, _ in edges], metric.property, metric.dimensions,
            per_user=metric.aggregation == "unique_users",
        )  # fmt: skip
    out: dict[str, list] = {k: [] for k in ("c_ls", "c_off", "c_dims", "c_u", "c_events", "c_s", "c_n")}
    for k, dims, user, events, total, numbers in rows:
        local_start, offset = edges[k][1]
        out["c_ls"].append(local_start)
        out["c_off"].append(offset if granularity == "hour" else None)  # as PostgreSQL's raw rows: NULL
        out["c_dims"].append(dims)
        out["c_u"].append(user)
        out["c_events"].append(events)
        out["c_s"].append(total)
        out["c_n"].append(numbers)
    return out


def _rebuild_needed(plan: ReadPlan, metric: MetricDefinition, first: date, last: date) -> list[date]:
    """Days whose built rows miss landed data or predate the definition's last edit."""
    return sorted(set(plan.stale(first, last)) | set(plan.outdated(first, last, metric.updated_at)))
