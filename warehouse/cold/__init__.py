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
independently of the driver that carried them. DuckDB, pyarrow and the ADBC driver (which pulls in pandas)
are imported inside the functions that use them: every Dagster process loads this package with the code
location, and most never touch a Parquet file.

Modules: `datasets` (names, columns, the SQL per dataset), `store` (where files live), `export`, `parity`,
`retention`, `reads` (cold days and sealed DuckDB views), `duck` (DuckDB connections over the files).
"""

# Import from the modules. These re-exports keep `from warehouse.cold import ...` working for callers that
# are being changed elsewhere right now (orchestration/, issue 16; pulseops/cli.py, issue 15) and for the
# tests, which use the package as one namespace (`cold.export_day`, `cold.verify_day`, ...).
from warehouse.cold.datasets import AGGREGATES, DATASETS, EVENTS, ROLLUPS
from warehouse.cold.export import DayToExport, ExportedFile, days_to_export, export_day
from warehouse.cold.parity import DayParity, Parity, parquet_checksum, postgres_checksum, verify_day
from warehouse.cold.reads import ColdScope, cold_days, cold_events, iter_days, open_cold
from warehouse.cold.retention import Retention, drop_exported_partitions_before
from warehouse.cold.store import ColdStore, relative_path

__all__ = [
    "AGGREGATES", "DATASETS", "EVENTS", "ROLLUPS", "ColdScope", "ColdStore", "DayParity", "DayToExport",
    "ExportedFile", "Parity", "Retention", "cold_days", "cold_events", "days_to_export",
    "drop_exported_partitions_before", "export_day", "iter_days", "open_cold", "parquet_checksum",
    "postgres_checksum", "relative_path", "verify_day",
]  # fmt: skip
