"""Data-quality measurements of one UTC day of the warehouse (the SQL behind the Dagster asset checks).

Every function takes an autocommit connection and a UTC day and returns a small frozen dataclass; judging
the numbers (thresholds, severities) is the caller's business. Scans of `events` are pruned to the day's
partition (to the few partitions that received rows that day, for the landing-time count), the aggregate
tables are read through their day/bucket indexes. The ledger comparison probes or hashes `event_ids`,
which has no time index: on a large warehouse that query is the expensive one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import psycopg

from warehouse.aggregates import day_bounds
from warehouse.partitions import partition_name

SAMPLES = 10


def _params(day: date, **extra: Any) -> dict[str, Any]:
    start, end = day_bounds(day)
    return {"day": day, "start": start, "end": end, **extra}


def raw_partition_attached(conn: psycopg.Connection, day: date) -> bool:
    """Whether the day's raw partition is part of `events` (retention detaches old ones; a day that never
    received data may have none at all)."""
    return conn.execute(
        """
        SELECT EXISTS (
            SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
            WHERE i.inhparent = 'events'::regclass AND c.relname = %s
        )
        """,
        (partition_name(day),),
    ).fetchone()[0]


# --- duplicates and the dedup ledger -------------------------------------------------------------------


@dataclass(frozen=True)
class DuplicateReport:
    day: date
    events: int
    duplicate_keys: int  # (project_id, event_id) pairs stored more than once in the day
    extra_rows: int  # rows beyond the first of each duplicated pair
    missing_from_ledger: int  # rows of the day whose (project_id, event_id) has no `event_ids` row
    ledger_time_mismatch: int  # rows whose ledger row records another event_time (a copy landed elsewhere)
    samples: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        """Rows of the day the ledger does not vouch for. Every extra copy of a duplicated pair is one of
        them (the primary key includes event_time, so at most one copy can carry the ledger's time), and so
        is a copy whose twin lies on another day, which the per-day duplicate count cannot see."""
        return self.missing_from_ledger + self.ledger_time_mismatch

    @property
    def ok(self) -> bool:
        return self.count == 0


_DUPLICATE_COUNTS = """
SELECT coalesce(sum(n), 0)::bigint, count(*) FILTER (WHERE n > 1), coalesce(sum(n - 1) FILTER (WHERE n > 1), 0)::bigint
FROM (
    SELECT count(*) AS n FROM events
    WHERE event_time >= %(start)s AND event_time < %(end)s
    GROUP BY project_id, event_id
) k
"""

_DUPLICATE_SAMPLES = """
SELECT project_id, event_id, count(*), array_agg(event_time ORDER BY event_time)
FROM events WHERE event_time >= %(start)s AND event_time < %(end)s
GROUP BY project_id, event_id HAVING count(*) > 1
ORDER BY count(*) DESC, project_id, event_id
LIMIT %(limit)s
"""

_LEDGER_COUNTS = """
SELECT count(*) FILTER (WHERE i.project_id IS NULL),
       count(*) FILTER (WHERE i.event_time <> e.event_time)
FROM events e LEFT JOIN event_ids i USING (project_id, event_id)
WHERE e.event_time >= %(start)s AND e.event_time < %(end)s
"""

_LEDGER_SAMPLES = """
SELECT e.project_id, e.event_id, e.event_time, i.event_time
FROM events e LEFT JOIN event_ids i USING (project_id, event_id)
WHERE e.event_time >= %(start)s AND e.event_time < %(end)s
  AND (i.project_id IS NULL OR i.event_time <> e.event_time)
ORDER BY e.event_time, e.project_id, e.event_id
LIMIT %(limit)s
"""


def duplicate_event_ids(conn: psycopg.Connection, day: date) -> DuplicateReport:
    """Exactly-once violations among the day's raw events: duplicated (project_id, event_id) pairs, and
    rows the `event_ids` ledger does not account for (no ledger row, or one with another event time)."""
    params = _params(day, limit=SAMPLES)
    events, dup_keys, extra = conn.execute(_DUPLICATE_COUNTS, params).fetchone()
    missing, mismatch = conn.execute(_LEDGER_COUNTS, params).fetchone()
    samples: list[dict[str, Any]] = []
    if dup_keys:
        samples += [
            {
                "kind": "duplicate",
                "project_id": str(project),
                "event_id": str(event),
                "rows": n,
                "event_times": [t.isoformat() for t in times],
            }
            for project, event, n, times in conn.execute(_DUPLICATE_SAMPLES, params)
        ]
    if (missing or mismatch) and len(samples) < SAMPLES:
        params["limit"] = SAMPLES - len(samples)
        samples += [
            {
                "kind": "missing_from_ledger" if ledger_time is None else "ledger_time_mismatch",
                "project_id": str(project),
                "event_id": str(event),
                "event_time": event_time.isoformat(),
                "ledger_event_time": ledger_time.isoformat() if ledger_time else None,
            }
            for project, event, event_time, ledger_time in conn.execute(_LEDGER_SAMPLES, params)
        ]
    return DuplicateReport(day, events, dup_keys, extra, missing, mismatch, samples)


# --- aggregates vs raw -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectCounts:
    project_id: str
    landed_version: int | None
    built_version: int | None
    raw_events: int
    rollup_events: int
    aggregate_events: float | None  # daily_aggregates 'events' {} value (None: no row)
    raw_users: int
    activity_users: int  # user_activity rows of the day
    aggregate_users: float | None  # daily_aggregates 'unique_users' value (None: no row)

    @property
    def pending_reason(self) -> str | None:
        """Why the aggregates may legitimately differ from raw: data landed after (or without) a build."""
        if self.landed_version is None:  # rows that did not come through landing: nothing is pending
            return None
        if self.built_version is None:
            return "never_built"
        if self.landed_version != self.built_version:
            return "late_data"
        return None

    @property
    def consistent(self) -> bool:
        events = self.raw_events
        users = self.raw_users
        return (
            self.rollup_events == events
            and (self.aggregate_events or 0) == events
            and self.activity_users == users
            and (self.aggregate_users or 0) == users
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "landed_version": self.landed_version,
            "built_version": self.built_version,
            "raw_events": self.raw_events,
            "rollup_events": self.rollup_events,
            "aggregate_events": self.aggregate_events,
            "raw_users": self.raw_users,
            "activity_users": self.activity_users,
            "aggregate_users": self.aggregate_users,
        }


@dataclass(frozen=True)
class ReconciliationReport:
    day: date
    raw_available: bool  # False: aggregates exist but the raw partition is gone (retention): not compared
    compared: int
    mismatches: list[ProjectCounts]
    pending_rebuild: list[ProjectCounts]
    raw_events: int

    @property
    def ok(self) -> bool:
        return not self.mismatches


_RECONCILE = """
WITH raw AS (
    SELECT project_id, count(*) AS events, count(DISTINCT distinct_id) AS users
    FROM events WHERE event_time >= %(start)s AND event_time < %(end)s GROUP BY 1
), roll AS (
    SELECT project_id, sum(events) AS events
    FROM event_rollups WHERE bucket >= %(start)s AND bucket < %(end)s GROUP BY 1
), act AS (
    SELECT project_id, count(*) AS users FROM user_activity WHERE day = %(day)s GROUP BY 1
), agg AS (
    SELECT project_id,
           max(value) FILTER (WHERE metric = 'events' AND dimensions = '{}'::jsonb) AS events,
           max(value) FILTER (WHERE metric = 'unique_users') AS users
    FROM daily_aggregates WHERE date = %(day)s AND metric IN ('events', 'unique_users') GROUP BY 1
), landed AS (
    SELECT project_id, version FROM landed_days WHERE day = %(day)s
), built AS (
    SELECT project_id, built_version FROM aggregate_builds WHERE day = %(day)s
), p AS (
    SELECT project_id FROM raw UNION SELECT project_id FROM roll UNION SELECT project_id FROM act
    UNION SELECT project_id FROM agg UNION SELECT project_id FROM landed UNION SELECT project_id FROM built
)
SELECT p.project_id::text, landed.version, built.built_version,
       coalesce(raw.events, 0), coalesce(roll.events, 0)::bigint, agg.events,
       coalesce(raw.users, 0), coalesce(act.users, 0), agg.users
FROM p
LEFT JOIN raw USING (project_id) LEFT JOIN roll USING (project_id) LEFT JOIN act USING (project_id)
LEFT JOIN agg USING (project_id) LEFT JOIN landed USING (project_id) LEFT JOIN built USING (project_id)
ORDER BY 1
"""


def reconciliation(conn: psycopg.Connection, day: date) -> ReconciliationReport:
    """Per project, the day's raw events and distinct users against `event_rollups`, `user_activity` and
    the built-in `daily_aggregates` metrics.

    Only projects whose aggregates were built from the data currently landed (landed_days.version ==
    aggregate_builds.built_version) can be expected to match; the others are `pending_rebuild` (the late-data
    sensor rebuilds them). Projects without a landed-day row (rows not written by landing) are compared.
    A day whose raw partition is no longer attached (retention) is not compared at all.
    """
    rows = [ProjectCounts(*r) for r in conn.execute(_RECONCILE, _params(day)).fetchall()]
    raw_events = sum(r.raw_events for r in rows)
    if rows and not raw_partition_attached(conn, day):
        return ReconciliationReport(day, False, 0, [], [], raw_events)
    pending = [r for r in rows if r.pending_reason]
    compared = [r for r in rows if not r.pending_reason]
    mismatches = [r for r in compared if not r.consistent]
    return ReconciliationReport(day, True, len(compared), mismatches, pending, raw_events)


# --- late arrivals ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LateArrivals:
    day: date
    lag_s: float
    events: int
    late: int

    @property
    def share(self) -> float:
        return self.late / self.events if self.events else 0.0


def late_arrivals(conn: psycopg.Connection, day: date, lag_s: float) -> LateArrivals:
    """Events of the day (by event time) received more than `lag_s` seconds after their event time."""
    events, late = conn.execute(
        """
        SELECT count(*), count(*) FILTER (WHERE received_at - event_time > %(lag)s * interval '1 second')
        FROM events WHERE event_time >= %(start)s AND event_time < %(end)s
        """,
        _params(day, lag=lag_s),
    ).fetchone()
    return LateArrivals(day, lag_s, events, late)


# --- dead letters ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterRate:
    day: date
    dead_letters: int  # dead_at on the day
    landed: int  # events with landed_at on the day, whatever their event time
    by_reason: dict[str, int] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        total = self.dead_letters + self.landed
        return self.dead_letters / total if total else 0.0


# `landed_at` is not the partition key and has no index. A row landed on the day belongs to a day whose
# landed_days row spans that moment (first_landed_at <= landed_at <= last_landed_at, stamped in the landing
# transaction), so only those days' partitions are scanned, one at a time (run-time partition pruning).
_LANDED_ON_DAY = """
SELECT coalesce(sum(c.n), 0)::bigint
FROM (
    SELECT DISTINCT day FROM landed_days
    WHERE first_landed_at < %(end)s AND last_landed_at >= %(start)s
) d
CROSS JOIN LATERAL (
    SELECT count(*) AS n FROM events
    WHERE event_time >= (d.day::timestamp AT TIME ZONE 'UTC')
      AND event_time < ((d.day + 1)::timestamp AT TIME ZONE 'UTC')
      AND landed_at >= %(start)s AND landed_at < %(end)s
) c
"""


def dead_letter_rate(conn: psycopg.Connection, day: date) -> DeadLetterRate:
    """Dead letters recorded on the day against events landed on the day (landing time, not event time)."""
    params = _params(day)
    by_reason = dict(
        conn.execute(
            "SELECT reason, count(*) FROM dead_letters WHERE dead_at >= %(start)s AND dead_at < %(end)s "
            "GROUP BY 1 ORDER BY 2 DESC, 1",
            params,
        ).fetchall()
    )
    landed = conn.execute(_LANDED_ON_DAY, params).fetchone()[0]
    return DeadLetterRate(day, sum(by_reason.values()), landed, by_reason)


# --- inputs of the Great Expectations suite -------------------------------------------------------------

RAW_COLUMNS = ("project_id", "event_id", "event_name", "distinct_id", "event_time")
AGGREGATE_COLUMNS = ("org_id", "project_id", "metric", "date", "dimensions", "value", "events")


@dataclass(frozen=True)
class ExpectationInputs:
    """The day's data for the expectation suite: raw rows (sampled above `cap`), aggregate rows (same cap),
    exact per-name event counts of the day, and the history the day is judged against."""

    day: date
    raw_total: int
    raw_rows: list[tuple]
    aggregate_total: int
    aggregate_rows: list[tuple]
    names: list[tuple[str, int]]  # (event_name, events) of the whole day, from raw
    known_names: list[str]  # names in event_rollups over the previous `name_days` days
    history_days: list[tuple[date, int]]  # up to `volume_days` most recent earlier days with data

    @property
    def raw_sampled(self) -> bool:
        return len(self.raw_rows) < self.raw_total

    @property
    def aggregates_sampled(self) -> bool:
        return len(self.aggregate_rows) < self.aggregate_total

    @property
    def history_mean(self) -> float | None:
        if not self.history_days:
            return None
        return sum(n for _, n in self.history_days) / len(self.history_days)


# random() < fraction keeps every row when fraction >= 1; LIMIT holds the cap when sampling overshoots.
_RAW_ROWS = """
SELECT project_id::text, event_id::text, event_name, distinct_id, event_time
FROM events WHERE event_time >= %(start)s AND event_time < %(end)s AND random() < %(fraction)s
LIMIT %(cap)s
"""

_AGGREGATE_ROWS = """
SELECT org_id::text, project_id::text, metric, date, dimensions::text, value, events
FROM daily_aggregates WHERE date = %(day)s AND random() < %(fraction)s
LIMIT %(cap)s
"""

_KNOWN_NAMES = """
SELECT DISTINCT event_name FROM event_rollups
WHERE bucket >= %(history_start)s AND bucket < %(start)s ORDER BY 1
"""

_HISTORY_DAYS = """
SELECT (bucket AT TIME ZONE 'UTC')::date AS day, sum(events)::bigint
FROM event_rollups WHERE bucket >= %(history_start)s AND bucket < %(start)s
GROUP BY 1 HAVING sum(events) > 0 ORDER BY 1 DESC LIMIT %(volume_days)s
"""


def _fraction(total: int, cap: int) -> float:
    return 1.0 if total <= cap else min(1.0, 1.05 * cap / total)


def expectation_inputs(
    conn: psycopg.Connection, day: date, cap: int = 200_000, name_days: int = 30, volume_days: int = 7
) -> ExpectationInputs:
    history_start, _ = day_bounds(day - timedelta(days=name_days))
    params = _params(day, cap=cap, history_start=history_start, volume_days=volume_days)
    names = conn.execute(
        "SELECT event_name, count(*) FROM events WHERE event_time >= %(start)s AND event_time < %(end)s "
        "GROUP BY 1 ORDER BY 1",
        params,
    ).fetchall()
    raw_total = sum(n for _, n in names)
    raw_rows = conn.execute(_RAW_ROWS, {**params, "fraction": _fraction(raw_total, cap)}).fetchall()
    aggregate_total = conn.execute(
        "SELECT count(*) FROM daily_aggregates WHERE date = %(day)s", params
    ).fetchone()[0]
    aggregate_rows = conn.execute(
        _AGGREGATE_ROWS, {**params, "fraction": _fraction(aggregate_total, cap)}
    ).fetchall()
    known = [n for (n,) in conn.execute(_KNOWN_NAMES, params)]
    history = [(d, n) for d, n in conn.execute(_HISTORY_DAYS, params)]
    return ExpectationInputs(day, raw_total, raw_rows, aggregate_total, aggregate_rows, names, known, history)
