"""The parity check: per project and day, rows and an order-independent checksum computed by PostgreSQL and,
from the Parquet file, by DuckDB must equal what the export recorded before an export counts as verified."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pulseops.settings import ColdSettings
from warehouse.aggregates import day_bounds
from warehouse.cold.datasets import DATASETS, EVENTS, SPECS, day_projects, day_source
from warehouse.cold.duck import duckdb_connection, register_files
from warehouse.cold.store import ColdStore

if TYPE_CHECKING:
    import duckdb


def postgres_checksum(
    conn: psycopg.Connection, dataset: str, day: date, project_id: uuid.UUID
) -> tuple[int, int]:
    """(rows, checksum) of one project's rows of the day, computed by PostgreSQL."""
    spec = SPECS[dataset]
    source = day_source(conn, dataset, day)
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
        line = SPECS[dataset].duck_line
        rows, checksum = duck.execute(
            f"SELECT count(*), coalesce(sum(('0x' || left(md5({line}), 15))::BIGINT), 0) "  # noqa: S608 - a fixed expression of SPECS
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
            spec = SPECS[name]
            records = conn.execute(
                "SELECT project_id, rows, checksum, path, source_version FROM cold_exports "
                "WHERE dataset = %s AND day = %s ORDER BY project_id",
                (name, day),
            ).fetchall()
            recorded_projects = {r[0] for r in records}
            source = day_source(conn, name, day)
            in_postgres = name != EVENTS or source is not None
            if in_postgres:
                missing = set(day_projects(conn, name, day, source)) - recorded_projects
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
