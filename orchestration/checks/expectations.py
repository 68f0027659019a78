"""A Great Expectations 1.x suite over the run's UTC days of raw events and daily aggregates, run directly (the
dagster-ge integration does not support GE 1.x) in an ephemeral context with usage analytics off.

great_expectations is imported inside the check: the import takes seconds, and loading the code location
(webserver, daemon, every run worker) must not pay for it.

One batch per frame for all the run's days (pandas DataFrames read with psycopg, warehouse/quality.py), so a
90-day backfill validates four batches, not 360; each failed row is attributed to its day through the
frame's `day` (or `date`) column, which gives the per-day results:
  raw_events        project_id, event_id, event_name, distinct_id, event_time not null, event time inside
                    the run's days. Sampled to RAW_ROW_CAP rows over the run (metadata says so).
  daily_aggregates  org_id, project_id, metric, date, value not null; value and events >= 0 (same cap).
  event_names       one row per day and event name (exact, never sampled): every name was seen in
                    event_rollups in the NAME_DAYS days before its day (`known`; NULL, so not judged, when
                    that day has no such history).
  day_volume        one row per day: its total is at most VOLUME_MAX_FACTOR x the mean of the latest
                    VOLUME_DAYS earlier days with data (`ratio`; NULL without history).
"""

# No `from __future__ import annotations`: Dagster rejects a postponed (string) `context` annotation.

import os
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import dagster as dg
import psycopg

from orchestration.assets.aggregates import DAILY_AGGREGATES
from orchestration.checks.common import SAMPLES, DayResult, day_check, json_md, jsonable
from pulseops.settings import Settings
from warehouse.quality import (
    AGGREGATE_COLUMNS,
    NAME_COLUMNS,
    RAW_COLUMNS,
    VOLUME_COLUMNS,
    ExpectationInputs,
    expectation_inputs,
)

RAW_ROW_CAP = 200_000
NAME_DAYS = 30
VOLUME_DAYS = 7
VOLUME_MAX_FACTOR = 10.0

RAW_NOT_NULL = ("project_id", "event_id", "event_name", "distinct_id", "event_time")
AGGREGATE_NOT_NULL = ("org_id", "project_id", "metric", "date", "value")
# the column whose values a failed expectation's sample shows, per batch
SAMPLE_COLUMN = {"event_names": "event_name", "day_volume": "events"}
DAY_COLUMN = {"daily_aggregates": "date"}


def import_gx():
    """great_expectations, imported with usage statistics off (orchestration/assets/aggregates.py imports it early)."""
    os.environ["GX_ANALYTICS_ENABLED"] = "false"  # before the first import: no usage statistics sent
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.data_context.types.base import ProgressBarsConfig

    return gx, gxe, ProgressBarsConfig


def _frames(inputs: ExpectationInputs) -> dict[str, Any]:
    import pandas as pd

    raw = pd.DataFrame.from_records(inputs.raw_rows, columns=list(RAW_COLUMNS))
    raw["event_time"] = pd.to_datetime(raw["event_time"], utc=True)
    aggregates = pd.DataFrame.from_records(inputs.aggregate_rows, columns=list(AGGREGATE_COLUMNS))
    aggregates["value"] = aggregates["value"].astype("float64")
    aggregates["events"] = aggregates["events"].astype("int64")
    names = pd.DataFrame.from_records(inputs.names, columns=list(NAME_COLUMNS))
    names["events"] = names["events"].astype("int64")
    names["known"] = names["known"].astype("object")
    volume = pd.DataFrame.from_records(inputs.volumes, columns=list(VOLUME_COLUMNS))
    volume["ratio"] = volume["ratio"].astype("float64")
    return {"raw_events": raw, "daily_aggregates": aggregates, "event_names": names, "day_volume": volume}


def _suites(gx, gxe, days: list[date]) -> dict[str, Any]:
    start = _utc(min(days))
    end = _utc(max(days) + timedelta(days=1))
    raw = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in RAW_NOT_NULL]
    raw.append(
        gxe.ExpectColumnValuesToBeBetween(
            column="event_time", min_value=start, max_value=end, strict_max=True
        )
    )
    aggregates = [gxe.ExpectColumnValuesToNotBeNull(column=c) for c in AGGREGATE_NOT_NULL]
    aggregates += [
        gxe.ExpectColumnValuesToBeBetween(column="value", min_value=0),
        gxe.ExpectColumnValuesToBeBetween(column="events", min_value=0),
    ]
    names = [gxe.ExpectColumnValuesToBeInSet(column="known", value_set=[True])]
    volume = [gxe.ExpectColumnValuesToBeBetween(column="ratio", min_value=0, max_value=VOLUME_MAX_FACTOR)]
    label = f"{min(days)}..{max(days)}"
    return {
        "raw_events": gx.ExpectationSuite(name=f"raw_events {label}", expectations=raw),
        "daily_aggregates": gx.ExpectationSuite(name=f"daily_aggregates {label}", expectations=aggregates),
        "event_names": gx.ExpectationSuite(name=f"event_names {label}", expectations=names),
        "day_volume": gx.ExpectationSuite(name=f"day_volume {label}", expectations=volume),
    }


def _utc(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def validate(inputs: ExpectationInputs) -> dict[date, dict[str, Any]]:
    """Run the suites once over all the days' inputs; returns a JSON-safe summary per day with `success`."""
    gx, gxe, progress_bars = import_gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = progress_bars(globally=False)
    source = context.data_sources.add_pandas("pulseops")
    suites = _suites(gx, gxe, inputs.days)
    frames = _frames(inputs)
    per_day: dict[date, dict[str, dict[str, Any]]] = {d: {} for d in inputs.days}
    for name, frame in frames.items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(suites[name])
        validation = batch.get_batch(batch_parameters={"dataframe": frame}).validate(
            suite, result_format={"result_format": "COMPLETE"}
        )
        for day, entry in _results_per_day(name, frame, validation.results, inputs.days).items():
            per_day[day][name] = entry
    # rows checked per day, counted once (counting them per day walked the whole sample once per day)
    checked = (Counter(r[0] for r in inputs.raw_rows), Counter(r[3] for r in inputs.aggregate_rows))
    return {day: _day_summary(inputs, day, per_day[day], checked) for day in inputs.days}


def _results_per_day(name: str, frame, results: list, days: list[date]) -> dict[date, dict[str, Any]]:
    """One frame's validation results split by day: {day: {"evaluated": n, "failed": [...]}}."""
    day_col = DAY_COLUMN.get(name, "day")
    days_in_frame = set(frame[day_col]) if len(frame) else set()
    entries: dict[date, dict[str, Any]] = {day: {"evaluated": 0, "failed": []} for day in days}
    for result in results:
        column = result.expectation_config.kwargs.get("column")
        failing = _failing_days(result, frame, day_col, SAMPLE_COLUMN.get(name, column), days)
        for day in days:
            judged = _judged(frame, day_col, day, column, name, days_in_frame)
            if not judged and day not in failing:
                continue
            entry = entries[day]
            entry["evaluated"] += 1
            if day in failing:
                entry["failed"].append(_failure(result, failing[day]))
    return entries


def _failing_days(
    result, frame, day_col: str, sample_column: str | None, days: list[date]
) -> dict[date, list]:
    """The days an expectation failed on, each with the sample column's values of its failed rows."""
    res = result.result or {}
    indexes = res.get("unexpected_index_list") or []
    failing: dict[date, list] = {}
    if not result.success and not indexes:  # an exception or an aggregate failure: every day
        failing = {d: [] for d in days}
    for i in indexes:
        row = frame.loc[i]
        failing.setdefault(row[day_col], []).append(row[sample_column])
    return failing


def _failure(result, values: list) -> dict[str, Any]:
    """A failed expectation as one day's summary shows it: its kwargs, the count and a sample of values."""
    config = result.expectation_config
    res = result.result or {}
    indexes = res.get("unexpected_index_list") or []
    kwargs = {k: v for k, v in config.kwargs.items() if k not in ("batch_id", "value_set")}
    return {
        "expectation": config.type,
        **kwargs,
        "unexpected_count": len(values),
        "unexpected_sample": sorted({str(v) for v in values})[:SAMPLES],
        **({"exception": str(result.exception_info)} if not indexes and not res else {}),
    }


def _day_summary(
    inputs: ExpectationInputs, day: date, entries: dict[str, dict[str, Any]], checked: tuple[Counter, Counter]
) -> dict[str, Any]:
    """The JSON-safe summary of one day: per-suite results, skipped expectations and the rows checked."""
    suites_of_day = {
        name: {
            "success": not e["failed"],
            "statistics": {
                "evaluated_expectations": e["evaluated"],
                "unsuccessful_expectations": len(e["failed"]),
            },
            "failed": e["failed"],
        }
        for name, e in entries.items()
    }
    names_of_day = [n for n in inputs.names if n[0] == day]
    (volume,) = [v for v in inputs.volumes if v[0] == day] or [(day, 0, 0, None, None)]
    skipped = []
    if volume[4] is None:
        skipped.append(f"day volume: no earlier day with data in the previous {NAME_DAYS} days")
    if not names_of_day or names_of_day[0][3] is None:
        skipped.append(f"known event names: no event_rollups in the previous {NAME_DAYS} days")
    raw_checked, agg_checked = checked[0][day], checked[1][day]
    return jsonable(
        {
            "day": day.isoformat(),
            "success": all(s["success"] for s in suites_of_day.values()),
            "suites": suites_of_day,
            "skipped": skipped,
            "raw_rows_total": inputs.raw_totals.get(day, 0),
            "raw_rows_checked": raw_checked,
            "raw_sampled": raw_checked < inputs.raw_totals.get(day, 0),
            "aggregate_rows_total": inputs.aggregate_totals.get(day, 0),
            "aggregate_rows_checked": agg_checked,
            "aggregates_sampled": agg_checked < inputs.aggregate_totals.get(day, 0),
            "history_days": volume[2],
            "history_mean_events": volume[3],
            "days_in_batch": len(inputs.days),
        }
    )


def _judged(frame, day_col: str, day: date, column: str | None, name: str, days_in_frame: set) -> bool:
    """Whether an expectation judged any row of `day` (column-map expectations ignore NULLs: a day whose
    `known` or `ratio` is NULL had no history, its expectation is skipped, not passed)."""
    if day not in days_in_frame:
        return name in ("raw_events", "daily_aggregates")  # an empty day is vacuously fine, as before
    if name in ("event_names", "day_volume") and column:
        rows = frame[frame[day_col] == day]
        return bool(rows[column].notna().any())
    return True


@day_check(
    DAILY_AGGREGATES,
    severity=dg.AssetCheckSeverity.ERROR,
    split=False,  # one batch for the run: one sample cap, names and volumes of the whole range
    description="Great Expectations suite on the run's days of raw events and daily aggregates, validated as "
    "one batch per table: keys not null, event times inside the days, aggregate values >= 0, each day's "
    "volume at most 10x its recent mean, and only event names seen in the 30 days before.",
)
def great_expectations_suite(conn: psycopg.Connection, days: list[date], _s: Settings) -> list[DayResult]:
    inputs = expectation_inputs(conn, days, cap=RAW_ROW_CAP, name_days=NAME_DAYS, volume_days=VOLUME_DAYS)
    summaries = validate(inputs)
    return [_day_result(summaries[day]) for day in days]


def _day_result(summary: dict[str, Any]) -> DayResult:
    stats = [r["statistics"] for r in summary["suites"].values()]
    evaluated = sum(s["evaluated_expectations"] for s in stats)
    unsuccessful = sum(s["unsuccessful_expectations"] for s in stats)
    sampled = summary["raw_sampled"] or summary["aggregates_sampled"]
    metadata = {
        "evaluated_expectations": evaluated,
        "unsuccessful_expectations": unsuccessful,
        "raw_rows_total": summary["raw_rows_total"],
        "raw_rows_checked": summary["raw_rows_checked"],
        "aggregate_rows_total": summary["aggregate_rows_total"],
        "aggregate_rows_checked": summary["aggregate_rows_checked"],
        "sampled": sampled,
        "results": json_md(summary),
    }
    if sampled:
        metadata["sampled_note"] = (
            f"more than {RAW_ROW_CAP} rows in the run: a random sample was checked for the row-level "
            "expectations (the event-name and volume expectations use exact per-day counts)"
        )
    description = None if summary["success"] else f"{unsuccessful} of {evaluated} expectations failed"
    return DayResult(date.fromisoformat(summary["day"]), summary["success"], metadata, description)
