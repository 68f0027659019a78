"""Cold tier: closed UTC days of raw events (and their aggregates) as zstd Parquet, read with DuckDB.

Layout under the cold root (a local folder or s3://bucket/prefix, `PULSEOPS_COLD__URL`), one file per
dataset, day and project, so a tenant's files can be handed to DuckDB without anyone else's:

    events/day=2026-01-31/project=<uuid>/events.parquet
    event_rollups/day=2026-01-31/project=<uuid>/event_rollups.parquet
    daily_aggregates/day=2026-01-31/project=<uuid>/daily_aggregates.parquet

Export (`export_day`) reads PostgreSQL with the ADBC driver (binary COPY into Arrow), writes each file to a
temporary name and moves it into place, and records it in `cold_exports` with the landed version it read;
repeating it rewrites the same files. The parity check (`verify_day`) recomputes row count and checksum per
project from PostgreSQL (its own SQL) and from the Parquet file (DuckDB) and marks the export verified only
when both agree with what the export recorded. Retention (`drop_exported_partitions_before`) drops a raw
day partition only when every project in it has a verified export of the day's current version.

The checksum is order-independent: the sum over rows of the first 60 bits of md5(one text line per row),
computed with the same formatting by PostgreSQL and DuckDB, so it proves the values survived the trip
independently of the driver that carried them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pulseops.settings import ColdSettings
from warehouse.aggregates import day_bounds
from warehouse.db import libpq_url
from warehouse.partitions import is_attached, partition_name

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa
    import pyarrow.fs as pafs

# DuckDB, pyarrow and the ADBC driver (which pulls in pandas) are imported where they are used: every
# Dagster process loads this module with the code location, and most never touch a Parquet file.

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
class _Dataset:
    name: str
    select: str  # PostgreSQL: the export's columns, FROM {source}, rows of project $1 / %(project)s
    pg_line: str  # PostgreSQL expression: the row's checksum line
    duck_line: str  # DuckDB expression over the Parquet columns: the same line
    version: str  # PostgreSQL: the source version of (project, day)


_SPECS = {
    EVENTS: _Dataset(
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
    ROLLUPS: _Dataset(
        ROLLUPS,
        "SELECT project_id, bucket, event_name, events FROM event_rollups "
        "WHERE bucket >= {start} AND bucket < {end} AND project_id = {project} ORDER BY bucket, event_name",
        f"concat_ws({_SEP}, project_id::text, (extract(epoch FROM bucket) * 1000000)::bigint::text, "
        "event_name, events::text)",
        f"concat_ws({_SEP}, project_id::VARCHAR, epoch_us(bucket)::VARCHAR, event_name, events::VARCHAR)",
        "SELECT coalesce((SELECT built_version FROM aggregate_builds WHERE project_id = %(project)s "
        "AND day = %(day)s), 0)",
    ),
    AGGREGATES: _Dataset(
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


# --- where the files live ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ColdStore:
    """The cold root: a pyarrow filesystem (local or S3-compatible) and the base path inside it."""

    fs: pafs.FileSystem
    root: str

    @classmethod
    def from_settings(cls, cold: ColdSettings) -> ColdStore:
        import pyarrow.fs as pafs

        if cold.url.startswith("s3://"):
            # Credentials come from the AWS_* environment variables / profile, as for any S3 client.
            fs = pafs.S3FileSystem(endpoint_override=cold.s3_endpoint, region=cold.s3_region or "us-east-1")
            return cls(fs, cold.url.removeprefix("s3://").rstrip("/"))
        root = Path(cold.url.removeprefix("file://")).absolute()
        return cls(pafs.LocalFileSystem(), str(root))

    @property
    def local(self) -> bool:
        import pyarrow.fs as pafs

        return isinstance(self.fs, pafs.LocalFileSystem)

    def full(self, relative: str) -> str:
        return f"{self.root}/{relative}"

    def size(self, relative: str) -> int | None:
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.full(relative))
        return info.size if info.type == pafs.FileType.File else None


def relative_path(dataset: str, day: date, project_id: uuid.UUID) -> str:
    return f"{dataset}/day={day.isoformat()}/project={project_id}/{dataset}.parquet"


# --- export --------------------------------------------------------------------------------------------


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
            spec = _SPECS[name]
            source = _source(conn, name, day)
            projects = _projects(conn, name, day, source)
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


def _source(conn: psycopg.Connection, dataset: str, day: date) -> sql.Composable | None:
    """The events table of the day, attached or detached by an earlier retention; None if it has none."""
    if dataset != EVENTS:
        return sql.SQL("")
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (partition_name(day),)).fetchone()[0]
    return sql.Identifier(partition_name(day)) if exists else None


def _projects(
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


def _select_sql(spec: _Dataset, day: date, source: sql.Composable | None) -> str:
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


# --- checksums and the parity check --------------------------------------------------------------------


def postgres_checksum(
    conn: psycopg.Connection, dataset: str, day: date, project_id: uuid.UUID
) -> tuple[int, int]:
    """(rows, checksum) of one project's rows of the day, computed by PostgreSQL."""
    spec = _SPECS[dataset]
    source = _source(conn, dataset, day)
    if dataset == EVENTS and source is None:
        return 0, 0
    start, end = day_bounds(day)
    # the export's query without its ORDER BY: a sum does not care about order
    inner = sql.SQL(spec.select.rsplit(" ORDER BY ", 1)[0]).format(
        source=source, project=sql.Placeholder("project"), start=sql.Placeholder("start"),
        end=sql.Placeholder("end"), day=sql.Placeholder("day"),
    )  # fmt: skip
    query = sql.SQL(
        "SELECT count(*), coalesce(sum(('x' || left(md5({line}), 15))::bit(60)::bigint), 0) FROM ({inner}) t"
    ).format(line=sql.SQL(spec.pg_line), inner=inner)
    rows, checksum = conn.execute(
        query, {"project": project_id, "start": start, "end": end, "day": day}
    ).fetchone()
    return int(rows), int(checksum)


def parquet_checksum(
    store: ColdStore,
    dataset: str,
    relative_paths: Sequence[str],
    duck: duckdb.DuckDBPyConnection | None = None,
) -> tuple[int, int]:
    """(rows, checksum) of Parquet files, computed by DuckDB; a truncated or corrupt file raises.

    Pass `duck` (from `duckdb_connection()`) to reuse one connection over many files: opening one costs
    tens of milliseconds."""
    own = duck is None
    duck = duck or duckdb_connection()
    try:
        register_files(duck, store, "_checksum_files", relative_paths, dataset)
        line = _SPECS[dataset].duck_line
        rows, checksum = duck.execute(
            f"SELECT count(*), coalesce(sum(('0x' || left(md5({line}), 15))::BIGINT), 0) "  # noqa: S608 - a fixed expression of _SPECS
            "FROM _checksum_files"
        ).fetchall()[0]
    finally:
        if own:
            duck.close()
    return int(rows), int(checksum)


@dataclass(frozen=True)
class Parity:
    dataset: str
    project_id: uuid.UUID
    day: date
    ok: bool
    status: str  # verified | failed | stale (data landed after the export: export again)
    detail: str
    postgres: tuple[int, int] | None  # (rows, checksum); None when the raw day is gone from PostgreSQL
    parquet: tuple[int, int] | None  # None when the file is missing or unreadable
    recorded: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "project_id": str(self.project_id), "day": self.day.isoformat(),
            "status": self.status, "detail": self.detail, "postgres": self.postgres, "parquet": self.parquet,
            "recorded": self.recorded,
        }  # fmt: skip


@dataclass
class DayParity:
    day: date
    results: list[Parity] = field(default_factory=list)
    unexported: list[str] = field(default_factory=list)  # "dataset/project" with rows but no export record

    @property
    def ok(self) -> bool:
        return not self.unexported and all(r.ok for r in self.results)


def verify_day(
    conn: psycopg.Connection, day: date, cold: ColdSettings, datasets: Sequence[str] = DATASETS
) -> DayParity:
    """The parity check: per project, rows and checksum from PostgreSQL = from the Parquet file = recorded.

    Marks each export `verified` or `failed` (a stale one, whose source data changed since, goes back to
    `exported`). When the raw day is no longer in PostgreSQL, the file is checked against the record alone.
    """
    import duckdb
    import pyarrow as pa

    store = ColdStore.from_settings(cold)
    report = DayParity(day)
    with duckdb_connection() as duck:
        for name in datasets:
            spec = _SPECS[name]
            records = conn.execute(
                "SELECT project_id, rows, checksum, path, source_version FROM cold_exports "
                "WHERE dataset = %s AND day = %s ORDER BY project_id",
                (name, day),
            ).fetchall()
            recorded_projects = {r[0] for r in records}
            source = _source(conn, name, day)
            in_postgres = name != EVENTS or source is not None
            if in_postgres:
                missing = set(_projects(conn, name, day, source)) - recorded_projects
                report.unexported += sorted(f"{name}/{p}" for p in missing)
            for project_id, rows, checksum, rel, version in records:
                recorded = (int(rows), int(Decimal(checksum)))
                try:
                    parquet = parquet_checksum(store, name, [rel], duck)
                except (duckdb.Error, OSError, pa.ArrowException) as exc:
                    parquet = None
                    problem = f"file unreadable: {str(exc).splitlines()[0][:300]}"
                else:
                    problem = None
                pg = None
                if in_postgres:
                    current = conn.execute(spec.version, {"project": project_id, "day": day}).fetchone()[0]
                    if current != version:
                        _set_status(
                            conn, name, project_id, day, "exported", f"source version {current} != {version}"
                        )
                        report.results.append(
                            Parity(name, project_id, day, False, "stale",
                                   f"data changed since the export (version {version} -> {current}): export again",
                                   None, parquet, recorded)
                        )  # fmt: skip
                        continue
                    pg = postgres_checksum(conn, name, day, project_id)
                if problem is None and parquet != recorded:
                    problem = f"file holds rows/checksum {parquet}, export recorded {recorded}"
                if problem is None and pg is not None and pg != parquet:
                    problem = f"PostgreSQL has rows/checksum {pg}, the file {parquet}"
                status = "failed" if problem else "verified"
                _set_status(conn, name, project_id, day, status, problem or "")
                report.results.append(
                    Parity(
                        name, project_id, day, problem is None, status, problem or "", pg, parquet, recorded
                    )
                )
    return report


def _set_status(
    conn: psycopg.Connection, dataset: str, project_id: uuid.UUID, day: date, status: str, detail: str
) -> None:
    conn.execute(
        "UPDATE cold_exports SET status = %s, detail = %s, "
        "verified_at = CASE WHEN %s = 'verified' THEN now() ELSE verified_at END "
        "WHERE dataset = %s AND project_id = %s AND day = %s",
        (status, detail, status, dataset, project_id, day),
    )


# --- retention -----------------------------------------------------------------------------------------


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


# --- reading: the interface for DuckDB users (pulseops sql, aggregate rebuilds, the GraphQL API) --------


def cold_days(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    first: date | None = None,
    last: date | None = None,
    dataset: str = EVENTS,
) -> list[date]:
    """Days of `project_id` in the cold tier: exported and verified by the parity check, oldest first.

    A day also counts when its raw partition is gone from PostgreSQL; while it is still there, only if no
    data landed after the verified export (for aggregates: no rebuild since).
    """
    version = _SPECS[dataset].version.replace("%(project)s", "c.project_id").replace("%(day)s", "c.day")
    rows = conn.execute(
        f"""
        SELECT c.day FROM cold_exports c
        WHERE c.dataset = %(dataset)s AND c.project_id = %(project)s AND c.status = 'verified'
          AND (%(first)s::date IS NULL OR c.day >= %(first)s::date)
          AND (%(last)s::date IS NULL OR c.day <= %(last)s::date)
          AND c.source_version = ({version})
        ORDER BY c.day
        """,  # noqa: S608 - a fixed expression of this module, no input
        {"dataset": dataset, "project": project_id, "first": first, "last": last},
    ).fetchall()
    return [r[0] for r in rows]


@dataclass
class ColdScope:
    """A DuckDB connection with one view per dataset over one project's verified cold files."""

    duck: duckdb.DuckDBPyConnection
    project_id: uuid.UUID
    days: dict[str, list[date]]  # dataset -> days the view covers

    def close(self) -> None:
        self.duck.close()

    def __enter__(self) -> ColdScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_cold(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    cold: ColdSettings,
    days: Iterable[date] | None = None,
    datasets: Sequence[str] = DATASETS,
    lock: bool = True,
) -> ColdScope:
    """Views `events`, `event_rollups`, `daily_aggregates` (same columns as the PostgreSQL tables, jsonb
    columns as DuckDB JSON) over the verified cold files of one project, optionally only `days`.

    With `lock` (the default) the connection is then sealed: no file or network access beyond those files,
    no Python-variable scans, no configuration changes, so SQL from a tenant sees only its own rows.
    """
    store = ColdStore.from_settings(cold)
    wanted = None if days is None else set(days)
    duck = duckdb_connection()
    covered: dict[str, list[date]] = {}
    paths: list[str] = []
    for name in datasets:
        rows = conn.execute(
            "SELECT day, path FROM cold_exports WHERE dataset = %s AND project_id = %s AND day = ANY(%s) "
            "ORDER BY day",
            (name, project_id, cold_days(conn, project_id, dataset=name)),
        ).fetchall()
        rows = [(d, p) for d, p in rows if wanted is None or d in wanted]
        covered[name] = [d for d, _ in rows]
        rels = [p for _, p in rows]
        paths += [store.full(p) for p in rels]
        register_files(duck, store, f"_{name}_files", rels, name)
        duck.execute(f"CREATE VIEW {name} AS SELECT {_view_columns(name)} FROM _{name}_files")  # noqa: S608 - view names are the module's DATASETS
    if lock:
        _seal(duck, paths if store.local else [])
    return ColdScope(duck, project_id, covered)


def cold_events(
    conn: psycopg.Connection, project_id: uuid.UUID, days: Iterable[date], cold: ColdSettings
) -> ColdScope:
    """For the GraphQL API: DuckDB view `events` over `project_id`'s cold raw events of `days` (only days in
    `cold_days()`; `scope.days['events']` says which). Columns and types as PostgreSQL's `events`:
    project_id UUID, event_time TIMESTAMPTZ, event_id UUID, org_id UUID, event_name VARCHAR,
    distinct_id VARCHAR, received_at TIMESTAMPTZ, landed_at TIMESTAMPTZ, properties JSON. The connection
    is sealed (see `open_cold`) and in UTC; close it (or use `with`)."""
    return open_cold(conn, project_id, cold, days=days, datasets=(EVENTS,))


def _view_columns(dataset: str) -> str:
    if dataset == EVENTS:
        return ", ".join(c if c != "properties" else "properties::JSON AS properties" for c in EVENT_COLUMNS)
    if dataset == AGGREGATES:
        return "org_id, project_id, metric, date, dimensions::JSON AS dimensions, value, events, sum"
    return "project_id, bucket, event_name, events"


_EMPTY = {
    EVENTS: "SELECT NULL::UUID AS project_id, NULL::TIMESTAMPTZ AS event_time, NULL::UUID AS event_id, "
    "NULL::UUID AS org_id, NULL::VARCHAR AS event_name, NULL::VARCHAR AS distinct_id, "
    "NULL::TIMESTAMPTZ AS received_at, NULL::TIMESTAMPTZ AS landed_at, NULL::VARCHAR AS properties WHERE false",
    ROLLUPS: "SELECT NULL::UUID AS project_id, NULL::TIMESTAMPTZ AS bucket, NULL::VARCHAR AS event_name, "
    "NULL::BIGINT AS events WHERE false",
    AGGREGATES: "SELECT NULL::UUID AS org_id, NULL::UUID AS project_id, NULL::VARCHAR AS metric, "
    "NULL::DATE AS date, NULL::VARCHAR AS dimensions, NULL::DOUBLE AS value, NULL::BIGINT AS events, "
    "NULL::DOUBLE AS sum WHERE false",
}


def duckdb_connection() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB in UTC that never downloads extensions nor scans Python variables."""
    import duckdb

    # Extensions never come from the network (the ones used here are built in).
    duck = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    duck.execute("SET TimeZone = 'UTC'")
    duck.execute("SET python_enable_replacements = false")  # SQL must not reach Python variables
    return duck


def register_files(
    duck: duckdb.DuckDBPyConnection, store: ColdStore, name: str, relative_paths: Sequence[str], dataset: str
) -> None:
    """Make `name` a view over the files: DuckDB's own reader for local files, an Arrow dataset otherwise
    (DuckDB's S3 support is an extension that cannot be downloaded here)."""
    if not relative_paths:
        duck.execute(f"CREATE OR REPLACE VIEW {name} AS {_EMPTY[dataset]}")
    elif store.local:
        duck.read_parquet([store.full(p) for p in relative_paths]).create_view(name)
    else:
        files = [store.full(p) for p in relative_paths]
        import pyarrow.dataset as pads

        duck.register(name, pads.dataset(files, filesystem=store.fs, format="parquet"))


def _seal(duck: duckdb.DuckDBPyConnection, allowed_files: Sequence[str]) -> None:
    if allowed_files:
        duck.execute("SET allowed_paths = ?", [list(allowed_files)])
    duck.execute("SET enable_external_access = false")
    duck.execute("SET lock_configuration = true")


def iter_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
