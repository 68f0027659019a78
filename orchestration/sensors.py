"""late_data_sensor: rebuild exactly the days whose aggregates miss landed data, within seconds.

It reads `stale_days()` (the `late_days` view plus never-built recent days, i.e. today) and requests one
run per day. The run key is day + landed version, so a day gets one run per new version; while a run for a
day is queued or running no second one is requested, which coalesces a stream of late events of one day
into one rebuild (the next tick picks up whatever landed meanwhile).

cold_export_sensor: exports each closed day to the cold tier (with its parity checks) once, and again
whenever its PostgreSQL data changed since (late data, a rebuild); run key = day + summed source versions.
"""

import time
from datetime import UTC, datetime, timedelta

import dagster as dg

from orchestration.jobs import cold_export_job, refresh_aggregates_job
from orchestration.partitions import daily_partitions
from orchestration.resources import WarehouseResource
from pulseops.settings import get_settings
from warehouse.aggregates import stale_days
from warehouse.cold import days_to_export

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED]  # fmt: skip


@dg.sensor(
    job=refresh_aggregates_job,
    minimum_interval_seconds=get_settings().orchestration.sensor_interval_s,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a rebuild of each day that received data after its aggregates were built "
    "(late data) and of today and yesterday as data lands.",
)
def late_data_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    today = datetime.now(UTC).date()
    with warehouse.connection() as conn:
        stale = stale_days(conn, include_unbuilt_since=today - timedelta(days=1))
    valid = set(daily_partitions.get_partition_keys(dynamic_partitions_store=context.instance))
    requests = []
    for s in stale:
        key = s.day.isoformat()
        if key not in valid:
            context.log.warning(f"{key} has landed data but is outside the partitions; not rebuilt")
            continue
        running = context.instance.get_run_records(
            dg.RunsFilter(
                job_name=refresh_aggregates_job.name, tags={"dagster/partition": key}, statuses=ACTIVE
            ),
            limit=1,
        )
        if running:
            continue
        requests.append(
            dg.RunRequest(
                run_key=f"{key}:{s.version}",
                partition_key=key,
                tags={
                    "pulseops/reason": s.reason,
                    "pulseops/landed_version": str(s.version),
                    "pulseops/projects": str(s.projects),
                },
            )
        )
    if not requests:
        return dg.SkipReason(
            f"no stale days ({len(stale)} waiting on running rebuilds)" if stale else "no stale days"
        )
    return requests


@dg.sensor(
    job=cold_export_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a cold-tier export (with its parity checks) of each closed UTC day whose "
    "PostgreSQL data is not in Parquet as it is now: never exported, more data landed, or rebuilt since.",
)
def cold_export_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    cold = get_settings().cold
    if not cold.enabled:
        return dg.SkipReason("cold tier exports are off (PULSEOPS_COLD__ENABLED=false)")
    today = datetime.now(UTC).date()
    first = daily_partitions.start.date()
    with warehouse.connection() as conn:
        days = days_to_export(conn, first, today - timedelta(days=cold.export_after_days - 1), limit=500)
    requests = []
    for d in days:
        key = d.day.isoformat()
        running = context.instance.get_run_records(
            dg.RunsFilter(job_name=cold_export_job.name, tags={"dagster/partition": key}, statuses=ACTIVE),
            limit=1,
        )
        if running:
            continue
        requests.append(
            dg.RunRequest(
                # a retry of a failed export needs a new run key: one per retry window
                run_key=f"cold:{key}:{d.version}" + (f":retry{int(time.time() // 3600)}" if d.failed else ""),
                partition_key=key,
                tags={
                    "pulseops/reason": "cold_export",
                    "pulseops/source_version": str(d.version),
                    "pulseops/queue": "cold",
                },
            )
        )
        if len(requests) >= cold.max_days_per_tick:
            break
    return requests or dg.SkipReason(f"{len(days)} days to export, all running" if days else "all exported")
