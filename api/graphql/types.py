"""Types every domain shares: the Long scalar, common enums, the project, date ranges, pagination. Each
domain's own types live in its package (`api/graphql/<domain>/types.py`). Plain strawberry dataclasses: the
result cache stores them as msgspec JSON."""

from __future__ import annotations

from datetime import date
from enum import Enum
from typing import NewType

import strawberry

# A plain NewType in the types (the result cache's msgspec understands it), mapped to a scalar in the schema.
Long = NewType("Long", int)
LONG_SCALAR = strawberry.scalar(
    NewType("LongScalar", int),
    name="Long",
    description="A 64-bit integer (GraphQL's Int is 32-bit; event counts outgrow it).",
    serialize=int,
    parse_value=int,
)


@strawberry.enum(description="Bucket size of a time series, in the query's time zone.")
class Granularity(Enum):
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


@strawberry.enum(description="What a unique user is: a distinct id, or a person (ids joined by links).")
class UniqueBy(Enum):
    DISTINCT_ID = "distinct_id"
    PERSON = "person"


@strawberry.type(description="A project the API key may read.")
class Project:
    id: strawberry.ID = strawberry.field(description="Project id: pass it as `projectId`.")
    slug: str = strawberry.field(description="URL-safe name, unique in the org.")
    name: str = strawberry.field(description="Display name.")
    org_slug: str = strawberry.field(description="Slug of the project's org.")
    timezone: str = strawberry.field(description="Default zone of queries that name none.")


@strawberry.type(description="The range a result covers: local dates, inclusive, in `timezone`.")
class DateRange:
    from_: date = strawberry.field(name="from", description="First local date.")
    to: date = strawberry.field(description="Last local date (inclusive).")
    timezone: str = strawberry.field(description="IANA zone the dates are in.")


@strawberry.type
class PageInfo:
    has_next_page: bool = strawberry.field(description="More events follow.")
    end_cursor: str | None = strawberry.field(description="Cursor of the last event of this page.")
