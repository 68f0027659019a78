"""The aggregate tables the API reads, rebuilt per UTC day in one transaction (warehouse.aggregates).

One multi-asset, because the three tables of a day are replaced together and stamped with one landed-data
version: a reader never sees rollups of one build next to user counts of another.
"""

import time

import dagster as dg

from orchestration.partitions import daily_partitions, run_days
from orchestration.resources import SettingsResource, WarehouseResource
from warehouse.aggregates import rebuild_day
from warehouse.cold_rebuild import cold_projects, rebuild_day_from_cold
from warehouse.partitions import is_attached

_COL = dg.TableColumn

EVENT_ROLLUPS = dg.AssetSpec(
    "event_rollups",
    description="Events per project, 15-minute UTC bucket and event name. Every zone offset is a multiple of "
    "15 minutes, so hourly and daily series are exact in any IANA time zone, DST days included.",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                _COL("project_id", "uuid"),
                _COL("bucket", "timestamptz", description="start of the 15-minute UTC bucket"),
                _COL("event_name", "text"),
                _COL("events", "bigint"),
            ]
        ),
        "dagster/table_name": "event_rollups",
    },
    group_name="aggregates",
)
USER_ACTIVITY = dg.AssetSpec(
    "user_activity",
    description="Per project, UTC day and user: a 96-bit map of the 15-minute slots with activity. Exact DAU, "
    "WAU and MAU in any time zone.",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                _COL("project_id", "uuid"),
                _COL("day", "date"),
                _COL("distinct_id", "text"),
                _COL("slots", "bit(96)"),
                _COL("events", "integer"),
            ]
        ),
        "dagster/table_name": "user_activity",
    },
    group_name="aggregates",
)
DAILY_AGGREGATES = dg.AssetSpec(
    "daily_aggregates",
    description="Per org, project, metric, UTC date and dimensions: built-in metrics (events, events per name, "
    "unique users) and the custom metrics of `metric_definitions`.",
    metadata={
        "dagster/column_schema": dg.TableSchema(
            columns=[
                _COL("org_id", "uuid"),
                _COL("project_id", "uuid"),
                _COL("metric", "text", description="'events', 'unique_users' or 'custom:<id>'"),
                _COL("date", "date"),
                _COL("dimensions", "jsonb"),
                _COL("value", "double precision"),
                _COL("events", "bigint"),
                _COL("sum", "double precision"),
            ]
        ),
        "dagster/table_name": "daily_aggregates",
    },
    group_name="aggregates",
)


class _DayLog:
    """The per-day lines of a run, logged together at most every FLUSH_S seconds (and when the run ends,
    failed or not): each log message is one row in Dagster's event log, and a 90-day backfill wrote 90."""

    FLUSH_S = 10.0

    def __init__(self, context: dg.AssetExecutionContext) -> None:
        self._context, self._lines, self._since = context, [], time.monotonic()

    def add(self, line: str) -> None:
        self._lines.append(line)
        if time.monotonic() - self._since >= self.FLUSH_S:
            self.flush()

    def flush(self) -> None:
        if self._lines:
            self._context.log.info(f"{len(self._lines)} days rebuilt:\n" + "\n".join(self._lines))
        self._lines, self._since = [], time.monotonic()

    def __enter__(self) -> "_DayLog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.flush()


@dg.multi_asset(
    specs=[EVENT_ROLLUPS, USER_ACTIVITY, DAILY_AGGREGATES],
    partitions_def=daily_partitions,
    # A backfill of many days runs as one run (one process, one connection), day by day; so does a late-data
    # correction of many days (late_data_sensor: a range run whose `pulseops/days` tag lists the stale days).
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def aggregates(context: dg.AssetExecutionContext, warehouse: WarehouseResource, pulseops: SettingsResource):
    days = run_days(context)
    cold = pulseops.cold()  # read when the run starts
    totals = {"raw": 0, "rollups": 0, "users": 0, "aggregates": 0}
    progress = _DayLog(context)
    with warehouse.connection() as conn, progress:
        for day in days:
            source = ""
            if not is_attached(conn, day) and cold_projects(conn, day):
                # Raw data of the day lives only in the cold tier now: DuckDB rebuilds from its Parquet.
                build = rebuild_day_from_cold(conn, day, cold, run_id=context.run.run_id)
                source = " (rebuilt from the cold tier: Parquet, DuckDB)"
            else:
                build = rebuild_day(conn, day, run_id=context.run.run_id)
            if build.skipped:
                context.log.warning(f"{day}: not rebuilt: {build.skipped}")
                continue
            totals["raw"] += build.raw_events
            totals["rollups"] += build.rollup_rows
            totals["users"] += build.user_rows
            totals["aggregates"] += build.aggregate_rows
            progress.add(
                f"{day}: {build.raw_events} raw events -> {build.rollup_rows} rollups, {build.user_rows} "
                f"user rows, {build.aggregate_rows} aggregates in {build.seconds:.2f}s{source}"
            )
    common = {"days": len(days), "raw_events": totals["raw"]}
    yield dg.MaterializeResult(
        asset_key="event_rollups", metadata={**common, "dagster/row_count": totals["rollups"]}
    )
    yield dg.MaterializeResult(
        asset_key="user_activity", metadata={**common, "dagster/row_count": totals["users"]}
    )
    yield dg.MaterializeResult(
        asset_key="daily_aggregates", metadata={**common, "dagster/row_count": totals["aggregates"]}
    )
