"""Cache-key parts of person answers: events and metrics resolvers take a `uniqueBy` argument and ask this
module for them, so the default (DISTINCT_ID) keeps its cache keys and answers byte for byte."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg

from api.graphql.types import UniqueBy
from warehouse import identity


def cache_args(unique_by: UniqueBy) -> dict[str, Any]:
    """Extra normalized arguments: none for the default, so its cache keys stay what they were."""
    return {"by": unique_by.value} if unique_by is UniqueBy.PERSON else {}


def extra_version(unique_by: UniqueBy, project_id: Any) -> Callable[[psycopg.Connection], str] | None:
    """For person answers the data version also moves when the project's links change (a late link merges
    two persons on days whose events did not change)."""
    if unique_by is not UniqueBy.PERSON:
        return None
    return lambda conn: identity.version(conn, project_id)
