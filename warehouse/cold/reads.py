"""Reading the cold tier, the interface for DuckDB users (`pulseops sql`, aggregate rebuilds, the GraphQL API):
which days are there, and sealed per-project views over their files."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import TYPE_CHECKING

import psycopg

from pulseops.settings import ColdSettings
from warehouse.cold.datasets import AGGREGATES, DATASETS, EVENT_COLUMNS, EVENTS, SPECS
from warehouse.cold.duck import duckdb_connection, register_files, seal
from warehouse.cold.store import ColdStore

if TYPE_CHECKING:
    import duckdb


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
    version = SPECS[dataset].version.replace("%(project)s", "c.project_id").replace("%(day)s", "c.day")
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
    verified: Iterable[date] | None = None,
) -> ColdScope:
    """Views `events`, `event_rollups`, `daily_aggregates` (same columns as the PostgreSQL tables, jsonb
    columns as DuckDB JSON) over the verified cold files of one project, optionally only `days`.

    With `lock` (the default) the connection is then sealed: no file or network access beyond those files,
    no Python-variable scans, no configuration changes, so SQL from a tenant sees only its own rows.
    `verified` (one dataset only): its days the caller already found verified inside the same snapshot (a
    read plan's `verified_cold`, warehouse/reads/plan.py), so `cold_days()` is not asked again.
    """
    if verified is not None and len(datasets) != 1:
        raise ValueError("verified days belong to one dataset")
    store = ColdStore.from_settings(cold)
    wanted = None if days is None else set(days)
    duck = duckdb_connection()
    covered: dict[str, list[date]] = {}
    paths: list[str] = []
    for name in datasets:
        rows = conn.execute(
            "SELECT day, path FROM cold_exports WHERE dataset = %s AND project_id = %s AND day = ANY(%s) "
            "ORDER BY day",
            (
                name,
                project_id,
                sorted(verified) if verified is not None else cold_days(conn, project_id, dataset=name),
            ),
        ).fetchall()
        rows = [(d, p) for d, p in rows if wanted is None or d in wanted]
        covered[name] = [d for d, _ in rows]
        rels = [p for _, p in rows]
        paths += [store.full(p) for p in rels]
        register_files(duck, store, f"_{name}_files", rels, name)
        duck.execute(f"CREATE VIEW {name} AS SELECT {_view_columns(name)} FROM _{name}_files")  # noqa: S608 - view names are the module's DATASETS
    if lock:
        seal(duck, paths if store.local else [])
    return ColdScope(duck, project_id, covered)


def cold_events(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    days: Iterable[date],
    cold: ColdSettings,
    verified: Iterable[date] | None = None,
) -> ColdScope:
    """For the GraphQL API: DuckDB view `events` over `project_id`'s cold raw events of `days` (only days in
    `cold_days()`; `scope.days['events']` says which). Columns and types as PostgreSQL's `events`:
    project_id UUID, event_time TIMESTAMPTZ, event_id UUID, org_id UUID, event_name VARCHAR,
    distinct_id VARCHAR, received_at TIMESTAMPTZ, landed_at TIMESTAMPTZ, properties JSON. The connection
    is sealed (see `open_cold`) and in UTC; close it (or use `with`). `verified`: see `open_cold`."""
    return open_cold(conn, project_id, cold, days=days, datasets=(EVENTS,), verified=verified)


def _view_columns(dataset: str) -> str:
    if dataset == EVENTS:
        return ", ".join(c if c != "properties" else "properties::JSON AS properties" for c in EVENT_COLUMNS)
    if dataset == AGGREGATES:
        return "org_id, project_id, metric, date, dimensions::JSON AS dimensions, value, events, sum"
    return "project_id, bucket, event_name, events"


def iter_days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]
