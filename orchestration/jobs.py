"""Jobs: the aggregate rebuild (asset job, checks included) and partition maintenance / retention."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.checks import checks, great_expectations_suite
from orchestration.partitions import daily_partitions
from orchestration.resources import SettingsResource, WarehouseResource
from warehouse.aggregates import delete_aggregates_before
from warehouse.cold import drop_exported_partitions_before
from warehouse.partitions import ensure_window

rebuild_aggregates_job = dg.define_asset_job(
    "rebuild_aggregates_job",
    selection=dg.AssetSelection.groups("aggregates"),
    partitions_def=daily_partitions,
    description="Rebuild the aggregate tables of one or more UTC days, with their checks.",
    # One process per run: the multiprocess executor would start (and import Dagster in) another process
    # per step, which doubled the late-data correction time here.
    executor_def=dg.in_process_executor,
)


# What the late-data sensor runs: the rebuild with its blocking integrity checks but without the Great
# Expectations suite, whose import and queries cost ~6 s per run and belong to backfills and the UI's runs.
refresh_aggregates_job = dg.define_asset_job(
    "refresh_aggregates_job",
    selection=dg.AssetSelection.groups("aggregates").without_checks()
    | dg.AssetSelection.checks(*[c for c in checks if c is not great_expectations_suite]),
    partitions_def=daily_partitions,
    description="Rebuild days that received late or new data (run by late_data_sensor).",
    executor_def=dg.in_process_executor,
)


cold_export_job = dg.define_asset_job(
    "cold_export_job",
    selection=dg.AssetSelection.groups("cold"),
    partitions_def=daily_partitions,
    description="Export closed UTC days to the cold tier (Parquet) and check their parity with PostgreSQL.",
    tags={"pulseops/queue": "cold"},  # at most one such run at a time (tag_concurrency_limits)
    executor_def=dg.in_process_executor,
)


@dg.op(description="Create the events partitions of the coming days (landing also creates missing ones).")
def create_future_partitions(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, pulseops: SettingsResource
) -> None:
    ahead = pulseops.warehouse().partitions_ahead_days
    with warehouse.connection() as conn:
        created = ensure_window(conn, datetime.now(UTC).date(), back_days=0, ahead_days=ahead)
    context.log.info(f"created {len(created)} partitions: {[str(d) for d in created]}")


@dg.op(
    description="Raw retention: drop events day partitions older than raw_retention_days whose every project "
    "has a cold-tier export that passed its parity check for the current data (others stay, with the reason "
    "in the log); delete aggregates older than aggregates_retention_days (their Parquet copy stays)."
)
def apply_retention(
    context: dg.OpExecutionContext, warehouse: WarehouseResource, pulseops: SettingsResource
) -> None:
    s = pulseops.all()
    today = datetime.now(UTC).date()
    with warehouse.connection() as conn:
        raw = drop_exported_partitions_before(
            conn, today - timedelta(days=s.warehouse.raw_retention_days), s.cold
        )
        deleted = delete_aggregates_before(
            conn, today - timedelta(days=s.orchestration.aggregates_retention_days)
        )
    context.log.info(f"raw days dropped (exported and verified): {[str(d) for d in raw.dropped]}")
    for day, reason in raw.kept.items():
        context.log.warning(f"{day}: raw partition kept past retention: {reason}")
    context.log.info(f"aggregates deleted {deleted}")


@dg.job(description="Create future day partitions and apply retention.")
def partition_maintenance_job() -> None:
    create_future_partitions()
    apply_retention()
