"""Types of the people domain: a person, distinct ids joined by links (warehouse/identity.py)."""

from __future__ import annotations

import strawberry
from strawberry.scalars import JSON

MAX_IDS = 1000


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
