"""Warehouse rows to GraphQL types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from api.graphql.types import Bucket, DateRange
from warehouse.reads import series
from warehouse.reads.exact import Scope


def offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def bucket_start(local_start: datetime, offset: timedelta) -> datetime:
    return local_start.replace(tzinfo=timezone(offset))


def bucket(p: series.Point) -> Bucket:
    return Bucket(
        start=bucket_start(p.local_start, p.utc_offset),
        local_date=p.local_start.date(),
        local_time=p.local_start.strftime("%H:%M"),
        utc_offset=offset_text(p.utc_offset),
        value=p.value,
    )


def date_range(scope: Scope) -> DateRange:
    return DateRange(from_=scope.start, to=scope.end, timezone=scope.tz)
