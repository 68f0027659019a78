"""The scaffolding every partitioned check shares, written once: the UTC days of the run, one connection, one
result per day, JSON-safe metadata.

A check is a function `(conn, days, settings) -> list[DayResult]` that measures all the run's days at once
(set-based SQL in warehouse/quality.py); `day_check` turns it into a Dagster asset check partitioned like
the assets.
"""

# No `from __future__ import annotations`: Dagster rejects a postponed (string) `context` annotation.

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from typing import Any

import dagster as dg
import psycopg

# Not exported by dagster 1.13, and no public way to stamp an evaluation with its materialisation: without it a
# range run's per-day results never count as current (tests/orchestration/test_checks.py pins that).
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)

from orchestration.partitions import daily_partitions, run_days
from orchestration.resources import SettingsResource, WarehouseResource
from pulseops.settings import Settings
from warehouse.quality import disable_jit

SAMPLES = 10


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


Measure = Callable[[psycopg.Connection, list[date], Settings], Sequence[DayResult]]


# A range run's days are measured in this many parts at once, each on its own connection: one statement is one
# backend's work, and the machines have two cores. Each part is still measured set-based, in one statement.
CHECK_CONNECTIONS = 2


def split_days(days: list[date], parts: int) -> list[list[date]]:
    """`days` in up to `parts` contiguous, non-empty parts of (nearly) equal size, in order."""
    parts = max(1, min(parts, len(days)))
    size, extra = divmod(len(days), parts)
    bounds = [i * size + min(i, extra) for i in range(parts + 1)]
    return [days[bounds[i] : bounds[i + 1]] for i in range(parts)] or [days]


def _measure(warehouse: WarehouseResource, measure: Measure, days: list[date], settings: Settings) -> list:
    with warehouse.connection() as conn:
        disable_jit(conn)
        return list(measure(conn, days, settings))


def day_check(
    asset: dg.AssetSpec,
    *,
    severity: dg.AssetCheckSeverity,
    description: str,
    blocking: bool = False,
    split: bool = True,
) -> Callable[[Measure], dg.AssetChecksDefinition]:
    """An asset check of `asset`, partitioned by UTC day, from a function measuring all the run's days.
    `split`: each day's result depends on that day alone, so the days may be measured in CHECK_CONNECTIONS
    parts at once (False for a check that judges the run's days together, as one batch)."""

    def wrap(measure: Measure) -> dg.AssetChecksDefinition:
        @dg.asset_check(
            asset=asset.key,
            name=measure.__name__,
            partitions_def=daily_partitions,
            blocking=blocking,
            description=description,
        )
        def check(
            context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource, pulseops: SettingsResource
        ):
            days = run_days(context)
            settings = pulseops.all()  # read when the check runs, not when the code location loads
            parts = split_days(days, CHECK_CONNECTIONS if split else 1)
            with ThreadPoolExecutor(len(parts)) as pool:
                measured = pool.map(lambda part: _measure(warehouse, measure, part, settings), parts)
                results = [r for part in measured for r in part]
            yield from emit(context, severity, results)

        return check

    return wrap


def emit(
    context: dg.AssetCheckExecutionContext, severity: dg.AssetCheckSeverity, results: Sequence[DayResult]
) -> Iterator[dg.AssetCheckResult | dg.AssetCheckEvaluation | dg.Output]:
    """Report one result per day of the run.

    One partition: a plain AssetCheckResult (Dagster stamps it with the partition and its materialisation).
    A range (single-run backfill): Dagster 1.13 would record an AssetCheckResult with *no* partition, which a
    partitioned check's status ignores, so every day would end up "skipped". Each day is therefore reported as
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
    targets = _latest_materializations(context, spec.asset_key, [r.day.isoformat() for r in results])
    for r in results:
        yield dg.AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=r.passed,
            metadata=r.metadata,
            severity=severity,
            description=r.description,
            blocking=spec.blocking,
            partition=r.day.isoformat(),
            target_materialization_data=targets.get(r.day.isoformat()),
        )
    yield dg.Output(None)


def _latest_materializations(
    context: dg.AssetCheckExecutionContext, asset_key: dg.AssetKey, partitions: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """The latest materialisation of each of `partitions`, read newest first in pages for all of them (one
    query per day took a connection and a query each, 90 per check in a 90-day backfill). The run's own
    materialisations come first, so one page usually covers every day."""
    wanted, found = set(partitions), {}
    records_filter = dg.AssetRecordsFilter(asset_key=asset_key, asset_partitions=sorted(wanted))
    cursor = None
    while wanted - found.keys():
        page = context.instance.fetch_materializations(
            records_filter, limit=max(len(wanted), 100), cursor=cursor
        )
        for record in page.records:
            if record.partition_key in wanted and record.partition_key not in found:
                found[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                )
        if not page.has_more:
            break
        cursor = page.cursor
    return found
