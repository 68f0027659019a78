"""What every partitioned check needs: the UTC days of its run and JSON-safe metadata."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,  # not exported by dagster 1.13
)

SAMPLES = 10


def check_days(context: dg.AssetCheckExecutionContext) -> list[date]:
    """The UTC days of the run, one for a partition, several for a single-run backfill of a range.

    A partitioned check sees the run's partition through the run tags like an asset does: `dagster/partition`
    for one day, `dagster/asset_partition_range_start`/`_end` for a range. `partition_time_window` covers
    both (`partition_key` raises on a range), resolved against the check's `partitions_def`.
    """
    if not (context.has_partition_key or context.has_partition_key_range):
        raise dg.Failure(
            description="This check is partitioned by UTC day: run it for a partition or a range of them."
        )
    window = context.partition_time_window
    first, end = window.start.date(), window.end.date()
    return [first + timedelta(days=i) for i in range((end - first).days)]


def jsonable(value: Any) -> Any:
    """Plain JSON (numpy scalars, timestamps, dates and UUIDs become numbers or strings)."""
    return json.loads(json.dumps(value, default=_default))


def _default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def json_md(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(jsonable(value))


@dataclass(frozen=True)
class DayResult:
    day: date
    passed: bool
    metadata: Mapping[str, Any]
    description: str | None = None


def emit(
    context: dg.AssetCheckExecutionContext, severity: dg.AssetCheckSeverity, results: Sequence[DayResult]
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """Report one result per day of the run.

    One partition: a plain AssetCheckResult (Dagster stamps it with the partition). A range (single-run
    backfill): Dagster 1.13 would record an AssetCheckResult with *no* partition, which a partitioned check's
    status ignores, so every day of the backfill would end up "skipped". Each day is therefore reported as
    its own AssetCheckEvaluation, stamped with its partition and with the day's latest materialisation of
    the asset (what makes the result count as current); the op's output follows.
    """
    if context.has_partition_key:
        (r,) = results
        yield dg.AssetCheckResult(
            passed=r.passed, severity=severity, metadata=r.metadata, description=r.description
        )
        return
    (spec,) = context.check_specs
    for r in results:
        partition = r.day.isoformat()
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=r.passed,
            metadata=r.metadata,
            severity=severity,
            description=r.description,
            blocking=spec.blocking,
            partition=partition,
            target_materialization_data=_latest_materialization(context, spec.asset_key, partition),
        )
    yield dg.Output(None)


def _latest_materialization(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, partition: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    return AssetCheckEvaluationTargetMaterializationData(
        storage_id=records[0].storage_id, run_id=records[0].run_id, timestamp=records[0].timestamp
    )
