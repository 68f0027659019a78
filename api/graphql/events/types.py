"""Types of the events domain: series, totals, top events, breakdowns, recent events, active users, and the
live counts of the subscription."""

from __future__ import annotations

from datetime import date, datetime
from enum import Enum

import strawberry
from strawberry.scalars import JSON

from api.graphql import convert
from api.graphql.types import DateRange, Granularity, Long, PageInfo
from warehouse.reads import series


@strawberry.enum(description="Distinct users per local day over a trailing window of 1, 7 or 30 days.")
class ActiveUsersKind(Enum):
    DAU = 1
    WAU = 7
    MAU = 30


@strawberry.type(description="One bucket of a series. DST days have 23 or 25 hourly buckets.")
class Bucket:
    start: datetime = strawberry.field(description="First instant of the bucket, with its local UTC offset.")
    local_date: date = strawberry.field(description="Local calendar date of the bucket's start.")
    local_time: str = strawberry.field(description="Local wall time of the start, HH:MM.")
    utc_offset: str = strawberry.field(description="UTC offset at the start, ±HH:MM.")
    value: Long = strawberry.field(description="Events in the bucket.")


@strawberry.type(description="Where the answer came from: built aggregates, or raw events where they lag.")
class Sources:
    raw_days: int = strawberry.field(description="UTC days read from raw events (today, late data, filters).")
    aggregated_days: int = strawberry.field(description="UTC days read from clean aggregates.")


@strawberry.type(description="Event counts per bucket.")
class EventSeries:
    range: DateRange = strawberry.field(description="The dates and zone the series covers.")
    granularity: Granularity = strawberry.field(description="Bucket size.")
    total: Long = strawberry.field(description="Sum of all buckets.")
    buckets: list[Bucket] = strawberry.field(description="Every bucket of the range, zeros included.")
    sources: Sources = strawberry.field(
        description="How many UTC days came from aggregates and from raw events."
    )


@strawberry.type(description="A value for one local date.")
class DayValue:
    date: date = strawberry.field(description="Local date.")
    value: Long = strawberry.field(description="Value for that date.")


@strawberry.type(description="Distinct users per local day over a trailing window.")
class ActiveUsersSeries:
    kind: ActiveUsersKind = strawberry.field(description="DAU, WAU or MAU.")
    range: DateRange = strawberry.field(description="The dates and zone covered.")
    days: list[DayValue] = strawberry.field(
        description="Distinct users of the window ending on each local date."
    )


@strawberry.type(description="An event name and how often it occurred.")
class TopEvent:
    event_name: str = strawberry.field(description="Event name.")
    count: Long = strawberry.field(description="Events with that name in the range.")


@strawberry.type(description="The overview the earlier dashboard showed, in one round trip.")
class Metrics:
    total_events: Long = strawberry.field(description="All events in the range.")
    daily_active_users: list[DayValue] = strawberry.field(description="Distinct users per local day.")
    top_events: list[TopEvent] = strawberry.field(description="Most frequent event names.")
    date_range: DateRange = strawberry.field(description="The dates and zone covered.")


@strawberry.type(description="Events and distinct users for one value of a property.")
class BreakdownGroup:
    value: JSON | None = strawberry.field(description="The property's value; null where events lack it.")
    events: Long = strawberry.field(description="Events with that value.")
    users: Long = strawberry.field(description="Distinct users with that value.")


@strawberry.type(description="Top values of a property by events.")
class Breakdown:
    property: str = strawberry.field(description="The property grouped by.")
    range: DateRange = strawberry.field(description="The dates and zone covered.")
    total_events: Long = strawberry.field(
        description="All matching events, including values beyond the limit."
    )
    groups: list[BreakdownGroup] = strawberry.field(description="Values by events, descending.")


@strawberry.type(description="A raw event as landed.")
class Event:
    event_id: strawberry.ID = strawberry.field(description="The event's UUID (idempotency key).")
    event_name: str = strawberry.field(description="Event name.")
    distinct_id: str = strawberry.field(description="The user or device.")
    event_time: datetime = strawberry.field(description="When it happened (skew-corrected).")
    received_at: datetime = strawberry.field(description="When ingest accepted it.")
    landed_at: datetime = strawberry.field(description="When it was written to the warehouse.")
    properties: JSON = strawberry.field(description="The event's properties.")


@strawberry.type
class EventEdge:
    cursor: str = strawberry.field(description="Opaque position; pass as `after`.")
    node: Event = strawberry.field(description="The event.")


@strawberry.type(description="Newest events first; pass `pageInfo.endCursor` as `after` for the next page.")
class EventConnection:
    edges: list[EventEdge] = strawberry.field(description="Events of this page, newest first.")
    page_info: PageInfo = strawberry.field(description="Where the next page starts.")


@strawberry.type(description="Events of the project with event time in one second, as landed so far.")
class LiveEventCount:
    second: datetime = strawberry.field(description="The second counted (UTC).")
    events: int = strawberry.field(description="Events with event time in that second.")
    events_last_minute: int = strawberry.field(description="Events in the 60 seconds ending with it.")
    events_today: Long = strawberry.field(description="Events of the UTC day.")


def bucket(p: series.Point) -> Bucket:
    return Bucket(
        start=convert.bucket_start(p.local_start, p.utc_offset),
        local_date=p.local_start.date(),
        local_time=p.local_start.strftime("%H:%M"),
        utc_offset=convert.offset_text(p.utc_offset),
        value=p.value,
    )
