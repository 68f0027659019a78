"""Parity of the cold tier with PostgreSQL, per UTC day: what raw retention waits for.

Per project: rows and checksum recomputed by PostgreSQL from the day's rows, and by DuckDB from the Parquet
file, must equal each other and what the export recorded; every project with rows must have a file. Once
the raw day is gone from PostgreSQL, the file is checked against the record (bit rot, truncation).
"""

# No `from __future__ import annotations`: Dagster rejects a postponed (string) `context` annotation.

from datetime import date

import dagster as dg
import psycopg

from orchestration.assets.cold import COLD_AGGREGATES, COLD_EVENTS
from orchestration.checks.common import SAMPLES, DayResult, day_check, json_md
from pulseops.settings import Settings
from warehouse.cold import AGGREGATES, EVENTS, ROLLUPS, DayParity, verify_day


def _results(reports: list[DayParity]) -> list[DayResult]:
    out = []
    for r in reports:
        bad = [p for p in r.results if not p.ok]
        out.append(
            DayResult(
                r.day,
                r.ok,
                {
                    "files_checked": len(r.results),
                    "verified": sum(p.ok for p in r.results),
                    "rows": sum(p.recorded[0] for p in r.results),
                    "failed_count": len(bad),
                    "failed": json_md([p.as_dict() for p in bad[:SAMPLES]]),
                    "unexported_count": len(r.unexported),
                    "unexported": json_md(r.unexported[:SAMPLES]),
                },
                None
                if r.ok
                else f"{len(bad)} files do not match PostgreSQL or their record, {len(r.unexported)} "
                "projects with rows have no file; raw retention keeps these days",
            )
        )
    return out


@day_check(
    COLD_EVENTS,
    severity=dg.AssetCheckSeverity.ERROR,
    blocking=True,
    description="Per project, the day's raw events in PostgreSQL and in the Parquet file have the same row "
    "count and checksum (and match the export's record); raw retention drops a day only after this passed.",
)
def cold_events_parity(conn: psycopg.Connection, days: list[date], s: Settings) -> list[DayResult]:
    return _results([verify_day(conn, day, s.cold, [EVENTS]) for day in days])


@day_check(
    COLD_AGGREGATES,
    severity=dg.AssetCheckSeverity.ERROR,
    blocking=True,
    description="Per project, the day's event_rollups and daily_aggregates in PostgreSQL and in Parquet "
    "have the same row count and checksum.",
)
def cold_aggregates_parity(conn: psycopg.Connection, days: list[date], s: Settings) -> list[DayResult]:
    return _results([verify_day(conn, day, s.cold, [ROLLUPS, AGGREGATES]) for day in days])


cold_checks = [cold_events_parity, cold_aggregates_parity]
