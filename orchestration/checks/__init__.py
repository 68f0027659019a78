"""Asset checks of the aggregate assets, partitioned by UTC day like the assets they check."""

from orchestration.checks.expectations import great_expectations_suite
from orchestration.checks.integrity import (
    aggregates_reconcile_with_raw,
    dead_letter_rate_within_threshold,
    late_arrival_share_within_threshold,
    no_duplicate_event_ids,
)

checks = [
    no_duplicate_event_ids,
    aggregates_reconcile_with_raw,
    late_arrival_share_within_threshold,
    dead_letter_rate_within_threshold,
    great_expectations_suite,
]

__all__ = [
    "aggregates_reconcile_with_raw",
    "checks",
    "dead_letter_rate_within_threshold",
    "great_expectations_suite",
    "late_arrival_share_within_threshold",
    "no_duplicate_event_ids",
]
