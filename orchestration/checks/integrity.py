"""Asset checks on the raw data behind the aggregates and on the aggregates themselves, per UTC day.

The two integrity checks are blocking with ERROR severity (a failed one fails the run, and nothing downstream
of the asset materialises); the two rate checks only WARN. Each measures all the run's days in one
statement (warehouse/quality.py) and reports one result per day.
"""

# No `from __future__ import annotations`: Dagster rejects a postponed (string) `context` annotation.

from datetime import date

import dagster as dg
import psycopg

from orchestration.assets.aggregates import DAILY_AGGREGATES, EVENT_ROLLUPS
from orchestration.checks.common import SAMPLES, DayResult, day_check, json_md
from pulseops.settings import Settings
from warehouse.quality import (
    dead_letter_rate_days,
    duplicate_event_ids_days,
    late_arrivals_days,
    reconciliation_days,
)

ERROR, WARN = dg.AssetCheckSeverity.ERROR, dg.AssetCheckSeverity.WARN


@day_check(
    EVENT_ROLLUPS,
    severity=ERROR,
    blocking=True,
    description="Exactly-once holds for the day's raw events: no (project_id, event_id) stored twice, and "
    "every row accounted for by the event_ids ledger with the same event time.",
)
def no_duplicate_event_ids(conn: psycopg.Connection, days: list[date], _s: Settings) -> list[DayResult]:
    return [
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
        for r in duplicate_event_ids_days(conn, days).values()
    ]


@day_check(
    DAILY_AGGREGATES,
    severity=ERROR,
    blocking=True,
    description="Per project, the day's raw event count equals the rollups' total and the 'events' aggregate, "
    "and its distinct users equal user_activity and the 'unique_users' aggregate. Projects with data landed "
    "after their last build are reported as pending_rebuild, not as mismatches.",
)
def aggregates_reconcile_with_raw(
    conn: psycopg.Connection, days: list[date], _s: Settings
) -> list[DayResult]:
    return [
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
        for r in reconciliation_days(conn, days).values()
    ]


@day_check(
    EVENT_ROLLUPS,
    severity=WARN,
    description="Share of the day's events received more than orchestration.late_lag_s after their event "
    "time stays within orchestration.late_share_warn (WARN otherwise).",
)
def late_arrival_share_within_threshold(
    conn: psycopg.Connection, days: list[date], s: Settings
) -> list[DayResult]:
    settings = s.orchestration
    results = []
    for r in late_arrivals_days(conn, days, settings.late_lag_s).values():
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
    return results


@day_check(
    EVENT_ROLLUPS,
    severity=WARN,
    description="Dead letters recorded on the day / (dead letters + events landed on the day) stays within "
    "orchestration.dead_letter_rate_warn (WARN otherwise).",
)
def dead_letter_rate_within_threshold(
    conn: psycopg.Connection, days: list[date], s: Settings
) -> list[DayResult]:
    threshold = s.orchestration.dead_letter_rate_warn
    results = []
    for r in dead_letter_rate_days(conn, days).values():
        ok = r.rate <= threshold
        results.append(
            DayResult(
                r.day,
                ok,
                {
                    "dead_letters": r.dead_letters,
                    "landed": r.landed,
                    "rate": r.rate,
                    "threshold": threshold,
                    "by_reason": json_md(r.by_reason),
                },
                None if ok else f"dead-letter rate {r.rate:.2%} (threshold {threshold:.2%})",
            )
        )
    return results
