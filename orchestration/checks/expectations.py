"""A Great Expectations 1.x suite over one UTC day of raw events and daily aggregates, run directly (the
dagster-ge integration does not support GE 1.x) in an ephemeral context with usage analytics off.

great_expectations is imported inside the check: the import takes seconds, and loading the code location
(webserver, daemon, every run worker) must not pay for it.

Batches validated per day (pandas DataFrames read with psycopg):
  raw_events        project_id, event_id, event_name, distinct_id, event_time: keys not null, event time
                    inside the day. Sampled to RAW_ROW_CAP rows on bigger days (metadata says so).
  daily_aggregates  org_id, project_id, metric, date, value not null; value and events >= 0 (same cap).
  event_names       one row per event name of the whole day with its count (exact, never sampled): the day's
                    total is at most VOLUME_MAX_FACTOR x the mean of the latest VOLUME_DAYS earlier days with
                    data, and every name was seen in event_rollups in the previous NAME_DAYS days. Each of the
                    two is skipped (and passes) when there is no such history.
"""

# No `from __future__ import annotations`: Dagster rejects a postponed (string) `context` annotation.

import os
from datetime import date
from typing import Any

import dagster as dg

from orchestration.assets.aggregates import DAILY_AGGREGATES
from orchestration.checks.common import SAMPLES, DayResult, check_days, emit, json_md, jsonable
from orchestration.partitions import daily_partitions
from orchestration.resources import WarehouseResource
from warehouse.aggregates import day_bounds
from warehouse.quality import AGGREGATE_COLUMNS, RAW_COLUMNS, ExpectationInputs, expectation_inputs

RAW_ROW_CAP = 200_000
NAME_DAYS = 30
VOLUME_DAYS = 7
VOLUME_MAX_FACTOR = 10.0

RAW_NOT_NULL = ("project_id", "event_id", "event_name", "distinct_id", "event_time")
AGGREGATE_NOT_NULL = ("org_id", "project_id", "metric", "date", "value")


def _import_gx():
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
    names = pd.DataFrame.from_records(inputs.names, columns=["event_name", "events"])
    names["events"] = names["events"].astype("int64")
    return {"raw_events": raw, "daily_aggregates": aggregates, "event_names": names}


def _suites(gx, gxe, day: date, inputs: ExpectationInputs) -> tuple[dict[str, Any], list[str]]:
    start, end = day_bounds(day)
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
    names, skipped = [], []
    mean = inputs.history_mean
    if mean is None:
        skipped.append(f"day volume: no earlier day with data in the previous {NAME_DAYS} days")
    else:
        names.append(
            gxe.ExpectColumnSumToBeBetween(column="events", min_value=0, max_value=VOLUME_MAX_FACTOR * mean)
        )
    if not inputs.known_names:
        skipped.append(f"known event names: no event_rollups in the previous {NAME_DAYS} days")
    else:
        names.append(gxe.ExpectColumnValuesToBeInSet(column="event_name", value_set=inputs.known_names))
    suites = {
        "raw_events": gx.ExpectationSuite(name=f"raw_events {day}", expectations=raw),
        "daily_aggregates": gx.ExpectationSuite(name=f"daily_aggregates {day}", expectations=aggregates),
        "event_names": gx.ExpectationSuite(name=f"event_names {day}", expectations=names),
    }
    return suites, skipped


def _summary(result) -> dict[str, Any]:
    """The suite result, small: statistics and, per failed expectation, what was observed (the known-names
    value set is left out, it can be long)."""
    described = jsonable(result.describe_dict())
    failed = []
    for e in described.get("expectations", []):
        if e.get("success"):
            continue
        res = e.get("result") or {}
        kwargs = {k: v for k, v in (e.get("kwargs") or {}).items() if k not in ("batch_id", "value_set")}
        failed.append(
            {
                "expectation": e.get("expectation_type"),
                **kwargs,
                **{
                    k: res[k]
                    for k in ("observed_value", "element_count", "unexpected_count", "unexpected_percent")
                    if k in res
                },
                "unexpected_sample": (res.get("partial_unexpected_list") or [])[:SAMPLES],
                **({"exception": e["exception_info"]} if e.get("exception_info") else {}),
            }
        )
    return {
        "success": bool(described.get("success")),
        "statistics": described.get("statistics"),
        "failed": failed,
    }


def validate_day(inputs: ExpectationInputs) -> dict[str, Any]:
    """Run the suites on one day's inputs; returns a JSON-safe summary with `success`."""
    gx, gxe, progress_bars = _import_gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = progress_bars(globally=False)
    source = context.data_sources.add_pandas("pulseops")
    suites, skipped = _suites(gx, gxe, inputs.day, inputs)
    results = {}
    for name, frame in _frames(inputs).items():
        batch = source.add_dataframe_asset(name).add_batch_definition_whole_dataframe(name)
        suite = context.suites.add(suites[name])
        validation = batch.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
        results[name] = _summary(validation)
    return {
        "day": inputs.day.isoformat(),
        "success": all(r["success"] for r in results.values()),
        "suites": results,
        "skipped": skipped,
        "raw_rows_total": inputs.raw_total,
        "raw_rows_checked": len(inputs.raw_rows),
        "raw_sampled": inputs.raw_sampled,
        "aggregate_rows_total": inputs.aggregate_total,
        "aggregate_rows_checked": len(inputs.aggregate_rows),
        "aggregates_sampled": inputs.aggregates_sampled,
        "known_names": len(inputs.known_names),
        "history_days": len(inputs.history_days),
        "history_mean_events": inputs.history_mean,
    }


@dg.asset_check(
    asset=DAILY_AGGREGATES.key,
    partitions_def=daily_partitions,
    description="Great Expectations suite on the day's raw events and daily aggregates: keys not null, "
    "event times inside the day, aggregate values >= 0, day volume at most 10x the recent mean, and only "
    "event names seen in the previous 30 days.",
)
def great_expectations_suite(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource):
    days = check_days(context)
    results = []
    with warehouse.connection() as conn:
        for day in days:
            inputs = expectation_inputs(
                conn, day, cap=RAW_ROW_CAP, name_days=NAME_DAYS, volume_days=VOLUME_DAYS
            )
            results.append(_day_result(validate_day(inputs)))
    yield from emit(context, dg.AssetCheckSeverity.ERROR, results)


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
            f"more than {RAW_ROW_CAP} rows: a random sample was checked for the row-level expectations "
            "(the event-name and volume expectations use exact per-name counts)"
        )
    description = None if summary["success"] else f"{unsuccessful} of {evaluated} expectations failed"
    return DayResult(date.fromisoformat(summary["day"]), summary["success"], metadata, description)
