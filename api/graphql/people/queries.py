"""The `person` query: the person a distinct id belongs to (warehouse/identity.py)."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.graphql.arguments import Ctx
from api.graphql.errors import bad_input
from api.graphql.people.types import MAX_IDS, Person
from api.graphql.permissions import CanReadProject
from warehouse import identity


def _utf8(text: str) -> bool:
    """JSON can carry a lone surrogate (`\\ud800`) that no UTF-8 text, so no stored id, holds."""
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


@strawberry.type
class PeopleQuery:
    @strawberry.field(
        permission_classes=[CanReadProject],
        description="The person a distinct id belongs to; an id in no link is its own person.",
    )
    async def person(
        self,
        info: Ctx,
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
