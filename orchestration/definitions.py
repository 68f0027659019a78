"""Assembles the code location; nothing is defined here (workspace.yaml loads this module)."""

import dagster as dg

from orchestration.assets.aggregates import aggregates
from orchestration.assets.cold import cold_export
from orchestration.checks import checks
from orchestration.checks.cold import cold_checks
from orchestration.jobs import (
    cold_export_job,
    partition_maintenance_job,
    rebuild_aggregates_job,
    refresh_aggregates_job,
)
from orchestration.resources import SettingsResource, warehouse_resource
from orchestration.run_workers import install as fork_run_workers
from orchestration.schedules import partition_maintenance_schedule
from orchestration.sensors import cold_export_sensor, late_data_sensor

defs = dg.Definitions(
    assets=[aggregates, cold_export],
    asset_checks=[*checks, *cold_checks],
    jobs=[rebuild_aggregates_job, refresh_aggregates_job, partition_maintenance_job, cold_export_job],
    schedules=[partition_maintenance_schedule],
    sensors=[late_data_sensor, cold_export_sensor],
    resources={"warehouse": warehouse_resource(), "pulseops": SettingsResource()},
    executor=dg.in_process_executor,
)

# In a code server: runs start as forks of a preloaded template process, not as fresh interpreters.
fork_run_workers()
