"""Data-quality measurements of one UTC day of the warehouse (the SQL behind the Dagster asset checks).

Every function takes an autocommit connection and a UTC day and returns a small frozen dataclass; judging
the numbers (thresholds, severities) is the caller's business. Scans of `events` are pruned to the day's
partition (to the few partitions that received rows that day, for the landing-time count), the aggregate
tables are read through their day/bucket indexes. The ledger comparison probes or hashes `event_ids`,
which has no time index: on a large warehouse that query is the expensive one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

import psycopg

from warehouse.aggregates import day_bounds
from warehouse.partitions import is_attached

SAMPLES = 10


def disable_jit(conn: psycopg.Connection) -> None:
    """JIT off for the session: compiling the plan of a statement over a range of day partitions (one LATERAL
    per day) costs more than running it (90 days: reconciliation 4.0 s -> 0.4 s, dead letters 5.1 -> 0.02 s)."""
    conn.execute("SELECT set_config('jit', 'off', false)")


def _params(day: date, **extra: Any) -> dict[str, Any]:
    start, end = day_bounds(day)
    return {"day": day, "start": start, "end": end, **extra}


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


# Every statement over several days starts from the days as rows (`d.day`, `d.start`) and scans `events`
# through a LATERAL per day, so run-time partition pruning reads exactly the days' partitions, however sparse.
_LEDGER_COUNTS = """
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day),
e AS MATERIALIZED (
    SELECT d.day, x.project_id, x.event_id, x.event_time
    FROM d CROSS JOIN LATERAL (
        SELECT project_id, event_id, event_time FROM events
        WHERE event_time >= d.start AND event_time < d.start + interval '1 day'
    ) x
)
SELECT e.day, count(*) AS events, count(*) FILTER (WHERE i.project_id IS NULL) AS missing,
       count(*) FILTER (WHERE i.event_time <> e.event_time) AS mismatch
FROM e LEFT JOIN event_ids i USING (project_id, event_id) GROUP BY e.day
"""

# The ledger comparison alone decides the check (`DuplicateReport.count` counts every extra copy of a pair), so
# the pairs, which groups every row by event id, are counted only for the days the ledger flags.
_DUPLICATE_COUNTS = """
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day),
k AS (
    SELECT d.day, count(*) AS n FROM d CROSS JOIN LATERAL (
        SELECT project_id, event_id FROM events
        WHERE event_time >= d.start AND event_time < d.start + interval '1 day'
    ) x
    GROUP BY d.day, x.project_id, x.event_id
)
SELECT day, count(*) FILTER (WHERE n > 1), coalesce(sum(n - 1) FILTER (WHERE n > 1), 0)::bigint
FROM k GROUP BY day
"""

_DUPLICATE_SAMPLES = """
SELECT project_id, event_id, count(*), array_agg(event_time ORDER BY event_time)
FROM events WHERE event_time >= %(start)s AND event_time < %(end)s
GROUP BY project_id, event_id HAVING count(*) > 1
ORDER BY count(*) DESC, project_id, event_id
LIMIT %(limit)s
"""

_LEDGER_SAMPLES = """
SELECT e.project_id, e.event_id, e.event_time, i.event_time
FROM events e LEFT JOIN event_ids i USING (project_id, event_id)
WHERE e.event_time >= %(start)s AND e.event_time < %(end)s
  AND (i.project_id IS NULL OR i.event_time <> e.event_time)
ORDER BY e.event_time, e.project_id, e.event_id
LIMIT %(limit)s
"""


def duplicate_event_ids_days(conn: psycopg.Connection, days: list[date]) -> dict[date, DuplicateReport]:
    """Exactly-once violations per day among the days' raw events: duplicated (project_id, event_id) pairs,
    and rows the `event_ids` ledger does not account for (no ledger row, or one with another event time).
    One statement for all the days, a second for the days the ledger flags; samples only for failing days."""
    ledger = {r[0]: r[1:] for r in conn.execute(_LEDGER_COUNTS, {"days": list(days)}).fetchall()}
    suspect = [day for day, (_, missing, mismatch) in ledger.items() if missing or mismatch]
    dups = (
        {r[0]: r[1:] for r in conn.execute(_DUPLICATE_COUNTS, {"days": suspect}).fetchall()}
        if suspect
        else {}
    )
    out = {}
    for day in days:
        events, missing, mismatch = ledger.get(day, (0, 0, 0))
        dup_keys, extra = dups.get(day, (0, 0))
        samples: list[dict[str, Any]] = []
        params = _params(day, limit=SAMPLES)
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
        out[day] = DuplicateReport(day, events, dup_keys, extra, missing, mismatch, samples)
    return out


def duplicate_event_ids(conn: psycopg.Connection, day: date) -> DuplicateReport:
    """`duplicate_event_ids_days` for one day."""
    return duplicate_event_ids_days(conn, [day])[day]


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
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day),
raw AS (
    SELECT d.day, r.project_id, r.events, r.users FROM d CROSS JOIN LATERAL (
        SELECT project_id, count(*) AS events, count(DISTINCT distinct_id) AS users FROM events
        WHERE event_time >= d.start AND event_time < d.start + interval '1 day' GROUP BY 1
    ) r
), roll AS (
    SELECT d.day, r.project_id, r.events FROM d CROSS JOIN LATERAL (
        SELECT project_id, sum(events) AS events FROM event_rollups
        WHERE bucket >= d.start AND bucket < d.start + interval '1 day' GROUP BY 1
    ) r
), act AS (
    SELECT day, project_id, count(*) AS users FROM user_activity WHERE day = ANY(%(days)s) GROUP BY 1, 2
), agg AS (
    SELECT date AS day, project_id,
           max(value) FILTER (WHERE metric = 'events' AND dimensions = '{}'::jsonb) AS events,
           max(value) FILTER (WHERE metric = 'unique_users') AS users
    FROM daily_aggregates WHERE date = ANY(%(days)s) AND metric IN ('events', 'unique_users') GROUP BY 1, 2
), landed AS (
    SELECT day, project_id, version FROM landed_days WHERE day = ANY(%(days)s)
), built AS (
    SELECT day, project_id, built_version FROM aggregate_builds WHERE day = ANY(%(days)s)
), p AS (
    SELECT day, project_id FROM raw UNION SELECT day, project_id FROM roll UNION SELECT day, project_id FROM act
    UNION SELECT day, project_id FROM agg UNION SELECT day, project_id FROM landed
    UNION SELECT day, project_id FROM built
)
SELECT p.day, p.project_id::text, landed.version, built.built_version,
       coalesce(raw.events, 0), coalesce(roll.events, 0)::bigint, agg.events,
       coalesce(raw.users, 0), coalesce(act.users, 0), agg.users
FROM p
LEFT JOIN raw USING (day, project_id) LEFT JOIN roll USING (day, project_id)
LEFT JOIN act USING (day, project_id) LEFT JOIN agg USING (day, project_id)
LEFT JOIN landed USING (day, project_id) LEFT JOIN built USING (day, project_id)
ORDER BY 1, 2
"""


def reconciliation_days(conn: psycopg.Connection, days: list[date]) -> dict[date, ReconciliationReport]:
    """Per day and project, raw events and distinct users against `event_rollups`, `user_activity` and
    the built-in `daily_aggregates` metrics, in one statement for all the days.

    Only projects whose aggregates were built from the data currently landed (landed_days.version ==
    aggregate_builds.built_version) can be expected to match; the others are `pending_rebuild` (the late-data
    sensor rebuilds them). Projects without a landed-day row (rows not written by landing) are compared.
    A day whose raw partition is no longer attached (retention) is not compared at all.
    """
    by_day: dict[date, list[ProjectCounts]] = {day: [] for day in days}
    for day, *row in conn.execute(_RECONCILE, {"days": list(days)}).fetchall():
        by_day[day].append(ProjectCounts(*row))
    out = {}
    for day, rows in by_day.items():
        raw_events = sum(r.raw_events for r in rows)
        if rows and not is_attached(conn, day):
            out[day] = ReconciliationReport(day, False, 0, [], [], raw_events)
            continue
        pending = [r for r in rows if r.pending_reason]
        compared = [r for r in rows if not r.pending_reason]
        mismatches = [r for r in compared if not r.consistent]
        out[day] = ReconciliationReport(day, True, len(compared), mismatches, pending, raw_events)
    return out


def reconciliation(conn: psycopg.Connection, day: date) -> ReconciliationReport:
    """`reconciliation_days` for one day."""
    return reconciliation_days(conn, [day])[day]


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


_LATE = """
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day)
SELECT d.day, x.events, x.late FROM d CROSS JOIN LATERAL (
    SELECT count(*) AS events,
           count(*) FILTER (WHERE received_at - event_time > %(lag)s * interval '1 second') AS late
    FROM events WHERE event_time >= d.start AND event_time < d.start + interval '1 day'
) x
"""


def late_arrivals_days(conn: psycopg.Connection, days: list[date], lag_s: float) -> dict[date, LateArrivals]:
    """Per day, events (by event time) received more than `lag_s` seconds after their event time."""
    rows = conn.execute(_LATE, {"days": list(days), "lag": lag_s}).fetchall()
    return {day: LateArrivals(day, lag_s, events, late) for day, events, late in rows}


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


# `landed_at` is not the partition key and has no index. A row landed on a day belongs to a day whose
# landed_days row spans that moment (first_landed_at <= landed_at <= last_landed_at, stamped in the landing
# transaction), so only those days' partitions are scanned, one at a time (run-time partition pruning), each
# once for all the landing days it can hold rows of.
_DEAD_LETTER_RATE = """
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day),
dead AS (
    SELECT d.day, x.reason, x.n FROM d CROSS JOIN LATERAL (
        SELECT reason, count(*) AS n FROM dead_letters
        WHERE dead_at >= d.start AND dead_at < d.start + interval '1 day' GROUP BY 1
    ) x
), sources AS (
    SELECT DISTINCT l.day AS source FROM landed_days l, d
    WHERE l.first_landed_at < d.start + interval '1 day' AND l.last_landed_at >= d.start
), landed AS (
    SELECT (c.landed_at AT TIME ZONE 'UTC')::date AS day, count(*) AS n
    FROM sources s CROSS JOIN LATERAL (
        SELECT landed_at FROM events
        WHERE event_time >= (s.source::timestamp AT TIME ZONE 'UTC')
          AND event_time < ((s.source + 1)::timestamp AT TIME ZONE 'UTC')
          AND landed_at >= (SELECT min(start) FROM d) AND landed_at < (SELECT max(start) FROM d) + interval '1 day'
    ) c
    GROUP BY 1
)
SELECT d.day, coalesce((SELECT n FROM landed WHERE landed.day = d.day), 0)::bigint,
       coalesce((SELECT jsonb_object_agg(reason, n) FROM dead WHERE dead.day = d.day), '{}'::jsonb)
FROM d
"""


def dead_letter_rate_days(conn: psycopg.Connection, days: list[date]) -> dict[date, DeadLetterRate]:
    """Per day, dead letters recorded on the day against events landed on the day (landing time, not event
    time), in one statement for all the days."""
    out = {}
    for day, landed, reasons in conn.execute(_DEAD_LETTER_RATE, {"days": list(days)}).fetchall():
        by_reason = dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
        out[day] = DeadLetterRate(day, sum(by_reason.values()), landed, by_reason)
    return out


# --- inputs of the Great Expectations suite -------------------------------------------------------------

RAW_COLUMNS = ("day", "project_id", "event_id", "event_name", "distinct_id", "event_time")
AGGREGATE_COLUMNS = ("org_id", "project_id", "metric", "date", "dimensions", "value", "events")
NAME_COLUMNS = ("day", "event_name", "events", "known")  # known: NULL when the day has no name history
VOLUME_COLUMNS = ("day", "events", "history_days", "history_mean", "ratio")  # ratio: NULL without history


@dataclass(frozen=True)
class ExpectationInputs:
    """The days' data for the expectation suite, one frame each for all the days: raw rows and aggregate rows
    (sampled above `cap` rows in all), exact per-day per-name counts with whether the name was seen in the
    previous `name_days` days, and per-day volume against the mean of up to `volume_days` earlier days."""

    days: list[date]
    raw_totals: dict[date, int]
    raw_rows: list[tuple]
    aggregate_totals: dict[date, int]
    aggregate_rows: list[tuple]
    names: list[tuple]  # NAME_COLUMNS
    volumes: list[tuple]  # VOLUME_COLUMNS

    @property
    def raw_total(self) -> int:
        return sum(self.raw_totals.values())

    @property
    def aggregate_total(self) -> int:
        return sum(self.aggregate_totals.values())

    @property
    def raw_sampled(self) -> bool:
        return len(self.raw_rows) < self.raw_total

    @property
    def aggregates_sampled(self) -> bool:
        return len(self.aggregate_rows) < self.aggregate_total


# random() < fraction keeps every row when fraction >= 1; LIMIT holds the cap when sampling overshoots.
_RAW_ROWS = """
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day)
SELECT d.day, x.project_id::text, x.event_id::text, x.event_name, x.distinct_id, x.event_time
FROM d CROSS JOIN LATERAL (
    SELECT * FROM events
    WHERE event_time >= d.start AND event_time < d.start + interval '1 day' AND random() < %(fraction)s
) x
LIMIT %(cap)s
"""

_AGGREGATE_COUNTS = "SELECT date, count(*) FROM daily_aggregates WHERE date = ANY(%(days)s) GROUP BY 1"

_AGGREGATE_ROWS = """
SELECT org_id::text, project_id::text, metric, date, dimensions::text, value, events
FROM daily_aggregates WHERE date = ANY(%(days)s) AND random() < %(fraction)s
LIMIT %(cap)s
"""

# Names and volumes of the days, each judged against event_rollups of the `name_days` days before it: the
# rollups are read once for the whole window (per UTC day and name), not once per day.
_NAMES_AND_VOLUMES = """
WITH d AS (SELECT day, (day::timestamp AT TIME ZONE 'UTC') AS start FROM unnest(%(days)s::date[]) AS day),
n AS (
    SELECT d.day, x.event_name, x.events FROM d CROSS JOIN LATERAL (
        SELECT event_name, count(*) AS events FROM events
        WHERE event_time >= d.start AND event_time < d.start + interval '1 day' GROUP BY 1
    ) x
), hist AS (
    SELECT (bucket AT TIME ZONE 'UTC')::date AS day, event_name, sum(events) AS events FROM event_rollups
    WHERE bucket >= (SELECT min(start) FROM d) - %(name_days)s * interval '1 day'
      AND bucket < (SELECT max(start) FROM d)
    GROUP BY 1, 2
), hist_days AS (
    SELECT day, sum(events) AS events FROM hist GROUP BY 1 HAVING sum(events) > 0
)
SELECT 'name', n.day, n.event_name, n.events,
       CASE WHEN EXISTS (SELECT 1 FROM hist h WHERE h.day >= n.day - %(name_days)s AND h.day < n.day)
            THEN EXISTS (SELECT 1 FROM hist h WHERE h.event_name = n.event_name
                         AND h.day >= n.day - %(name_days)s AND h.day < n.day) END,
       NULL::int, NULL::double precision
FROM n
UNION ALL
SELECT 'volume', d.day, NULL, coalesce((SELECT sum(events) FROM n WHERE n.day = d.day), 0)::bigint,
       NULL::boolean, v.days, v.mean
FROM d CROSS JOIN LATERAL (
    SELECT count(*)::int AS days, avg(events)::double precision AS mean FROM (
        SELECT events FROM hist_days h WHERE h.day >= d.day - %(name_days)s AND h.day < d.day
        ORDER BY h.day DESC LIMIT %(volume_days)s
    ) r
) v
ORDER BY 1, 2, 3
"""


def _fraction(total: int, cap: int) -> float:
    return 1.0 if total <= cap else min(1.0, 1.05 * cap / total)


def expectation_inputs(
    conn: psycopg.Connection, days: list[date], cap: int = 200_000, name_days: int = 30, volume_days: int = 7
) -> ExpectationInputs:
    """What the expectation suite validates for `days`, read in a handful of statements for all of them."""
    params = {"days": list(days), "cap": cap, "name_days": name_days, "volume_days": volume_days}
    names, volumes = [], []
    for kind, day, name, events, known, history_days, mean in conn.execute(_NAMES_AND_VOLUMES, params):
        if kind == "name":
            names.append((day, name, int(events), known))
        else:
            ratio = events / mean if mean else None
            volumes.append((day, int(events), history_days, mean, ratio))
    raw_totals = {day: events for day, events, *_ in volumes}
    raw_rows = conn.execute(
        _RAW_ROWS, {**params, "fraction": _fraction(sum(raw_totals.values()), cap)}
    ).fetchall()
    aggregate_totals = {day: 0 for day in days} | dict(conn.execute(_AGGREGATE_COUNTS, params).fetchall())
    aggregate_rows = conn.execute(
        _AGGREGATE_ROWS, {**params, "fraction": _fraction(sum(aggregate_totals.values()), cap)}
    ).fetchall()
    return ExpectationInputs(
        list(days), raw_totals, raw_rows, aggregate_totals, aggregate_rows, names, volumes
    )
