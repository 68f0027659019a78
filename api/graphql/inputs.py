"""Input types shared by domains; conversion to warehouse values happens in `arguments.py` (`read_scope`),
which names the field on errors."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

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
