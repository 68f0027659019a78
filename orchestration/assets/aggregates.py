"""The aggregate tables the API reads, rebuilt per UTC day in one transaction (warehouse.aggregates).

One multi-asset, because the three tables of a day are replaced together and stamped with one landed-data
version: a reader never sees rollups of one build next to user counts of another.
"""

import queue
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import ExitStack
from datetime import date

import dagster as dg
import psycopg

from orchestration.partitions import daily_partitions, run_days
from orchestration.resources import SettingsResource, WarehouseResource
from pulseops.settings import ColdSettings
from warehouse.aggregates import DayBuild, rebuild_day
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


# Days rebuilt at once in a range run, each on its own connection and still in its own transaction: a day's
# rebuild is one backend's work, so a second connection uses PostgreSQL's second core (the machines have two).
REBUILD_CONNECTIONS = 2


def _rebuild(conn: psycopg.Connection, day: date, cold: ColdSettings, run_id: str) -> tuple[DayBuild, str]:
    """One day's rebuild from PostgreSQL, or from the cold tier when only that holds its raw data."""
    if not is_attached(conn, day) and cold_projects(conn, day):
        # Raw data of the day lives only in the cold tier now: DuckDB rebuilds from its Parquet.
        build = rebuild_day_from_cold(conn, day, cold, run_id=run_id)
        return build, " (rebuilt from the cold tier: Parquet, DuckDB)"
    return rebuild_day(conn, day, run_id=run_id), ""


def _rebuild_days(
    warehouse: WarehouseResource, days: list[date], cold: ColdSettings, run_id: str
) -> Iterator[tuple[DayBuild, str]]:
    """The days' builds, in order of completion, on up to REBUILD_CONNECTIONS connections. A failed day
    raises here and the days not started yet are not built (the ones done are committed, as before)."""
    with ExitStack() as stack:
        idle: queue.SimpleQueue[psycopg.Connection] = queue.SimpleQueue()
        for _ in range(min(REBUILD_CONNECTIONS, len(days))):
            idle.put(stack.enter_context(warehouse.connection()))

        def one(day: date) -> tuple[DayBuild, str]:
            conn = idle.get()
            try:
                return _rebuild(conn, day, cold, run_id)
            finally:
                idle.put(conn)

        pool = stack.enter_context(ThreadPoolExecutor(max(1, min(REBUILD_CONNECTIONS, len(days)))))
        futures = [pool.submit(one, day) for day in days]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


def _import_expectations_meanwhile(context: dg.AssetExecutionContext) -> None:
    """When the run goes on to the Great Expectations check (same process, in_process_executor), import
    great_expectations in a thread while the days rebuild: the import takes seconds of this process's CPU, and
    the rebuild mostly waits for PostgreSQL."""
    if any(name.endswith("great_expectations_suite") for name in context.job_def.graph.node_dict):
        from orchestration.checks.expectations import import_gx

        threading.Thread(target=import_gx, name="import-great-expectations", daemon=True).start()


@dg.multi_asset(
    specs=[EVENT_ROLLUPS, USER_ACTIVITY, DAILY_AGGREGATES],
    partitions_def=daily_partitions,
    # A backfill of many days runs as one run (one process, REBUILD_CONNECTIONS connections, a transaction per
    # day); so does a late-data correction of many days (late_data_sensor: a range run whose `pulseops/days`
    # tag lists the stale days).
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def aggregates(context: dg.AssetExecutionContext, warehouse: WarehouseResource, pulseops: SettingsResource):
    days = run_days(context)
    _import_expectations_meanwhile(context)
    cold = pulseops.cold()  # read when the run starts
    totals = {"raw": 0, "rollups": 0, "users": 0, "aggregates": 0}
    with _DayLog(context) as progress:
        for build, source in _rebuild_days(warehouse, days, cold, context.run.run_id):
            if build.skipped:
                context.log.warning(f"{build.day}: not rebuilt: {build.skipped}")
                continue
            totals["raw"] += build.raw_events
            totals["rollups"] += build.rollup_rows
            totals["users"] += build.user_rows
            totals["aggregates"] += build.aggregate_rows
            progress.add(
                f"{build.day}: {build.raw_events} raw events -> {build.rollup_rows} rollups, {build.user_rows} "
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
