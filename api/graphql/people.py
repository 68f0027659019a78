"""People: the `uniqueBy` argument of unique-user questions and the `person` query (warehouse/identity.py).

Kept apart from events.py and metrics.py: resolvers there take a `uniqueBy` argument and ask this module for
the extra cache-key parts, so the default (DISTINCT_ID) keeps its cache keys and answers byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from typing import Annotated, Any

import psycopg
import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from api.graphql.context import Context
from api.graphql.errors import bad_input
from api.graphql.permissions import CanReadProject
from warehouse import identity

MAX_IDS = 1000


@strawberry.enum(description="What a unique user is: a distinct id, or a person (ids joined by links).")
class UniqueBy(Enum):
    DISTINCT_ID = "distinct_id"
    PERSON = "person"


UniqueByArg = Annotated[
    UniqueBy,
    strawberry.argument(
        description="DISTINCT_ID (default): every distinct id is a user. PERSON: ids joined by $identify / "
        "$create_alias links count once, events from before the link included (every user-day, or raw "
        "event, is joined to its person: costlier)."
    ),
]


def cache_args(unique_by: UniqueBy) -> dict[str, Any]:
    """Extra normalized arguments: none for the default, so its cache keys stay what they were."""
    return {"by": unique_by.value} if unique_by is UniqueBy.PERSON else {}


def extra_version(unique_by: UniqueBy, project_id: Any) -> Callable[[psycopg.Connection], str] | None:
    """For person answers the data version also moves when the project's links change (a late link merges
    two persons on days whose events did not change)."""
    if unique_by is not UniqueBy.PERSON:
        return None
    return lambda conn: identity.version(conn, project_id)


def _utf8(text: str) -> bool:
    """JSON can carry a lone surrogate (`\\ud800`) that no UTF-8 text, so no stored id, holds."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@strawberry.type(description="A person: distinct ids joined by links, and their person properties.")
class Person:
    person_id: str = strawberry.field(
        description="The person's label: its smallest distinct id (byte order); changes when a link merges "
        "it with a person whose ids sort before."
    )
    distinct_ids: list[str] = strawberry.field(
        description=f"The linked ids in byte order (at most {MAX_IDS}; see distinctIdCount)."
    )
    distinct_id_count: int = strawberry.field(description="How many ids the person has.")
    properties: JSON = strawberry.field(
        description="Per key the last $set by event time over all the person's ids, else the first $set_once."
    )


@strawberry.type
class PeopleQuery:
    @strawberry.field(
        permission_classes=[CanReadProject],
        description="The person a distinct id belongs to; an id in no link is its own person.",
    )
    async def person(
        self,
        info: Info[Context, None],
        project_id: Annotated[strawberry.ID, strawberry.argument(description="A project of the key.")],
        distinct_id: Annotated[str, strawberry.argument(description="Any id of the person.")],
    ) -> Person:
        ctx = info.context
        project = await ctx.project(project_id)
        if (
            not 1 <= len(distinct_id) <= identity.MAX_ID_CHARS
            or "\x00" in distinct_id
            or not _utf8(distinct_id)
        ):
            raise bad_input(
                "distinctId", f"must be 1..{identity.MAX_ID_CHARS} characters of UTF-8 without NUL"
            )
        found = await ctx.run(lambda conn: identity.person(conn, project.id, distinct_id, MAX_IDS))
        return Person(
            person_id=found.person_id,
            distinct_ids=found.distinct_ids,
            distinct_id_count=found.distinct_id_count,
            properties=found.properties,
        )
