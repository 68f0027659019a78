"""Schedules. Days are rebuilt by late_data_sensor once closed (today answers from raw events until then)."""

import dagster as dg

from orchestration.jobs import partition_maintenance_job

partition_maintenance_schedule = dg.ScheduleDefinition(
    job=partition_maintenance_job,
    cron_schedule="30 0 * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Daily: partitions ahead, retention.",
)
