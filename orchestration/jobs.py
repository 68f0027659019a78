"""Jobs: the aggregate rebuild (asset job, checks included) and partition maintenance / retention."""

from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.checks import checks, great_expectations_suite
from orchestration.partitions import daily_partitions
from orchestration.resources import WarehouseResource
from pulseops.settings import get_settings
from warehouse.aggregates import delete_aggregates_before
from warehouse.partitions import detach_partitions_before, detached_partitions, ensure_window

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


@dg.op(description="Create the events partitions of the coming days (landing also creates missing ones).")
def create_future_partitions(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
    ahead = get_settings().warehouse.partitions_ahead_days
    with warehouse.connection() as conn:
        created = ensure_window(conn, datetime.now(UTC).date(), back_days=0, ahead_days=ahead)
    context.log.info(f"created {len(created)} partitions: {[str(d) for d in created]}")


@dg.op(
    description="Raw retention: detach events partitions older than raw_retention_days (kept as standalone "
    "tables until a verified cold-tier export allows dropping them) and delete aggregates older than "
    "aggregates_retention_days."
)
def apply_retention(context: dg.OpExecutionContext, warehouse: WarehouseResource) -> None:
    s = get_settings()
    today = datetime.now(UTC).date()
    with warehouse.connection() as conn:
        detached = detach_partitions_before(conn, today - timedelta(days=s.warehouse.raw_retention_days))
        deleted = delete_aggregates_before(
            conn, today - timedelta(days=s.orchestration.aggregates_retention_days)
        )
        waiting = detached_partitions(conn)
    context.log.info(
        f"detached {detached}; aggregates deleted {deleted}; detached awaiting export: {waiting}"
    )


@dg.job(description="Create future day partitions and apply retention.")
def partition_maintenance_job() -> None:
    create_future_partitions()
    apply_retention()
