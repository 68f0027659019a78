"""Raw events of cold days (Parquet, read by DuckDB) for the GraphQL reads that only raw events answer.

The PostgreSQL queries of `warehouse.reads.exact`, `series`, `explore` and `metrics` stay the engine: for the
UTC days whose raw partition is gone but whose export is verified (`warehouse.cold.reads.cold_days`), DuckDB
computes the same *mergeable partials* the PostgreSQL raw path would have produced, and they are fed to the
PostgreSQL query as arrays (`unnest`), so zones, DST, buckets and the final aggregation are PostgreSQL's,
unchanged:

- counts: (15-minute or 1-day UTC bucket, event name, events), the rows of `event_rollups`;
- distinct users per local day: (UTC day, user, 96-slot bitmap), the rows of `user_activity`, so a local day
  or a WAU/MAU window spanning a cold and a hot UTC day unions its users in PostgreSQL;
- breakdowns and custom metrics: one row per (group, user) or (bucket, dimensions[, user]) with events,
  sums and counts, so counts add and distinct users are a `count(DISTINCT)` over both tiers.

DuckDB computes in UTC only (epoch arithmetic; bucket edges of other zones come from Python), so its ICU
extension is never needed. Each read opens the project's sealed views (`warehouse.cold.cold_events`) over
exactly the cold days it needs. Property filters are compiled to DuckDB SQL with bound parameters and the
semantics of `warehouse.reads.filters` (jsonb containment and typed numeric comparison); where a double cannot
decide (a number equal to the operand as a double, object/array operands) a Python function applied to the
exact JSON text settles it, as PostgreSQL's numeric would.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import psycopg

from warehouse.cold.reads import ColdScope, cold_events
from warehouse.reads.filters import FilterOp, PropertyFilter

if TYPE_CHECKING:
    from pulseops.settings import ColdSettings

_UNIX = datetime(1970, 1, 1, tzinfo=UTC)
DAY_US = 86_400_000_000
SLOT_US = 900_000_000
_NUMBERS = "('BIGINT', 'UBIGINT', 'HUGEINT', 'DOUBLE')"
_OPS = {FilterOp.GT: ">", FilterOp.GTE: ">=", FilterOp.LT: "<", FilterOp.LTE: "<="}


class ColdMissing(Exception):
    """Days the sealed views do not cover after all (a file no longer verified)."""

    def __init__(self, days: list[date]) -> None:
        super().__init__(f"cold files missing for {days}")
        self.days = days


def pointer(key: str) -> str:
    """RFC 6901 JSON pointer to a top-level key: any key, dots and brackets included, is taken literally."""
    return "/" + key.replace("~", "~0").replace("/", "~1")


def open_reader(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    days: Sequence[date],
    cold: ColdSettings,
    verified: frozenset[date] | None = None,
) -> ColdScope:
    """The project's sealed `events` view over `days`, with `pg_match` (exact jsonb semantics) registered;
    `verified`: the read plan's verified cold days (`warehouse.cold.reads.open_cold`)."""
    scope = cold_events(conn, project_id, days, cold, verified)
    missing = sorted(set(days) - set(scope.days["events"]))
    if missing:
        scope.close()
        raise ColdMissing(missing)
    register_pg_match(scope.duck)
    return scope


def register_pg_match(duck: Any) -> None:
    """`pg_match(properties, spec)`, which `compile_filters` calls where a double cannot decide."""
    duck.create_function("pg_match", _pg_match, ["VARCHAR", "VARCHAR"], "BOOLEAN", null_handling="special")


# --- property filters ----------------------------------------------------------------------------------


def compile_filters(filters: Sequence[PropertyFilter]) -> tuple[str, list[Any]]:
    """DuckDB condition on `properties` (positional parameters, in order) equal to `filters.compile_filters`."""
    parts: list[str] = []
    params: list[Any] = []
    for f in filters:
        f.validate()
        ptr = pointer(f.key)
        if f.op in (FilterOp.EQ, FilterOp.NEQ):
            sql_, p = _equals(ptr, f.key, f.value)
            parts.append(sql_ if f.op is FilterOp.EQ else f"NOT {sql_}")
            params += p
        elif f.op in (FilterOp.IN, FilterOp.NOT_IN):
            arms = []
            for v in f.values:
                sql_, p = _equals(ptr, f.key, v)
                arms.append(sql_)
                params += p
            joined = "(" + " OR ".join(arms) + ")"
            parts.append(joined if f.op is FilterOp.IN else f"NOT {joined}")
        elif f.op in _OPS:
            # A double decides unless it equals the operand's double; then the exact decimal text does.
            # (Rounding is monotone: double(x) > double(c) implies x > c.)
            parts.append(
                f"(CASE WHEN json_type(properties, ?) IS NULL OR json_type(properties, ?) NOT IN {_NUMBERS} "
                "THEN false "
                "WHEN TRY_CAST(json_extract(properties, ?) AS DOUBLE) <> ?::DOUBLE "
                f"THEN TRY_CAST(json_extract(properties, ?) AS DOUBLE) {_OPS[f.op]} ?::DOUBLE "
                "ELSE pg_match(properties::VARCHAR, ?) END)"
            )
            exact = _pg_numeric(f.value)
            operand = float(exact)
            params += [ptr, ptr, ptr, operand, ptr, operand, _spec(f.key, f.op.value, exact)]
        elif f.op is FilterOp.EXISTS:
            parts.append("(json_type(properties, ?) IS NOT NULL)")
            params.append(ptr)
        else:
            parts.append("(json_type(properties, ?) IS NULL)")
            params.append(ptr)
    return (" AND ".join(parts) if parts else "TRUE"), params


def _equals(ptr: str, key: str, value: Any) -> tuple[str, list[Any]]:
    """`properties @> {key: value}` as a never-NULL DuckDB boolean."""
    if value is None:
        return "coalesce(json_type(properties, ?) = 'NULL', false)", [ptr]
    if isinstance(value, bool):
        return (
            "coalesce(json_type(properties, ?) = 'BOOLEAN' AND json_extract_string(properties, ?) = ?, false)",
            [ptr, ptr, "true" if value else "false"],
        )
    if isinstance(value, str):
        return (
            "coalesce(json_type(properties, ?) = 'VARCHAR' AND json_extract_string(properties, ?) = ?, false)",
            [ptr, ptr, value],
        )
    if isinstance(value, int | float):
        return (
            f"(CASE WHEN json_type(properties, ?) IS NULL OR json_type(properties, ?) NOT IN {_NUMBERS} "
            "THEN false WHEN TRY_CAST(json_extract(properties, ?) AS DOUBLE) <> ?::DOUBLE THEN false "
            "ELSE coalesce(pg_match(properties::VARCHAR, ?), false) END)",
            [ptr, ptr, ptr, float(value), _spec(key, "eq", value)],
        )
    kind = "OBJECT" if isinstance(value, dict) else "ARRAY"
    return (
        f"(CASE WHEN coalesce(json_type(properties, ?) = '{kind}', false) "
        "THEN coalesce(pg_match(properties::VARCHAR, ?), false) ELSE false END)",
        [ptr, _spec(key, "eq", value)],
    )


def _pg_numeric(value: int | float) -> str:
    """The operand as PostgreSQL compares it: `%s::numeric` of a float8 keeps 15 significant digits
    (float8_numeric uses DBL_DIG), an integer stays exact."""
    return format(value, ".15g") if isinstance(value, float) else str(value)


def _spec(key: str, op: str, value: Any) -> str:
    # json, not orjson: integers beyond 64 bits are valid operands of a comparison
    return json.dumps({"k": key, "op": op, "v": value})


def _exact(text: str) -> Any:
    return json.loads(text, parse_float=Decimal, parse_int=Decimal)


def _pg_match(properties: str | None, spec: str | None) -> bool | None:
    """jsonb semantics on the exact JSON text: containment for EQ, numeric comparison for GT..LTE."""
    if properties is None or spec is None:
        return None
    s = _exact(spec)
    props = _exact(properties)
    if not isinstance(props, dict) or s["k"] not in props:
        return False
    value = props[s["k"]]
    if s["op"] == "eq":
        return _contains(value, s["v"])
    if not isinstance(value, Decimal):
        return False
    operand = Decimal(s["v"])
    return {"gt": value > operand, "gte": value >= operand, "lt": value < operand, "lte": value <= operand}[
        s["op"]
    ]


def _contains(a: Any, b: Any) -> bool:
    """jsonb `@>` below the top level: objects by key, arrays as sets of contained elements, scalars equal."""
    if isinstance(b, dict):
        return isinstance(a, dict) and all(k in a and _contains(a[k], v) for k, v in b.items())
    if isinstance(b, list):
        return isinstance(a, list) and all(any(_contains(x, y) for x in a) for y in b)
    return type(a) is type(b) and a == b


# --- the rows every read starts from -------------------------------------------------------------------


def where(
    start: datetime, end: datetime, names: Sequence[str] | None, filters: Sequence[PropertyFilter]
) -> tuple[str, list[Any]]:
    """Events in [start, end) of the given names (None: all) matching the filters."""
    condition, params = compile_filters(filters)
    return (
        f"event_time >= ? AND event_time < ? AND (?::VARCHAR[] IS NULL OR list_contains(?::VARCHAR[], event_name)) "
        f"AND {condition}",
        [start, end, _names(names), _names(names), *params],
    )


def _names(names: Sequence[str] | None) -> list[str] | None:
    return list(names) if names is not None else None


def _us(column: str = "event_time") -> str:
    return f"epoch_us({column})"


def _floor(us: str, unit: int) -> str:
    """Start of the `unit`-microsecond UTC bucket (unix-epoch aligned; floors before 1970 too)."""
    return f"({us} - ((({us}) % {unit}) + {unit}) % {unit})"


def from_us(us: int) -> datetime:
    return _UNIX + timedelta(microseconds=us)


def rollups(
    duck: Any, condition: str, params: list[Any], grain_us: int, edges: Sequence[datetime] | None = None
) -> tuple[list[datetime], list[str], list[int]]:
    """(bucket, event_name, events) like `event_rollups`: per `grain_us` UTC bucket, or, given `edges` (each
    local day's first instant, from Python), per local day stamped with its first instant, so PostgreSQL
    buckets it into the same local day, week or month with a hundredth of the rows to bind."""
    if edges is None:
        query = (
            f"SELECT {_floor(_us(), grain_us)} AS b, event_name, count(*) FROM events "  # noqa: S608 - fixed fragments
            f"WHERE {condition} GROUP BY 1, 2"
        )
        rows = duck.execute(query, params).fetchall()
        return [from_us(b) for b, _, _ in rows], [n for _, n, _ in rows], [c for _, _, c in rows]
    rows = duck.execute(
        f"""
        WITH edges AS (SELECT unnest(?::TIMESTAMPTZ[]) AS s, unnest(range(?)) AS k),
        ev AS (SELECT event_time, event_name FROM events WHERE {condition})
        SELECT b.k, ev.event_name, count(*) FROM ev ASOF JOIN edges b ON ev.event_time >= b.s GROUP BY 1, 2
        """,  # noqa: S608 - fixed fragments; values are bound
        [list(edges), len(edges), *params],
    ).fetchall()
    return [edges[k] for k, _, _ in rows], [n for _, n, _ in rows], [c for _, _, c in rows]


def activity(
    duck: Any, condition: str, params: list[Any]
) -> tuple[list[date], list[str], list[int], list[int]]:
    """(UTC day, user, slots 0..47, slots 48..95) like `user_activity`: slot s is bit 47 - s of its half, so
    PostgreSQL's `hi::bit(48) || lo::bit(48)` is the build's 96-slot bitmap."""
    slot = f"((({_us()} % {DAY_US}) + {DAY_US}) % {DAY_US}) // {SLOT_US}"
    rows = duck.execute(
        f"""
        SELECT day, distinct_id,
               bit_or(CASE WHEN slot < 48 THEN (1::BIGINT << (47 - slot)) ELSE 0::BIGINT END),
               bit_or(CASE WHEN slot >= 48 THEN (1::BIGINT << (95 - slot)) ELSE 0::BIGINT END)
        FROM (SELECT {_floor(_us(), DAY_US)} AS day, distinct_id, {slot} AS slot FROM events WHERE {condition})
        GROUP BY 1, 2
        """,  # noqa: S608 - fixed fragments; values are bound
        params,
    ).fetchall()
    return (
        [from_us(d).date() for d, *_ in rows],
        [r[1] for r in rows],
        [r[2] for r in rows],
        [r[3] for r in rows],
    )


def daily_users(duck: Any, condition: str, params: list[Any]) -> dict[date, int]:
    """Distinct users per UTC day (each day is wholly cold, so no merge is needed)."""
    rows = duck.execute(
        f"SELECT {_floor(_us(), DAY_US)}, count(DISTINCT distinct_id) FROM events "  # noqa: S608 - fixed fragments
        f"WHERE {condition} GROUP BY 1",
        params,
    ).fetchall()
    return {from_us(d).date(): n for d, n in rows}


def breakdown_pairs(
    duck: Any, key: str, condition: str, params: list[Any]
) -> tuple[list[str | None], list[str], list[int]]:
    """(the property's JSON text or NULL, user, events): PostgreSQL groups them as jsonb with the hot rows."""
    rows = duck.execute(
        "SELECT json_extract(properties, ?)::VARCHAR, distinct_id, count(*) FROM events "  # noqa: S608 - fixed text; the pointer is bound
        f"WHERE {condition} GROUP BY 1, 2",
        [pointer(key), *params],
    ).fetchall()
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def metric_columns(prop: str | None, dimensions: Sequence[str]) -> tuple[str, list[Any]]:
    """`num, dims` of one event for a custom metric, as PostgreSQL's build and raw series compute them, for
    both the Parquet rebuild (`warehouse.cold_rebuild`) and cold reads, so the two cannot drift apart.

    `num`: the property as a double only when it is a JSON number (`jsonb_typeof = 'number'`); a numeric
    string such as "12" is not a number there. The cast is a plain one, as PostgreSQL's: a JSON number that
    did not convert would raise rather than silently leave the sum. `dims`: JSON object text of the
    dimension keys that are present, whatever their value, JSON null included (`properties ? k`), in the
    definition's key order; DuckDB prints each value's JSON text and PostgreSQL parses it as jsonb.
    """
    num, params = "NULL::DOUBLE", []
    if prop is not None:
        num = f"CASE WHEN json_type(properties, ?) IN {_NUMBERS} THEN json_extract(properties, ?)::DOUBLE END"
        params += [pointer(prop), pointer(prop)]
    dims = "'{}'"
    if dimensions:
        parts = []
        for key in dimensions:
            parts.append(
                "CASE WHEN json_type(properties, ?) IS NOT NULL "
                "THEN to_json(?::VARCHAR)::VARCHAR || ':' || json_extract(properties, ?)::VARCHAR END"
            )
            params += [pointer(key), key, pointer(key)]
        dims = f"'{{' || array_to_string(list_filter([{', '.join(parts)}], lambda x: x IS NOT NULL), ',') || '}}'"
    return f"{num} AS num, {dims} AS dims", params


def metric_partials(
    duck: Any,
    condition: str,
    params: list[Any],
    edges: Sequence[datetime],
    prop: str | None,
    dimensions: Sequence[str],
    per_user: bool,
) -> list[tuple[int, str, str | None, int, float | None, int]]:
    """(bucket index, dimensions JSON text, user or NULL, events, sum, count of numbers) per bucket whose first
    instants are `edges` (computed in Python in the query's zone; each event goes to the last edge <= it)."""
    columns, column_params = metric_columns(prop, dimensions)
    user = "distinct_id" if per_user else "NULL::VARCHAR"
    rows = duck.execute(
        f"""
        WITH edges AS (SELECT unnest(?::TIMESTAMPTZ[]) AS s, unnest(range(?)) AS k),
        ev AS (SELECT event_time, distinct_id, {columns} FROM events WHERE {condition})
        SELECT b.k, ev.dims, {user}, count(*), sum(ev.num), count(ev.num)
        FROM ev ASOF JOIN edges b ON ev.event_time >= b.s
        WHERE ?::VARCHAR IS NULL OR ev.num IS NOT NULL
        GROUP BY 1, 2, 3
        """,  # noqa: S608 - fixed fragments; values are bound
        [list(edges), len(edges), *column_params, *params, prop],
    ).fetchall()
    return [tuple(r) for r in rows]


def recent(
    duck: Any,
    after: tuple[datetime, uuid.UUID] | None,
    since: datetime,
    until: datetime,
    names: Sequence[str] | None,
    filters: Sequence[PropertyFilter],
    limit: int,
) -> list[tuple]:
    """Newest first by (event_time, event_id) strictly before `after`, in [since, until)."""
    condition, params = where(since, until, names, filters)
    t, eid = after if after else (None, None)
    return duck.execute(
        "SELECT event_id, event_time, event_name, distinct_id, received_at, landed_at, properties::VARCHAR "  # noqa: S608 - fixed text; values are bound
        f"FROM events WHERE {condition} "
        "AND (?::TIMESTAMPTZ IS NULL OR event_time < ? OR (event_time = ? AND event_id < ?::UUID)) "
        "ORDER BY event_time DESC, event_id DESC LIMIT ?",
        [*params, t, t, t, str(eid) if eid else None, limit],
    ).fetchall()
