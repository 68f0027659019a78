"""Assembles the code location; nothing is defined here (workspace.yaml loads this module)."""

import dagster as dg

from orchestration.assets.aggregates import aggregates
from orchestration.checks import checks
from orchestration.jobs import partition_maintenance_job, rebuild_aggregates_job, refresh_aggregates_job
from orchestration.resources import warehouse_resource
from orchestration.schedules import partition_maintenance_schedule
from orchestration.sensors import late_data_sensor

defs = dg.Definitions(
    assets=[aggregates],
    asset_checks=checks,
    jobs=[rebuild_aggregates_job, refresh_aggregates_job, partition_maintenance_job],
    schedules=[partition_maintenance_schedule],
    sensors=[late_data_sensor],
    resources={"warehouse": warehouse_resource()},
    executor=dg.in_process_executor,
)
