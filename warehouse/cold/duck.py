"""DuckDB over cold files: a connection that never reaches the network or Python variables, views over
Parquet files (local, or through Arrow datasets for S3), and the seal that confines SQL to given files."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from warehouse.cold.datasets import AGGREGATES, EVENTS, ROLLUPS
from warehouse.cold.store import ColdStore

if TYPE_CHECKING:
    import duckdb

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


def seal(duck: duckdb.DuckDBPyConnection, allowed_files: Sequence[str]) -> None:
    if allowed_files:
        duck.execute("SET allowed_paths = ?", [list(allowed_files)])
    duck.execute("SET enable_external_access = false")
    duck.execute("SET lock_configuration = true")
