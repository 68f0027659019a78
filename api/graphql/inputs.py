"""Input types; conversion to warehouse values happens in `context.py`, which names the field on errors."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

from api.graphql.types import Aggregation
from warehouse.reads import filters

# The warehouse's own operator enum, exposed as is: one list of operators for SQL and for the schema.
FilterOp = strawberry.enum(filters.FilterOp, description="Comparison applied to a property of each event.")


@strawberry.input(
    description="Keep events whose property matches. EQ/NEQ take `value` (any JSON), IN/NOT_IN `values`, "
    "GT..LTE a number in `value` (only numeric properties match), EXISTS/NOT_EXISTS nothing."
)
class PropertyFilter:
    property: str = strawberry.field(description="Property key.")
    op: FilterOp = strawberry.field(description="Comparison.")
    value: JSON | None = strawberry.field(default=None, description="Operand of EQ, NEQ and GT..LTE.")
    values: list[JSON] | None = strawberry.field(default=None, description="Operands of IN and NOT_IN.")


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
