"""The committed GraphQL schema snapshot (`api/graphql/schema.graphql`) matches the schema the code builds."""

from __future__ import annotations

import strawberry
from strawberry.printer import print_schema
from strawberry.tools import merge_types

from api.graphql import snapshot
from api.graphql.schema import RootQuery
from api.graphql.types import LONG_SCALAR, Long


def test_the_committed_schema_snapshot_matches_the_code() -> None:
    diff = snapshot.difference(snapshot.current_sdl(), snapshot.SNAPSHOT.read_text(encoding="utf-8"))
    assert not diff, (
        f"the GraphQL schema changed without its snapshot: review the diff below, then run "
        f"`{snapshot.REGENERATE}` (or `make schema`) and commit api/graphql/schema.graphql\n{diff}"
    )


def test_a_schema_change_shows_up_as_a_difference() -> None:
    """Guards the guard: one added field is a non-empty diff naming it."""

    @strawberry.type
    class Planted:
        @strawberry.field
        def planted_field(self) -> int:
            return 1

    schema = strawberry.Schema(
        query=merge_types("Query", (RootQuery, Planted)), scalar_overrides={Long: LONG_SCALAR}
    )
    changed = print_schema(schema) + "\n"
    committed = snapshot.SNAPSHOT.read_text(encoding="utf-8")
    diff = snapshot.difference(changed, committed)
    assert "+  plantedField: Int!" in diff
