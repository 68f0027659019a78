"""The three cold datasets: their names, columns and, per dataset, the SQL that exports, checksums and versions
its rows. One table drives export, the parity check and the reads, so they cannot disagree."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import psycopg
from psycopg import sql

from warehouse.aggregates import day_bounds
from warehouse.partitions import partition_name

EVENTS = "events"
ROLLUPS = "event_rollups"
AGGREGATES = "daily_aggregates"
DATASETS = (EVENTS, ROLLUPS, AGGREGATES)

# Column order of the Parquet files = the PostgreSQL tables' (properties and dimensions as jsonb text).
EVENT_COLUMNS = (
    "project_id", "event_time", "event_id", "org_id", "event_name", "distinct_id", "received_at", "landed_at",
    "properties",
)  # fmt: skip

_SEP = "chr(31)"  # unit separator between the fields of a row's checksum line


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    select: str  # PostgreSQL: the export's columns, FROM {source}, rows of project $1 / %(project)s
    pg_line: str  # PostgreSQL expression: the row's checksum line
    duck_line: str  # DuckDB expression over the Parquet columns: the same line
    version: str  # PostgreSQL: the source version of (project, day)


SPECS = {
    EVENTS: DatasetSpec(
        EVENTS,
        "SELECT project_id, event_time, event_id, org_id, event_name, distinct_id, received_at, landed_at, "
        "properties::text AS properties FROM {source} WHERE project_id = {project} ORDER BY event_time, event_id",
        f"concat_ws({_SEP}, project_id::text, event_id::text, org_id::text, event_name, distinct_id, "
        "(extract(epoch FROM event_time) * 1000000)::bigint::text, "
        "(extract(epoch FROM received_at) * 1000000)::bigint::text, "
        "(extract(epoch FROM landed_at) * 1000000)::bigint::text, properties::text)",
        f"concat_ws({_SEP}, project_id::VARCHAR, event_id::VARCHAR, org_id::VARCHAR, event_name, distinct_id, "
        "epoch_us(event_time)::VARCHAR, epoch_us(received_at)::VARCHAR, epoch_us(landed_at)::VARCHAR, "
        "properties)",
        "SELECT coalesce((SELECT version FROM landed_days WHERE project_id = %(project)s AND day = %(day)s), 0)",
    ),
    ROLLUPS: DatasetSpec(
        ROLLUPS,
        "SELECT project_id, bucket, event_name, events FROM event_rollups "
        "WHERE bucket >= {start} AND bucket < {end} AND project_id = {project} ORDER BY bucket, event_name",
        f"concat_ws({_SEP}, project_id::text, (extract(epoch FROM bucket) * 1000000)::bigint::text, "
        "event_name, events::text)",
        f"concat_ws({_SEP}, project_id::VARCHAR, epoch_us(bucket)::VARCHAR, event_name, events::VARCHAR)",
        "SELECT coalesce((SELECT built_version FROM aggregate_builds WHERE project_id = %(project)s "
        "AND day = %(day)s), 0)",
    ),
    AGGREGATES: DatasetSpec(
        AGGREGATES,
        "SELECT org_id, project_id, metric, date, dimensions::text AS dimensions, value, events, sum "
        "FROM daily_aggregates WHERE date = {day} AND project_id = {project} ORDER BY metric, dimensions",
        # doubles as thousandths: both engines compute the same IEEE product, but print doubles differently
        f"concat_ws({_SEP}, org_id::text, project_id::text, metric, date::text, dimensions::text, "
        "floor(value * 1000)::bigint::text, events::text, coalesce(floor(sum * 1000)::bigint::text, ''))",
        f"concat_ws({_SEP}, org_id::VARCHAR, project_id::VARCHAR, metric, date::VARCHAR, dimensions, "
        "floor(value * 1000)::BIGINT::VARCHAR, events::VARCHAR, coalesce(floor(sum * 1000)::BIGINT::VARCHAR, ''))",
        "SELECT coalesce((SELECT built_version FROM aggregate_builds WHERE project_id = %(project)s "
        "AND day = %(day)s), 0)",
    ),
}


def day_source(conn: psycopg.Connection, dataset: str, day: date) -> sql.Composable | None:
    """The events table of the day, attached or detached by an earlier retention; None if it has none."""
    if dataset != EVENTS:
        return sql.SQL("")
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (partition_name(day),)).fetchone()[0]
    return sql.Identifier(partition_name(day)) if exists else None


def day_projects(
    conn: psycopg.Connection, dataset: str, day: date, source: sql.Composable | None
) -> list[uuid.UUID]:
    start, end = day_bounds(day)
    if dataset == EVENTS:
        if source is None:
            return []
        query = sql.SQL("SELECT DISTINCT project_id FROM {} ORDER BY 1").format(source)
        return [r[0] for r in conn.execute(query).fetchall()]
    if dataset == ROLLUPS:
        query = "SELECT DISTINCT project_id FROM event_rollups WHERE bucket >= %s AND bucket < %s ORDER BY 1"
        return [r[0] for r in conn.execute(query, (start, end)).fetchall()]
    query = "SELECT DISTINCT project_id FROM daily_aggregates WHERE date = %s ORDER BY 1"
    return [r[0] for r in conn.execute(query, (day,)).fetchall()]
