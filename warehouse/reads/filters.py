"""Property filters on raw events, compiled to parameterized SQL.

Keys and values are always bound parameters; only the operator picks a fixed SQL fragment. Equality and IN
use JSONB containment (`@>`), which the GIN `jsonb_path_ops` index on `events.properties` serves; numeric
comparisons apply to numbers only (a string "5" is not greater than 3), like a typed analytics store would.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any

import orjson
from psycopg import sql

MAX_FILTERS = 10
MAX_IN_VALUES = 100
MAX_KEY_LENGTH = 200


class FilterOp(Enum):
    EQ = "eq"
    NEQ = "neq"
    IN = "in"
    NOT_IN = "not_in"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    EXISTS = "exists"
    NOT_EXISTS = "not_exists"


_COMPARE = {FilterOp.GT: ">", FilterOp.GTE: ">=", FilterOp.LT: "<", FilterOp.LTE: "<="}


class FilterError(ValueError):
    """A filter that cannot be evaluated; the message names the offending part."""


@dataclass(frozen=True)
class PropertyFilter:
    key: str
    op: FilterOp
    value: Any = None  # EQ / NEQ (any JSON value), GT..LTE (a number)
    values: tuple[Any, ...] = ()  # IN / NOT_IN

    def validate(self) -> None:
        if not self.key or len(self.key) > MAX_KEY_LENGTH:
            raise FilterError(f"property key must be 1..{MAX_KEY_LENGTH} characters")
        if self.op in _COMPARE:
            if isinstance(self.value, bool) or not isinstance(self.value, int | float):
                raise FilterError(f"{self.op.name} needs a numeric value")
            if self.value != self.value or self.value in (float("inf"), float("-inf")):
                raise FilterError(f"{self.op.name} needs a finite number")
        elif self.op in (FilterOp.IN, FilterOp.NOT_IN):
            if not self.values or len(self.values) > MAX_IN_VALUES:
                raise FilterError(f"{self.op.name} needs 1..{MAX_IN_VALUES} values")
        elif self.op in (FilterOp.EQ, FilterOp.NEQ) and self.value is None:
            raise FilterError(f"{self.op.name} needs a value (use EXISTS / NOT_EXISTS for presence)")

    def normalized(self) -> dict[str, Any]:
        """Canonical form for cache keys: IN lists are order-free."""
        values = sorted(orjson.dumps(v, option=orjson.OPT_SORT_KEYS).decode() for v in self.values)
        return {"key": self.key, "op": self.op.value, "value": self.value, "values": values}


def compile_filters(
    filters: list[PropertyFilter] | tuple[PropertyFilter, ...], alias: str = "e"
) -> tuple[sql.Composable, dict[str, Any]]:
    """(SQL condition on table alias `alias`, its named parameters `pf_*`); TRUE for no filters (AND-ed)."""
    if len(filters) > MAX_FILTERS:
        raise FilterError(f"at most {MAX_FILTERS} property filters")
    props = sql.SQL("{}.properties").format(sql.Identifier(alias))
    parts: list[sql.Composable] = []
    params: dict[str, Any] = {}

    def bind(value: Any) -> sql.Composable:
        name = f"pf_{len(params)}"
        params[name] = value
        return sql.Placeholder(name)

    def contains(value: Any) -> sql.Composable:
        return sql.SQL("{} @> {}::jsonb").format(props, bind(orjson.dumps({f.key: value}).decode()))

    for f in filters:
        f.validate()
        if f.op is FilterOp.EQ:
            parts.append(contains(f.value))
        elif f.op is FilterOp.NEQ:
            parts.append(sql.SQL("NOT ({})").format(contains(f.value)))
        elif f.op in (FilterOp.IN, FilterOp.NOT_IN):
            # One containment per value keeps each arm index-servable (a bitmap OR of GIN scans).
            arms = sql.SQL(" OR ").join(contains(v) for v in f.values)
            parts.append(sql.SQL("({})" if f.op is FilterOp.IN else "NOT ({})").format(arms))
        elif f.op in _COMPARE:
            key = bind(f.key)
            parts.append(
                sql.SQL(
                    "(jsonb_typeof({p} -> {k}) = 'number' AND ({p} ->> {k})::numeric {op} {v}::numeric)"
                ).format(p=props, k=key, op=sql.SQL(_COMPARE[f.op]), v=bind(f.value))
            )
        elif f.op is FilterOp.EXISTS:
            parts.append(sql.SQL("{} ? {}").format(props, bind(f.key)))
        else:
            parts.append(sql.SQL("NOT ({} ? {})").format(props, bind(f.key)))
    if not parts:
        return sql.SQL("TRUE"), {}
    return sql.SQL(" AND ").join(parts), params
