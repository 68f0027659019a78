"""The cold tier as day-partitioned assets: each closed UTC day's raw events and aggregates as Parquet.

`cold_events` and `cold_aggregates` are one multi-asset (one pass per day); their parity checks
(orchestration/checks/cold.py) run in the same job and are what raw retention waits for.
"""

import dagster as dg

from orchestration.assets.aggregates import DAILY_AGGREGATES, EVENT_ROLLUPS
from orchestration.partitions import daily_partitions, run_days
from orchestration.resources import SettingsResource, WarehouseResource
from warehouse.cold import AGGREGATES, EVENTS, ROLLUPS, ExportedFile, export_day

COLD_EVENTS = dg.AssetSpec(
    "cold_events",
    description="Raw events of each closed UTC day as zstd Parquet, one file per project "
    "(events/day=YYYY-MM-DD/project=<uuid>/events.parquet under PULSEOPS_COLD__URL). Raw retention drops a "
    "PostgreSQL day partition only after this day's parity check passed.",
    group_name="cold",
    kinds={"parquet", "duckdb"},
)
COLD_AGGREGATES = dg.AssetSpec(
    "cold_aggregates",
    description="event_rollups and daily_aggregates of each closed UTC day as zstd Parquet, one file per "
    "project, so aggregate history outlives aggregates_retention_days.",
    deps=[EVENT_ROLLUPS.key, DAILY_AGGREGATES.key],
    group_name="cold",
    kinds={"parquet"},
)


@dg.multi_asset(
    specs=[COLD_EVENTS, COLD_AGGREGATES],
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    can_subset=True,
)
def cold_export(context: dg.AssetExecutionContext, warehouse: WarehouseResource, pulseops: SettingsResource):
    settings = pulseops.cold()  # read when the run starts
    selected = {k.to_user_string() for k in context.selected_asset_keys}
    datasets = ([EVENTS] if "cold_events" in selected else []) + (
        [ROLLUPS, AGGREGATES] if "cold_aggregates" in selected else []
    )
    days = run_days(context)
    files: list[ExportedFile] = []
    with warehouse.connection() as conn:
        for day in days:
            exported = export_day(conn, warehouse.database_url, day, settings, datasets)
            files += exported
            context.log.info(f"{day}: {_summary(exported)}")
    for key, names in (("cold_events", {EVENTS}), ("cold_aggregates", {ROLLUPS, AGGREGATES})):
        if key not in selected:
            continue
        mine = [f for f in files if f.dataset in names]
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={
                "days": len(days),
                "files": len(mine),
                "dagster/row_count": sum(f.rows for f in mine),
                "bytes": sum(f.bytes for f in mine),
                "cold_url": settings.url,
            },
        )


def _summary(files: list[ExportedFile]) -> str:
    by: dict[str, list[ExportedFile]] = {}
    for f in files:
        by.setdefault(f.dataset, []).append(f)
    if not by:
        return "nothing to export (no rows in PostgreSQL)"
    return "; ".join(
        f"{name}: {sum(f.rows for f in fs):,} rows in {len(fs)} files, {sum(f.bytes for f in fs):,} bytes"
        for name, fs in by.items()
    )
