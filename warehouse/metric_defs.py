"""Custom metric definitions (event filter, aggregation, dimensions): validated, stored, edited, listed.

Their series are a read (warehouse/reads/metrics.py); the aggregate build computes their built days
(warehouse/aggregates.py). Deleting a definition deletes its built rows with it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

Aggregation = Literal["count", "unique_users", "sum", "avg"]
AGGREGATIONS = ("count", "unique_users", "sum", "avg")
MAX_DIMENSIONS = 5


class MetricError(ValueError):
    """A definition that cannot be stored; the message names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class MetricDefinition:
    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    description: str
    event_name: str | None
    filters: dict[str, Any]  # property equality: {"plan": "pro"}
    aggregation: str
    property: str | None
    dimensions: list[str]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class MetricSpec:
    """The editable part of a definition."""

    name: str
    aggregation: str = "count"
    description: str = ""
    event_name: str | None = None
    filters: dict[str, Any] | None = None
    property: str | None = None
    dimensions: tuple[str, ...] = ()

    def validate(self) -> None:
        if not 1 <= len(self.name) <= 200:
            raise MetricError("name", "must be 1..200 characters")
        if self.aggregation not in AGGREGATIONS:
            raise MetricError("aggregation", f"must be one of {', '.join(AGGREGATIONS)}")
        if (self.aggregation in ("sum", "avg")) != (self.property is not None):
            raise MetricError("property", "required for sum and avg, and only for them")
        if self.property is not None and not 1 <= len(self.property) <= 200:
            raise MetricError("property", "must be 1..200 characters")
        if len(self.dimensions) > MAX_DIMENSIONS or len(set(self.dimensions)) != len(self.dimensions):
            raise MetricError("dimensions", f"at most {MAX_DIMENSIONS} distinct property keys")
        if any(not 1 <= len(d) <= 200 for d in self.dimensions):
            raise MetricError("dimensions", "keys must be 1..200 characters")
        if self.filters is not None and (
            not isinstance(self.filters, dict)
            or len(self.filters) > 10
            or any(v is None for v in self.filters.values())
        ):
            raise MetricError("filters", "an object of at most 10 property: value pairs (no nulls)")


_COLUMNS = (
    "id, org_id, project_id, name, description, event_name, filters, aggregation, property, dimensions, "
    "created_at, updated_at"
)


def create_metric(
    conn: psycopg.Connection, org_id: uuid.UUID, project_id: uuid.UUID, spec: MetricSpec
) -> MetricDefinition:
    spec.validate()
    with conn.cursor(row_factory=class_row(MetricDefinition)) as cur:
        try:
            return cur.execute(
                f"""
                INSERT INTO metric_definitions
                    (org_id, project_id, name, description, event_name, filters, aggregation, property, dimensions)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}
                """,  # noqa: S608 - constant column list
                (org_id, project_id, spec.name, spec.description, spec.event_name, Jsonb(spec.filters or {}),
                 spec.aggregation, spec.property, list(spec.dimensions)),
            ).fetchone()  # fmt: skip
        except psycopg.errors.UniqueViolation as exc:
            raise MetricError("name", "a metric with this name exists in the project") from exc


def update_metric(
    conn: psycopg.Connection, metric_id: uuid.UUID, spec: MetricSpec
) -> MetricDefinition | None:
    spec.validate()
    with conn.cursor(row_factory=class_row(MetricDefinition)) as cur:
        try:
            return cur.execute(
                f"""
                UPDATE metric_definitions
                SET name = %s, description = %s, event_name = %s, filters = %s, aggregation = %s,
                    property = %s, dimensions = %s, updated_at = clock_timestamp()
                WHERE id = %s RETURNING {_COLUMNS}
                """,  # noqa: S608 - constant column list
                (spec.name, spec.description, spec.event_name, Jsonb(spec.filters or {}), spec.aggregation,
                 spec.property, list(spec.dimensions), metric_id),
            ).fetchone()  # fmt: skip
        except psycopg.errors.UniqueViolation as exc:
            raise MetricError("name", "a metric with this name exists in the project") from exc


def delete_metric(conn: psycopg.Connection, metric_id: uuid.UUID) -> bool:
    """Deletes the definition and its built rows (they would otherwise outlive it until the next rebuild)."""
    with conn.transaction():
        conn.execute("DELETE FROM daily_aggregates WHERE metric = %s", (f"custom:{metric_id}",))
        return conn.execute("DELETE FROM metric_definitions WHERE id = %s", (metric_id,)).rowcount == 1


def get_metric(conn: psycopg.Connection, metric_id: uuid.UUID) -> MetricDefinition | None:
    with conn.cursor(row_factory=class_row(MetricDefinition)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM metric_definitions WHERE id = %s",  # noqa: S608 - constant column list
            (metric_id,),
        ).fetchone()


def list_metrics(conn: psycopg.Connection, project_id: uuid.UUID) -> list[MetricDefinition]:
    with conn.cursor(row_factory=class_row(MetricDefinition)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM metric_definitions WHERE project_id = %s ORDER BY name",  # noqa: S608 - constant column list
            (project_id,),
        ).fetchall()
