"""The one partitions definition: UTC days from the configured start date, today included."""

import dagster as dg

from pulseops.settings import get_settings

daily_partitions = dg.DailyPartitionsDefinition(
    start_date=get_settings().orchestration.start_date, timezone="UTC", end_offset=1
)
