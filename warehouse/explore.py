"""Questions only raw events answer: property breakdowns and the latest events, page by page."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from warehouse.exact import Scope, require_raw
from warehouse.filters import PropertyFilter, compile_filters


@dataclass(frozen=True)
class BreakdownRow:
    value: Any  # the property's JSON value; None where the event lacks the property
    events: int
    users: int


def breakdown(conn: psycopg.Connection, scope: Scope, key: str, limit: int) -> tuple[list[BreakdownRow], int]:
    """Events and distinct users per value of property `key` (top `limit` by events), and the total events."""
    first, last = scope.utc_days
    require_raw(conn, scope.project_id, [first + timedelta(days=i) for i in range((last - first).days + 1)])
    condition, params = compile_filters(scope.filters)
    s, e = scope.utc_range
    names = list(scope.event_names) if scope.event_names is not None else None
    query = sql.SQL(
        """
        SELECT e.properties -> %(key)s, count(*)::bigint, count(DISTINCT e.distinct_id)::bigint,
               sum(count(*)) OVER ()::bigint
        FROM events e
        WHERE e.project_id = %(p)s AND e.event_time >= %(s)s AND e.event_time < %(e)s
          AND (%(names)s::text[] IS NULL OR e.event_name = ANY(%(names)s::text[]))
          AND {condition}
        GROUP BY 1
        ORDER BY 2 DESC, 1 NULLS LAST
        LIMIT %(limit)s
        """
    ).format(condition=condition)
    rows = conn.execute(
        query, {**params, "key": key, "p": scope.project_id, "s": s, "e": e, "names": names, "limit": limit}
    ).fetchall()
    total = rows[0][3] if rows else 0
    return [BreakdownRow(v, n, u) for v, n, u, _ in rows], total


@dataclass(frozen=True)
class EventRow:
    event_id: uuid.UUID
    event_time: datetime
    event_name: str
    distinct_id: str
    received_at: datetime
    landed_at: datetime
    properties: dict


def recent_events(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    first: int,
    after: tuple[datetime, uuid.UUID] | None = None,
    event_names: tuple[str, ...] | None = None,
    filters: tuple[PropertyFilter, ...] = (),
    since: datetime | None = None,
) -> list[EventRow]:
    """Newest first by (event_time, event_id), strictly after the keyset position `after`.

    The primary key (project_id, event_time, event_id) serves the order, partition by partition from the
    newest, so a page costs the same on the first and the thousandth page.
    """
    condition, params = compile_filters(filters)
    query = sql.SQL(
        """
        SELECT e.event_id, e.event_time, e.event_name, e.distinct_id, e.received_at, e.landed_at, e.properties
        FROM events e
        WHERE e.project_id = %(p)s
          AND (%(t)s::timestamptz IS NULL OR (e.event_time, e.event_id) < (%(t)s, %(id)s::uuid))
          AND (%(since)s::timestamptz IS NULL OR e.event_time >= %(since)s)
          AND (%(names)s::text[] IS NULL OR e.event_name = ANY(%(names)s::text[]))
          AND {condition}
        ORDER BY e.event_time DESC, e.event_id DESC
        LIMIT %(n)s
        """
    ).format(condition=condition)
    t, eid = after if after else (None, None)
    names = list(event_names) if event_names is not None else None
    with conn.cursor(row_factory=class_row(EventRow)) as cur:
        return cur.execute(
            query, {**params, "p": project_id, "t": t, "id": eid, "since": since, "names": names, "n": first}
        ).fetchall()
