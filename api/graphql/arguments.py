"""Argument types shared by every domain's resolvers, in one place (issue 14: they lived in queries.py, which
five sibling modules imported for them), with their validation (`read_scope`) and canonical form for cache
keys (`normalized`)."""

from __future__ import annotations

import zoneinfo
from datetime import date
from typing import Annotated, Any

import msgspec
import strawberry
from strawberry.types import Info

from api.graphql.context import Context, ProjectAccess
from api.graphql.errors import bad_input
from api.graphql.inputs import PropertyFilter
from api.graphql.types import Granularity, UniqueBy
from warehouse.reads.exact import Scope
from warehouse.reads.filters import FilterError, FilterOp
from warehouse.reads.filters import PropertyFilter as WarehouseFilter

Ctx = Info[Context, None]
From = Annotated[date, strawberry.argument(name="from", description="First local date (inclusive).")]
To = Annotated[date, strawberry.argument(description="Last local date (inclusive).")]
Zone = Annotated[str | None, strawberry.argument(description="IANA time zone; default: the project's zone.")]
Names = Annotated[list[str] | None, strawberry.argument(description="Only these event names.")]
Filters = Annotated[
    list[PropertyFilter] | None,
    strawberry.argument(description="Property filters, AND-ed (read raw events)."),
]
ProjectId = Annotated[
    strawberry.ID, strawberry.argument(description="A project of the key (see `projects`).")
]
Gran = Annotated[Granularity, strawberry.argument(description="Bucket size in the query's zone.")]
Limit = Annotated[int, strawberry.argument(description="How many rows at most (1..100).")]
UniqueByArg = Annotated[
    UniqueBy,
    strawberry.argument(
        description="DISTINCT_ID (default): every distinct id is a user. PERSON: ids joined by $identify / "
        "$create_alias links count once, events from before the link included (every user-day, or raw "
        "event, is joined to its person: costlier)."
    ),
]
MAX_TOP = 100
ZONES = frozenset(zoneinfo.available_timezones())
MAX_EVENT_NAMES = 50
EARLIEST, LATEST = date(1970, 1, 1), date(2199, 12, 31)  # far from datetime's limits in any zone and window


def limit_between(value: int, maximum: int, name: str) -> int:
    if not 1 <= value <= maximum:
        raise bad_input(name, f"must be between 1 and {maximum}")
    return value


async def read_scope(
    ctx: Context,
    project_id: str,
    start: date,
    end: date,
    timezone: str | None = None,
    event_names: list[str] | None = None,
    filters: list[PropertyFilter] | None = None,
    raw_only: bool = False,
) -> tuple[ProjectAccess, Scope]:
    """The tenant check and the shared arguments' validation, once per read resolver: every refusal names the
    argument at fault (BAD_USER_INPUT) before any warehouse read."""
    project = await ctx.project(project_id)
    tz = timezone if timezone is not None else project.timezone
    if tz not in ZONES:
        raise bad_input("timezone", f"unknown IANA time zone {tz[:64]!r}")
    if end < start:
        raise bad_input("to", "must not be before from")
    if start < EARLIEST or end > LATEST:
        raise bad_input("from" if start < EARLIEST else "to", f"dates must lie in {EARLIEST}..{LATEST}")
    converted = tuple(_filter(i, f) for i, f in enumerate(filters or ()))
    raw_only = raw_only or bool(converted)
    limit = ctx.settings.max_raw_range_days if raw_only else ctx.settings.max_range_days
    if (end - start).days + 1 > limit:
        why = " for property filters and breakdowns" if raw_only else ""
        raise bad_input("from", f"the range may span at most {limit} days{why}")
    # No hot-retention bound: raw days past it are read from the cold tier, and a day in neither
    # refuses inside the read snapshot (`RawDataGone`).
    names = None
    if event_names is not None:
        if len(event_names) > MAX_EVENT_NAMES or any(not 1 <= len(n) <= 200 for n in event_names):
            raise bad_input("eventNames", f"at most {MAX_EVENT_NAMES} names of 1..200 characters")
        names = tuple(sorted(set(event_names)))
    return project, Scope(project.id, start, end, tz, names, converted)


def normalized(scope: Scope, **extra: Any) -> dict[str, Any]:
    """Canonical arguments for cache keys: equal questions share an entry whatever their spelling."""
    return {
        "p": str(scope.project_id),
        "from": scope.start.isoformat(),
        "to": scope.end.isoformat(),
        "tz": scope.tz,
        "names": list(scope.event_names) if scope.event_names is not None else None,
        "filters": sorted(
            (f.normalized() for f in scope.filters), key=lambda d: msgspec.json.encode(d, order="sorted")
        ),
        **extra,
    }


def _filter(index: int, f: PropertyFilter) -> WarehouseFilter:
    where = f"filters[{index}]"
    op = f.op
    values = tuple(f.values or ())
    if op in (FilterOp.IN, FilterOp.NOT_IN) and f.value is not None and not values:
        values = (f.value,)
    converted = WarehouseFilter(f.property, op, f.value, values)
    try:
        converted.validate()
    except FilterError as exc:
        raise bad_input(where, str(exc)) from None
    return converted
