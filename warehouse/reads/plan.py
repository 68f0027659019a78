"""The read plan: which tier answers each UTC day of a question, decided once inside the read snapshot.

A question's queries (a series, its total and sources; the three parts of `metrics`) used to classify the same
days again and again (`raw_days`, `days_without_raw`, `cold_days`, `data_version`: four statements over the
same ledger rows). `plan_reads` reads the ledger rows of the span once and every query takes its answers from
the plan, so the classification, the cache key's data version and the rows read all come from one snapshot:

- *built*: the aggregate build saw every landed row (`built_version = version`), read from the aggregates;
- *stale*: rows landed since the last build (or never built), read from raw events;
- *cold*: the raw partition is gone and a verified, current export is in the cold tier, read from Parquet;
- *refused*: the raw partition is gone and no cold copy is: a question that needs the day raises `RawDataGone`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING

import psycopg

from warehouse.cold.reads import cold_days
from warehouse.partitions import ATTACHED

if TYPE_CHECKING:
    from pulseops.settings import ColdSettings


class RawDataGone(Exception):
    """Raw events of these UTC days are neither in PostgreSQL nor verified in the cold tier (never exported,
    dropped by an older retention): a question that needs them cannot be answered exactly, and must not be
    answered with a silent undercount."""

    def __init__(self, days: list[date]) -> None:
        super().__init__(
            f"raw events of {days[0]}..{days[-1]} are neither in PostgreSQL nor in the cold tier"
        )
        self.days = days


@dataclass(frozen=True)
class DayLedger:
    """One UTC day's ledger rows: what landed (`version`) and what the last aggregate build saw."""

    day: date
    version: int | None  # None: no row landed that day (an aggregate build row alone)
    built_version: int | None
    built_at: datetime | None
    has_build: bool
    attached: bool  # the raw partition is part of `events` (meaningless without landed rows)


@dataclass(frozen=True)
class ReadPlan:
    """The classified days of one project over the UTC days [first, last]; see the module docstring."""

    project_id: uuid.UUID
    first: date
    last: date
    days: tuple[DayLedger, ...]
    verified_cold: frozenset[date] | None  # None: the caller cannot read Parquet

    def _check(self, first: date, last: date) -> None:
        if first < self.first or last > self.last:
            raise ValueError(f"days {first}..{last} lie outside the plan's {self.first}..{self.last}")

    def stale(self, first: date, last: date) -> list[date]:
        """UTC days in [first, last] whose aggregates miss landed rows (never built, or late data since)."""
        self._check(first, last)
        return [
            d.day
            for d in self.days
            if d.version is not None
            and first <= d.day <= last
            and (d.built_version is None or d.built_version != d.version)
        ]

    def outdated(self, first: date, last: date, since: datetime) -> list[date]:
        """Landed UTC days in [first, last] never built, or last built before `since` (a definition's edit)."""
        self._check(first, last)
        return [
            d.day
            for d in self.days
            if d.version is not None and first <= d.day <= last and (d.built_at is None or d.built_at < since)
        ]

    def without_raw(self, first: date, last: date) -> list[date]:
        """UTC days in [first, last] with landed data whose raw partition is gone (cold tier or detached)."""
        self._check(first, last)
        return [
            d.day for d in self.days if d.version is not None and first <= d.day <= last and not d.attached
        ]

    def require_raw(self, days: list[date]) -> list[date]:
        """The days of `days` to read from the cold tier; `RawDataGone` for a day that lost its raw
        partition and is not in the cold tier."""
        if not days:
            return []
        wanted = set(days)
        gone = [d for d in self.without_raw(min(days), max(days)) if d in wanted]
        if not gone:
            return []
        in_cold = self.verified_cold or frozenset()
        missing = [d for d in gone if d not in in_cold]
        if missing:
            raise RawDataGone(missing)
        return gone

    @property
    def version(self) -> str:
        """The data version of the span, as `warehouse.reads.exact.data_version` spells it (cache keys)."""
        landed = sum(d.version for d in self.days if d.version is not None)
        builds = [d for d in self.days if d.has_build]
        built = sum(d.built_version for d in builds if d.built_version is not None)
        stamps = [d.built_at for d in builds if d.built_at is not None]
        stamp = max(stamps).timestamp() if stamps else 0
        gone = sum(1 for d in self.days if d.version is not None and not d.attached)
        return f"{landed}.{built}.{len(builds)}.{stamp}" + (f".c{gone}" if gone else "")


def plan_reads(
    conn: psycopg.Connection, project_id: uuid.UUID, first: date, last: date, cold: ColdSettings | None = None
) -> ReadPlan:
    """Classify the project's UTC days [first, last]: one ledger statement, plus the cold-tier catalogue
    when a day's raw partition is gone and the caller can read Parquet (`cold`)."""
    rows = conn.execute(
        f"""
        SELECT l.day, l.version, b.built_version, b.built_at, b.day IS NOT NULL,
               {ATTACHED.format(day="l.day")}
        FROM landed_days l
        LEFT JOIN aggregate_builds b ON b.project_id = l.project_id AND b.day = l.day
        WHERE l.project_id = %(p)s AND l.day BETWEEN %(a)s AND %(b)s
        UNION ALL
        SELECT b.day, NULL, b.built_version, b.built_at, TRUE, TRUE
        FROM aggregate_builds b
        WHERE b.project_id = %(p)s AND b.day BETWEEN %(a)s AND %(b)s
          AND NOT EXISTS (SELECT 1 FROM landed_days l WHERE l.project_id = b.project_id AND l.day = b.day)
        ORDER BY 1
        """,  # noqa: S608 - ATTACHED is a module constant of warehouse.partitions
        {"p": project_id, "a": first, "b": last},
    ).fetchall()
    days = tuple(DayLedger(*row) for row in rows)
    gone = [d.day for d in days if d.version is not None and not d.attached]
    verified: frozenset[date] | None = None
    if cold is not None:
        verified = frozenset(cold_days(conn, project_id, gone[0], gone[-1])) if gone else frozenset()
    return ReadPlan(project_id, first, last, days, verified)
