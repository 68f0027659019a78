"""The one partitions definition (UTC days from the configured start date, today included) and which of its
days a run covers."""

from datetime import date, timedelta

import dagster as dg

from pulseops.settings import get_settings

# Dagster needs the partitions when it loads the definitions, so this one setting is read then (the code
# location is loaded by the processes `pulseops up` starts with the deployment's environment).
daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().orchestration.start_date, timezone="UTC", end_offset=1
)

DAYS_TAG = "pulseops/days"  # the days a sensor's range run rebuilds and checks (the others are up to date)


def run_days(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext) -> list[date]:
    """The UTC days of the run: one for a partition; for a range, the days its `pulseops/days` tag lists
    (a late-data run covers only the stale days inside its range), else every day of the range.

    A partitioned check sees the run's partition through the run tags like an asset does: `dagster/partition`
    for one day, `dagster/asset_partition_range_start`/`_end` for a range. `partition_time_window` covers
    both (`partition_key` raises on a range), resolved against the `partitions_def`.
    """
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(
            description="This check is partitioned by UTC day: run it for a partition or a range of them."
        )
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    days = [first + timedelta(days=i) for i in range((end - first).days)]
    listed = context.run.tags.get(DAYS_TAG)
    if listed and not context.has_partition_key:
        wanted = {date.fromisoformat(d) for d in listed.split(",")}
        days = [d for d in days if d in wanted]
    return days
