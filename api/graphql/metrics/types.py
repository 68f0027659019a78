"""Types of custom metrics: definitions, their input, and their series (warehouse/metric_defs.py,
warehouse/reads/metrics.py)."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from api.graphql import convert
from api.graphql.types import DateRange, Granularity, Long
from warehouse import metric_defs
from warehouse.reads import metrics as reads_metrics


@strawberry.enum(description="How a custom metric aggregates matching events.")
class Aggregation(Enum):
    COUNT = "count"
    UNIQUE_USERS = "unique_users"
    SUM = "sum"
    AVG = "avg"


@strawberry.type(description="A user-defined metric.")
class MetricDefinition:
    id: strawberry.ID = strawberry.field(description="Metric id: pass it as `metricId`.")
    project_id: strawberry.ID = strawberry.field(description="The metric's project.")
    name: str = strawberry.field(description="Unique name in the project.")
    description: str = strawberry.field(description="Free text.")
    event_name: str | None = strawberry.field(description="Only events of this name; null for all.")
    filters: JSON = strawberry.field(description='Property equality filter, e.g. {"plan": "pro"}.')
    aggregation: Aggregation = strawberry.field(description="How matching events are aggregated.")
    property: str | None = strawberry.field(description="Numeric property summed or averaged.")
    dimensions: list[str] = strawberry.field(description="Property keys the metric is grouped by.")
    created_at: datetime = strawberry.field(description="Creation time.")
    updated_at: datetime = strawberry.field(
        description="Last edit (series read raw events for days built before it)."
    )


@strawberry.type(description="A metric's value for one bucket and one combination of dimension values.")
class MetricPoint:
    start: datetime = strawberry.field(description="First instant of the bucket, with its local UTC offset.")
    local_date: date = strawberry.field(description="Local date of the start.")
    local_time: str = strawberry.field(description="Local wall time of the start, HH:MM.")
    utc_offset: str = strawberry.field(description="UTC offset at the start.")
    dimensions: JSON = strawberry.field(
        description="Values of the metric's dimension properties (absent keys omitted)."
    )
    value: float = strawberry.field(description="The aggregated value.")
    events: Long = strawberry.field(description="Events that contributed to the value.")


@strawberry.type
class MetricSeries:
    metric_id: strawberry.ID = strawberry.field(description="The metric.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    range: DateRange = strawberry.field(description="The dates and zone covered.")
    points: list[MetricPoint] = strawberry.field(description="One point per bucket and dimension values.")


@strawberry.input(description="A custom metric: which events, how to aggregate them, grouped by what.")
class MetricInput:
    name: str = strawberry.field(description="Unique in the project, 1..200 characters.")
    aggregation: Aggregation = strawberry.field(description="How matching events are aggregated.")
    description: str = strawberry.field(default="", description="Free text.")
    event_name: str | None = strawberry.field(default=None, description="Only events of this name.")
    filters: JSON | None = strawberry.field(
        default=None, description='Property equality, e.g. {"plan": "pro"}.'
    )
    property: str | None = strawberry.field(default=None, description="Numeric property for SUM and AVG.")
    dimensions: list[str] = strawberry.field(default_factory=list, description="Up to 5 property keys.")


def metric_definition(m: metric_defs.MetricDefinition) -> MetricDefinition:
    return MetricDefinition(
        id=strawberry.ID(str(m.id)),
        project_id=strawberry.ID(str(m.project_id)),
        name=m.name,
        description=m.description,
        event_name=m.event_name,
        filters=m.filters,
        aggregation=Aggregation(m.aggregation),
        property=m.property,
        dimensions=list(m.dimensions),
        created_at=m.created_at,
        updated_at=m.updated_at,
    )


def metric_point(p: reads_metrics.MetricPoint) -> MetricPoint:
    return MetricPoint(
        start=convert.bucket_start(p.local_start, p.utc_offset),
        local_date=p.local_start.date(),
        local_time=p.local_start.strftime("%H:%M"),
        utc_offset=convert.offset_text(p.utc_offset),
        dimensions=p.dimensions,
        value=p.value,
        events=p.events,
    )
