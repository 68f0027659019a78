"""Rebuild one UTC day of every aggregate table from the cold tier's Parquet, with DuckDB as the engine.

For days whose raw partition retention has dropped: after a metric definition is fixed, or after aggregate
retention deleted them. DuckDB computes the same rows as `warehouse.aggregates.rebuild_day` computes from
PostgreSQL (15-minute rollups, per-user slot bitmaps, built-in and custom metrics); they replace the day's
aggregate rows in one PostgreSQL transaction, under the same advisory lock, stamped in `aggregate_builds`.

Custom metrics use the SQL fragments of cold reads (`warehouse.reads.cold`): property filters follow jsonb
`@>` exactly (a Python function settles number ties and object or array values on the exact JSON text);
a sum or average takes JSON numbers only; a dimension key present with a JSON null value is a dimension,
as in PostgreSQL. Dimension values are grouped by their JSON text as DuckDB prints
it, so `1` and `1.0` in the same property would form two groups (jsonb equality makes them one).
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

import orjson
import psycopg
from psycopg import sql

from pulseops.settings import ColdSettings
from warehouse.aggregates import DAY_SLOTS, DayBuild, day_bounds, day_build, record_build
from warehouse.cold.datasets import EVENTS
from warehouse.cold.duck import duckdb_connection, register_files
from warehouse.cold.store import ColdStore
from warehouse.reads import cold as cold_reads
from warehouse.reads.filters import FilterOp, PropertyFilter

if TYPE_CHECKING:
    import duckdb

AGGREGATE_COLUMNS = ("org_id", "project_id", "metric", "date", "dimensions", "value", "events", "sum")


def cold_projects(conn: psycopg.Connection, day: date) -> list[uuid.UUID]:
    """Projects whose raw events of `day` are in the cold tier, verified and current."""
    rows = conn.execute(
        """
        SELECT c.project_id FROM cold_exports c
        LEFT JOIN landed_days l ON l.project_id = c.project_id AND l.day = c.day
        WHERE c.dataset = 'events' AND c.day = %s AND c.status = 'verified'
          AND c.source_version = coalesce(l.version, 0)
        ORDER BY 1
        """,
        (day,),
    ).fetchall()
    return [r[0] for r in rows]


def rebuild_day_from_cold(
    conn: psycopg.Connection, day: date, cold: ColdSettings, run_id: str | None = None
) -> DayBuild:
    """Replace every aggregate row of `day` with rows DuckDB computes from the day's verified Parquet.

    Refuses (ValueError) when a project that landed data on the day has no verified cold export of it:
    a rebuild would silently drop that project's aggregates.
    """
    if not conn.autocommit:
        raise ValueError("rebuild_day_from_cold needs an autocommit connection")
    started = datetime.now(UTC)
    projects = cold_projects(conn, day)
    landed = {r[0] for r in conn.execute("SELECT project_id FROM landed_days WHERE day = %s", (day,))}
    if missing := landed - set(projects):
        raise ValueError(f"{day}: no verified cold export for projects {sorted(map(str, missing))}")
    store = ColdStore.from_settings(cold)
    paths = [
        r[0]
        for r in conn.execute(
            "SELECT path FROM cold_exports WHERE dataset = 'events' AND day = %s AND project_id = ANY(%s)",
            (day, projects),
        )
    ]
    duck = duckdb_connection()
    try:
        register_files(duck, store, "ev", paths, EVENTS)
        cold_reads.register_pg_match(duck)
        computed = _compute(conn, duck, day, projects)
    finally:
        duck.close()
    rollups, users, aggregates = computed
    raw = sum(r[3] for r in rollups)
    start, end = day_bounds(day)
    with day_build(conn, day):
        conn.execute("DELETE FROM event_rollups WHERE bucket >= %s AND bucket < %s", (start, end))
        conn.execute("DELETE FROM event_day_slots WHERE day = %s", (day,))
        conn.execute("DELETE FROM user_activity WHERE day = %s", (day,))
        conn.execute("DELETE FROM daily_aggregates WHERE date = %s", (day,))
        _copy(conn, "event_rollups", ("project_id", "bucket", "event_name", "events"), rollups)
        conn.execute(DAY_SLOTS, {"start": start, "end": end})
        _copy(conn, "user_activity", ("project_id", "day", "distinct_id", "slots", "events"), users)
        _copy(conn, "daily_aggregates", AGGREGATE_COLUMNS, aggregates)
        built = record_build(conn, day, run_id)
    took = (datetime.now(UTC) - started).total_seconds()
    return DayBuild(day, raw, len(rollups), len(users), len(aggregates), built, took)


def _compute(
    conn: psycopg.Connection, duck: duckdb.DuckDBPyConnection, day: date, projects: list[uuid.UUID]
) -> tuple[list[tuple], list[tuple], list[tuple]]:
    start, _end = day_bounds(day)
    orgs = dict(conn.execute("SELECT id, org_id FROM projects WHERE id = ANY(%s)", (projects,)).fetchall())
    rollups = duck.execute(
        "SELECT project_id, time_bucket(INTERVAL 15 MINUTE, event_time, ?::TIMESTAMPTZ) AS bucket, event_name, "
        "count(*) FROM ev GROUP BY ALL ORDER BY ALL",
        [start],
    ).fetchall()
    # slot 0 is the leftmost bit, as in PostgreSQL's bit(96) maps
    users = duck.execute(
        "SELECT project_id, ?::DATE, distinct_id, bitstring_agg(slot, 0, 95)::VARCHAR, count(*) FROM ("
        "  SELECT project_id, distinct_id, ((epoch_us(event_time) - epoch_us(?::TIMESTAMPTZ)) // 900000000)::INT AS slot"
        "  FROM ev) GROUP BY project_id, distinct_id ORDER BY ALL",
        [day, start],
    ).fetchall()
    aggregates: list[tuple] = []
    per_name: dict[tuple[uuid.UUID, str], int] = {}
    for project_id, _bucket, name, n in rollups:
        per_name[(project_id, name)] = per_name.get((project_id, name), 0) + n
    totals: dict[uuid.UUID, int] = {}
    for (project_id, name), n in per_name.items():
        totals[project_id] = totals.get(project_id, 0) + n
        aggregates.append(
            (orgs[project_id], project_id, "events", day, orjson.dumps({"event": name}).decode(), n, n, None)
        )
    for project_id, n in totals.items():
        aggregates.append((orgs[project_id], project_id, "events", day, "{}", n, n, None))
    unique: dict[uuid.UUID, tuple[int, int]] = {}
    for project_id, _day, _user, _slots, n in users:
        count, events = unique.get(project_id, (0, 0))
        unique[project_id] = (count + 1, events + n)
    for project_id, (count, events) in unique.items():
        aggregates.append((orgs[project_id], project_id, "unique_users", day, "{}", count, events, None))
    definitions = conn.execute(
        "SELECT id, org_id, project_id, event_name, filters, aggregation, property, dimensions "
        "FROM metric_definitions WHERE project_id = ANY(%s) ORDER BY id",
        (projects,),
    ).fetchall()
    for d in definitions:
        aggregates += _custom_metric(duck, day, *d)
    return rollups, users, aggregates


def _custom_metric(
    duck: duckdb.DuckDBPyConnection,
    day: date,
    metric_id: uuid.UUID,
    org_id: uuid.UUID,
    project_id: uuid.UUID,
    event_name: str | None,
    filters: dict[str, Any],
    aggregation: str,
    prop: str | None,
    dimensions: list[str],
) -> list[tuple]:
    """The definition's rows of the day, computed as `warehouse.aggregates` does: the event filter,
    `properties @> filters` (per key, exactly, by `cold_reads.compile_filters`), and `num`/`dims` from
    `cold_reads.metric_columns`, which cold reads share."""
    columns, column_params = cold_reads.metric_columns(prop, dimensions)
    condition, filter_params = cold_reads.compile_filters(
        [PropertyFilter(k, FilterOp.EQ, v) for k, v in sorted(filters.items())]
    )
    value = {
        "count": "count(*)::DOUBLE",
        "unique_users": "count(DISTINCT distinct_id)::DOUBLE",
        "sum": "sum(num)",
        "avg": "avg(num)",
    }[aggregation]
    query = (
        f"SELECT dims, {value}, count(*), sum(num) FROM ("  # noqa: S608 - fixed fragments; values are bound
        f"  SELECT *, {columns} FROM ev"
        f"  WHERE project_id = ? AND (?::VARCHAR IS NULL OR event_name = ?) AND {condition}"
        f") WHERE {'num IS NOT NULL' if aggregation in ('sum', 'avg') else 'TRUE'} GROUP BY dims ORDER BY dims"
    )
    rows = duck.execute(
        query, [*column_params, project_id, event_name, event_name, *filter_params]
    ).fetchall()
    return [
        (org_id, project_id, f"custom:{metric_id}", day, dims_text, v, n, s) for dims_text, v, n, s in rows
    ]


def _copy(conn: psycopg.Connection, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    """COPY in text format: PostgreSQL parses the bit strings and JSON text into bit(96) and jsonb."""
    if not rows:
        return
    statement = sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns))
    )
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)
