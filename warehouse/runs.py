"""The retry ledger of the orchestration sensors (`run_failures`): which days a rebuild or cold export
failed for, how often, and when the next attempt is due.

Dagster spends a run key once: a run that failed or was killed would otherwise leave its day waiting for new
data to change the key. The sensors record each finished run's outcome here per day: still stale with the
same data key -> one more failure, exponential backoff, given up after `max_attempts` (until the data
changes); brought up to date -> the row goes. The pipeline page and /metrics read the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import psycopg
from psycopg.rows import class_row

REBUILD = "aggregates"
COLD_EXPORT = "cold_export"


@dataclass(frozen=True)
class RunFailure:
    job: str
    day: date
    data_key: str
    failures: int
    first_failed_at: datetime
    last_failed_at: datetime
    next_attempt_at: datetime | None  # None: given up until the day's data changes
    last_run_id: str | None
    last_error: str | None

    @property
    def given_up(self) -> bool:
        return self.next_attempt_at is None


_RECORD = """
INSERT INTO run_failures AS f
    (job, day, data_key, failures, first_failed_at, last_failed_at, next_attempt_at, last_run_id, last_error)
VALUES (%(job)s, %(day)s, %(key)s, 1, now(), now(),
        CASE WHEN %(max)s <= 1 THEN NULL ELSE now() + %(backoff)s * interval '1 second' END, %(run)s, %(error)s)
ON CONFLICT (job, day) DO UPDATE SET
    failures = CASE WHEN f.data_key = EXCLUDED.data_key THEN f.failures + 1 ELSE 1 END,
    first_failed_at = CASE WHEN f.data_key = EXCLUDED.data_key THEN f.first_failed_at ELSE now() END,
    next_attempt_at = CASE
        WHEN f.data_key <> EXCLUDED.data_key THEN EXCLUDED.next_attempt_at
        WHEN f.failures + 1 >= %(max)s THEN NULL
        ELSE now() + least(%(cap)s, %(backoff)s * power(2, f.failures)) * interval '1 second'
    END,
    data_key = EXCLUDED.data_key, last_failed_at = now(), last_run_id = EXCLUDED.last_run_id,
    last_error = EXCLUDED.last_error
WHERE f.last_run_id IS DISTINCT FROM EXCLUDED.last_run_id  -- one run counts once
"""


def record_failure(
    conn: psycopg.Connection,
    job: str,
    days: dict[date, str],
    run_id: str,
    error: str,
    backoff_s: float,
    max_attempts: int,
    backoff_cap_s: float = 3600,
) -> None:
    """One more failure of `run_id` for each day (with the data key the run covered)."""
    with conn.transaction():
        for day, key in sorted(days.items()):
            conn.execute(
                _RECORD,
                {"job": job, "day": day, "key": key, "run": run_id, "error": error[:2000],
                 "backoff": backoff_s, "cap": backoff_cap_s, "max": max_attempts},
            )  # fmt: skip


def clear_failures(conn: psycopg.Connection, job: str, days: list[date]) -> int:
    """The days are up to date (or their data moved on): forget their failures."""
    if not days:
        return 0
    return conn.execute("DELETE FROM run_failures WHERE job = %s AND day = ANY(%s)", (job, days)).rowcount


def run_failures(conn: psycopg.Connection, job: str | None = None) -> list[RunFailure]:
    with conn.cursor(row_factory=class_row(RunFailure)) as cur:
        return cur.execute(
            "SELECT * FROM run_failures WHERE %(job)s::text IS NULL OR job = %(job)s ORDER BY job, day",
            {"job": job},
        ).fetchall()


def failure_counts(conn: psycopg.Connection) -> list[tuple[str, int, int]]:
    """(job, days failing and still retried, days given up) for /metrics."""
    return conn.execute(
        "SELECT job, count(*) FILTER (WHERE next_attempt_at IS NOT NULL)::int, "
        "count(*) FILTER (WHERE next_attempt_at IS NULL)::int FROM run_failures GROUP BY job ORDER BY job"
    ).fetchall()
