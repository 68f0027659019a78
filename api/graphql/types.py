"""Output types of the read API. Plain strawberry dataclasses: the result cache stores them as msgspec JSON."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum
from typing import NewType

import strawberry
from strawberry.scalars import JSON

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


@strawberry.enum(description="Distinct users per local day over a trailing window of 1, 7 or 30 days.")
class ActiveUsersKind(Enum):
    DAU = 1
    WAU = 7
    MAU = 30


@strawberry.enum(description="How a custom metric aggregates matching events.")
class Aggregation(Enum):
    COUNT = "count"
    UNIQUE_USERS = "unique_users"
    SUM = "sum"
    AVG = "avg"


@strawberry.type(description="A project the API key may read.")
class Project:
    id: strawberry.ID
    slug: str
    name: str
    org_slug: str
    timezone: str = strawberry.field(description="Default zone of queries that name none.")


@strawberry.type(description="The range a result covers: local dates, inclusive, in `timezone`.")
class DateRange:
    from_: date = strawberry.field(name="from")
    to: date
    timezone: str


@strawberry.type(description="One bucket of a series. DST days have 23 or 25 hourly buckets.")
class Bucket:
    start: datetime = strawberry.field(description="First instant of the bucket, with its local UTC offset.")
    local_date: date = strawberry.field(description="Local calendar date of the bucket's start.")
    local_time: str = strawberry.field(description="Local wall time of the start, HH:MM.")
    utc_offset: str = strawberry.field(description="UTC offset at the start, ±HH:MM.")
    value: Long


@strawberry.type(description="Where the answer came from: built aggregates, or raw events where they lag.")
class Sources:
    raw_days: int = strawberry.field(description="UTC days read from raw events (today, late data, filters).")
    aggregated_days: int = strawberry.field(description="UTC days read from clean aggregates.")


@strawberry.type(description="Event counts per bucket.")
class EventSeries:
    range: DateRange
    granularity: Granularity
    total: Long
    buckets: list[Bucket]
    sources: Sources


@strawberry.type(description="A value for one local date.")
class DayValue:
    date: date
    value: Long


@strawberry.type(description="Distinct users per local day over a trailing window.")
class ActiveUsersSeries:
    kind: ActiveUsersKind
    range: DateRange
    days: list[DayValue]


@strawberry.type(description="An event name and how often it occurred.")
class TopEvent:
    event_name: str
    count: Long


@strawberry.type(description="The overview the earlier dashboard showed, in one round trip.")
class Metrics:
    total_events: Long
    daily_active_users: list[DayValue]
    top_events: list[TopEvent]
    date_range: DateRange


@strawberry.type(description="Events and distinct users for one value of a property.")
class BreakdownGroup:
    value: JSON | None = strawberry.field(description="The property's value; null where events lack it.")
    events: Long
    users: Long


@strawberry.type(description="Top values of a property by events.")
class Breakdown:
    property: str
    range: DateRange
    total_events: Long = strawberry.field(
        description="All matching events, including values beyond the limit."
    )
    groups: list[BreakdownGroup]


@strawberry.type(description="A raw event as landed.")
class Event:
    event_id: strawberry.ID
    event_name: str
    distinct_id: str
    event_time: datetime
    received_at: datetime
    landed_at: datetime
    properties: JSON


@strawberry.type
class EventEdge:
    cursor: str
    node: Event


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type(description="Newest events first; pass `pageInfo.endCursor` as `after` for the next page.")
class EventConnection:
    edges: list[EventEdge]
    page_info: PageInfo


@strawberry.type(description="A user-defined metric.")
class MetricDefinition:
    id: strawberry.ID
    project_id: strawberry.ID
    name: str
    description: str
    event_name: str | None = strawberry.field(description="Only events of this name; null for all.")
    filters: JSON = strawberry.field(description='Property equality filter, e.g. {"plan": "pro"}.')
    aggregation: Aggregation
    property: str | None = strawberry.field(description="Numeric property summed or averaged.")
    dimensions: list[str] = strawberry.field(description="Property keys the metric is grouped by.")
    created_at: datetime
    updated_at: datetime


@strawberry.type(description="A metric's value for one bucket and one combination of dimension values.")
class MetricPoint:
    start: datetime
    local_date: date
    local_time: str
    utc_offset: str
    dimensions: JSON
    value: float
    events: Long = strawberry.field(description="Events that contributed to the value.")


@strawberry.type
class MetricSeries:
    metric_id: strawberry.ID
    granularity: Granularity
    range: DateRange
    points: list[MetricPoint]


@strawberry.type
class DeadLetterCount:
    reason: str
    count: Long


@strawberry.type(description="Events of one UTC day and how many of them arrived late.")
class LateArrivalDay:
    date: date
    events: Long
    late: Long
    share: float


@strawberry.type(description="Health of the pipeline for one project.")
class IngestionHealth:
    last_landed_at: datetime | None
    seconds_since_last_landed: float | None
    events_today: Long = strawberry.field(description="Events of the current UTC day landed so far.")
    consumer_lag: Long | None = strawberry.field(
        description="Messages of all tenants waiting in the broker for the landing workers; null if unknown."
    )
    dead_letters_last_24h: list[DeadLetterCount]
    late_arrivals: list[LateArrivalDay] = strawberry.field(description="Last 7 UTC days.")
    days_awaiting_rebuild: int = strawberry.field(
        description="Past days whose aggregates miss late data (answers stay exact meanwhile)."
    )


@strawberry.type(description="Events of the project with event time in one second, as landed so far.")
class LiveEventCount:
    second: datetime
    events: int
    events_last_minute: int
    events_today: Long
