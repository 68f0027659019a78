"""Export: a closed UTC day's rows of each dataset to zstd Parquet, one file per project, recorded in
`cold_exports` with the source version it read; and which days need (re-)exporting."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pulseops.settings import ColdSettings
from warehouse.aggregates import day_bounds
from warehouse.cold.datasets import DATASETS, SPECS, DatasetSpec, day_projects, day_source
from warehouse.cold.duck import duckdb_connection
from warehouse.cold.parity import parquet_checksum
from warehouse.cold.store import ColdStore, relative_path
from warehouse.db import libpq_url

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa


@dataclass(frozen=True)
class ExportedFile:
    dataset: str
    project_id: uuid.UUID
    day: date
    rows: int
    bytes: int
    path: str
    source_version: int


def export_day(
    conn: psycopg.Connection,
    database_url: str,
    day: date,
    cold: ColdSettings,
    datasets: Sequence[str] = DATASETS,
) -> list[ExportedFile]:
    """Write the day's rows of each dataset to Parquet, one file per project, and record them.

    Idempotent: the same day exported twice yields the same files and rows in `cold_exports` (files of
    projects no longer in the day are removed). `conn` is an autocommit psycopg connection to the warehouse
    at `database_url`, through which the rows themselves are read with ADBC.
    """
    import adbc_driver_postgresql.dbapi as adbc

    store = ColdStore.from_settings(cold)
    out: list[ExportedFile] = []
    # autocommit: one statement per file, no transaction (and no snapshot) held open for the whole day
    with adbc.connect(libpq_url(database_url), autocommit=True) as arrow_conn, duckdb_connection() as duck:
        for name in datasets:
            spec = SPECS[name]
            source = day_source(conn, name, day)
            projects = day_projects(conn, name, day, source)
            if not projects:
                # The source no longer has the day (raw dropped by retention, aggregates deleted by theirs):
                # what is in the cold tier is now the only copy, never replaced by nothing.
                continue
            for project_id in projects:
                # Version read before the rows: rows landing in between make the file newer than its
                # recorded version, never older, so the day is re-exported rather than wrongly trusted.
                version = conn.execute(spec.version, {"project": project_id, "day": day}).fetchone()[0]
                rel = relative_path(name, day, project_id)
                rows = _write_parquet(
                    arrow_conn, _select_sql(spec, day, source), project_id, store, rel, cold
                )
                size = store.size(rel) or 0
                _record(conn, duck, name, project_id, day, rows, store, rel, size, version)
                out.append(ExportedFile(name, project_id, day, rows, size, rel, version))
            _remove_others(conn, store, name, day, projects)
    return out


def _select_sql(spec: DatasetSpec, day: date, source: sql.Composable | None) -> str:
    """The export query with literals for the day (ADBC binds only the project, as $1)."""
    start, end = day_bounds(day)
    return (
        sql.SQL(spec.select)
        .format(
            source=source or sql.SQL(""),
            project=sql.SQL("$1::uuid"),
            start=sql.Literal(start),
            end=sql.Literal(end),
            day=sql.Literal(day),
        )
        .as_string()
    )


def _write_parquet(
    arrow_conn: Any, query: str, project_id: uuid.UUID, store: ColdStore, rel: str, cold: ColdSettings
) -> int:
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq

    final = store.full(rel)
    tmp = f"{final}.tmp-{uuid.uuid4().hex[:8]}"
    store.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
    rows = 0
    with arrow_conn.cursor() as cur:
        cur.execute(query, parameters=(str(project_id),))
        reader = cur.fetch_record_batch()
        schema = _plain_schema(reader.schema)
        try:
            with store.fs.open_output_stream(tmp) as sink, pq.ParquetWriter(
                sink, schema, compression="zstd", compression_level=cold.zstd_level, write_statistics=True
            ) as writer:  # fmt: skip
                for batch in reader:
                    if batch.num_rows:
                        writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
                        rows += batch.num_rows
            store.fs.move(tmp, final)  # a reader sees the old file or the new one, never a partial one
        except BaseException:
            if store.fs.get_file_info(tmp).type == pafs.FileType.File:
                store.fs.delete_file(tmp)
            raise
    return rows


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    """Drop the driver's per-field metadata (PostgreSQL type names) from the files."""
    import pyarrow as pa

    return pa.schema([pa.field(f.name, f.type, f.nullable) for f in schema])


def _record(
    conn: psycopg.Connection,
    duck: duckdb.DuckDBPyConnection,
    dataset: str,
    project_id: uuid.UUID,
    day: date,
    rows: int,
    store: ColdStore,
    rel: str,
    size: int,
    version: int,
) -> None:
    checksum_rows, checksum = parquet_checksum(store, dataset, [rel], duck)
    conn.execute(
        """
        INSERT INTO cold_exports (dataset, project_id, day, rows, checksum, path, bytes, source_version)
        VALUES (%(dataset)s, %(project)s, %(day)s, %(rows)s, %(checksum)s, %(path)s, %(bytes)s, %(version)s)
        ON CONFLICT (dataset, project_id, day) DO UPDATE
        SET rows = EXCLUDED.rows, checksum = EXCLUDED.checksum, path = EXCLUDED.path, bytes = EXCLUDED.bytes,
            source_version = EXCLUDED.source_version, exported_at = now(), status = 'exported',
            verified_at = NULL, detail = ''
        """,
        {"dataset": dataset, "project": project_id, "day": day, "rows": checksum_rows, "checksum": checksum,
         "path": rel, "bytes": size, "version": version},
    )  # fmt: skip
    if checksum_rows != rows:
        raise RuntimeError(f"{rel}: wrote {rows} rows but the file holds {checksum_rows}")


def _remove_others(
    conn: psycopg.Connection, store: ColdStore, dataset: str, day: date, projects: list[uuid.UUID]
) -> None:
    """A project no longer in the day (its rows deleted upstream) loses its file and its record."""
    gone = conn.execute(
        "DELETE FROM cold_exports WHERE dataset = %s AND day = %s AND NOT (project_id = ANY(%s)) RETURNING path",
        (dataset, day, projects),
    ).fetchall()
    for (rel,) in gone:
        if store.size(rel) is not None:
            store.fs.delete_file(store.full(rel))


@dataclass(frozen=True)
class DayToExport:
    day: date
    version: int  # sum of the source versions of the day's projects: changes whenever any of them does
    projects: int
    failed: bool = False  # a previous export or parity check of the day failed: this is a retry


def days_to_export(
    conn: psycopg.Connection,
    first: date,
    before: date,
    limit: int,
    retry_after: timedelta = timedelta(hours=1),
) -> list[DayToExport]:
    """Days in [first, before) whose PostgreSQL data is not in the cold tier as it is now: a project never
    exported, or exported before more data landed (events) or before a rebuild (aggregates). Days whose
    raw partition retention dropped are done: their landed version still equals the export's."""
    rows = conn.execute(
        """
        WITH want AS (
            SELECT 'events' AS dataset, project_id, day, version FROM landed_days
            WHERE day >= %(first)s AND day < %(before)s
            UNION ALL
            SELECT d.dataset, b.project_id, b.day, b.built_version FROM aggregate_builds b
            CROSS JOIN (VALUES ('event_rollups'), ('daily_aggregates')) AS d (dataset)
            WHERE b.day >= %(first)s AND b.day < %(before)s
        )
        SELECT w.day, sum(w.version)::bigint, count(DISTINCT w.project_id)::int,
               coalesce(bool_or(c.status = 'failed'), false)
        FROM want w LEFT JOIN cold_exports c USING (dataset, project_id, day)
        GROUP BY w.day
        -- a failed export or check is retried once its last attempt is older than %(retry_after)s
        HAVING bool_or(c.project_id IS NULL OR c.source_version <> w.version OR c.status = 'exported'
                       OR (c.status = 'failed'
                           AND coalesce(c.verified_at, c.exported_at) < now() - %(retry_after)s::interval))
        ORDER BY w.day
        LIMIT %(limit)s
        """,
        {"first": first, "before": before, "limit": limit, "retry_after": retry_after},
    ).fetchall()
    return [DayToExport(d, v, n, f) for d, v, n, f in rows]
