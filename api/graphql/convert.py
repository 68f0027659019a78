"""Warehouse values to the shared GraphQL types; each domain's converters live with its types."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from api.graphql.types import DateRange
from warehouse.reads.exact import Scope


def offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def bucket_start(local_start: datetime, offset: timedelta) -> datetime:
    return local_start.replace(tzinfo=timezone(offset))


def date_range(scope: Scope) -> DateRange:
    return DateRange(from_=scope.start, to=scope.end, timezone=scope.tz)
