"""Argument types shared by every domain's resolvers, in one place (issue 14: they lived in queries.py, which
five sibling modules imported for them)."""

from __future__ import annotations

from datetime import date
from typing import Annotated

import strawberry
from strawberry.types import Info

from api.graphql.context import Context
from api.graphql.errors import bad_input
from api.graphql.inputs import PropertyFilter
from api.graphql.types import Granularity, UniqueBy

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


def limit_between(value: int, maximum: int, name: str) -> int:
    if not 1 <= value <= maximum:
        raise bad_input(name, f"must be between 1 and {maximum}")
    return value
