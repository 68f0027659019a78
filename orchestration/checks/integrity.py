"""Asset checks on the raw data behind the aggregates and on the aggregates themselves, per UTC day.

The two integrity checks are blocking with ERROR severity (a failed one fails the run, and nothing downstream
of the asset materialises); the two rate checks only WARN. Every check reports one result per day of its run
(a single-run backfill covers a range of days).
"""

# No `from __future__ import annotations`: Dagster rejects a postponed (string) `context` annotation.

import dagster as dg

from orchestration.assets.aggregates import DAILY_AGGREGATES, EVENT_ROLLUPS
from orchestration.checks.common import SAMPLES, DayResult, check_days, emit, json_md
from orchestration.partitions import daily_partitions
from orchestration.resources import WarehouseResource
from pulseops.settings import get_settings
from warehouse.quality import dead_letter_rate, duplicate_event_ids, late_arrivals, reconciliation


@dg.asset_check(
    asset=EVENT_ROLLUPS.key,
    partitions_def=daily_partitions,
    blocking=True,
    description="Exactly-once holds for the day's raw events: no (project_id, event_id) stored twice, and "
    "every row accounted for by the event_ids ledger with the same event time.",
)
def no_duplicate_event_ids(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    days = check_days(context)
    with warehouse.connection() as conn:
        reports = [duplicate_event_ids(conn, day) for day in days]
    yield from emit(
        context,
        dg.AssetCheckSeverity.ERROR,
        [
            DayResult(
                r.day,
                r.ok,
                {
                    "events": r.events,
                    "count": r.count,
                    "duplicate_keys": r.duplicate_keys,
                    "extra_rows": r.extra_rows,
                    "missing_from_ledger": r.missing_from_ledger,
                    "ledger_time_mismatch": r.ledger_time_mismatch,
                    "samples": json_md(r.samples),
                },
                None
                if r.ok
                else f"{r.count} rows not accounted for by the event_ids ledger "
                f"({r.duplicate_keys} event ids stored twice or more this day)",
            )
            for r in reports
        ],
    )


@dg.asset_check(
    asset=DAILY_AGGREGATES.key,
    partitions_def=daily_partitions,
    blocking=True,
    description="Per project, the day's raw event count equals the rollups' total and the 'events' aggregate, "
    "and its distinct users equal user_activity and the 'unique_users' aggregate. Projects with data landed "
    "after their last build are reported as pending_rebuild, not as mismatches.",
)
def aggregates_reconcile_with_raw(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    days = check_days(context)
    with warehouse.connection() as conn:
        reports = [reconciliation(conn, day) for day in days]
    yield from emit(
        context,
        dg.AssetCheckSeverity.ERROR,
        [
            DayResult(
                r.day,
                r.ok,
                {
                    "raw_events": r.raw_events,
                    "raw_available": r.raw_available,
                    "projects_compared": r.compared,
                    "mismatch_count": len(r.mismatches),
                    "mismatches": json_md([m.as_dict() for m in r.mismatches[:SAMPLES]]),
                    "pending_rebuild_count": len(r.pending_rebuild),
                    "pending_rebuild": json_md(
                        [{"reason": p.pending_reason, **p.as_dict()} for p in r.pending_rebuild[:SAMPLES]]
                    ),
                },
                None if r.ok else f"{len(r.mismatches)} projects do not reconcile with raw",
            )
            for r in reports
        ],
    )


@dg.asset_check(
    asset=EVENT_ROLLUPS.key,
    partitions_def=daily_partitions,
    description="Share of the day's events received more than orchestration.late_lag_s after their event "
    "time stays within orchestration.late_share_warn (WARN otherwise).",
)
def late_arrival_share_within_threshold(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    settings = get_settings().orchestration
    days = check_days(context)
    with warehouse.connection() as conn:
        reports = [late_arrivals(conn, day, settings.late_lag_s) for day in days]
    results = []
    for r in reports:
        ok = r.share <= settings.late_share_warn
        results.append(
            DayResult(
                r.day,
                ok,
                {
                    "events": r.events,
                    "count": r.late,
                    "share": r.share,
                    "lag_s": settings.late_lag_s,
                    "threshold": settings.late_share_warn,
                },
                None
                if ok
                else f"{r.share:.1%} of events arrived more than {settings.late_lag_s}s late "
                f"(threshold {settings.late_share_warn:.1%})",
            )
        )
    yield from emit(context, dg.AssetCheckSeverity.WARN, results)


@dg.asset_check(
    asset=EVENT_ROLLUPS.key,
    partitions_def=daily_partitions,
    description="Dead letters recorded on the day / (dead letters + events landed on the day) stays within "
    "orchestration.dead_letter_rate_warn (WARN otherwise).",
)
def dead_letter_rate_within_threshold(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    settings = get_settings().orchestration
    days = check_days(context)
    with warehouse.connection() as conn:
        reports = [dead_letter_rate(conn, day) for day in days]
    results = []
    for r in reports:
        ok = r.rate <= settings.dead_letter_rate_warn
        results.append(
            DayResult(
                r.day,
                ok,
                {
                    "dead_letters": r.dead_letters,
                    "landed": r.landed,
                    "rate": r.rate,
                    "threshold": settings.dead_letter_rate_warn,
                    "by_reason": json_md(r.by_reason),
                },
                None
                if ok
                else f"dead-letter rate {r.rate:.2%} (threshold {settings.dead_letter_rate_warn:.2%})",
            )
        )
    yield from emit(context, dg.AssetCheckSeverity.WARN, results)
