"""Questions only raw events answer: property breakdowns and the latest events, page by page."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql
from psycopg.rows import class_row

from warehouse import identity
from warehouse.reads import cold as cold_reads
from warehouse.reads.exact import Scope, cold_duck_where, cold_reader
from warehouse.reads.filters import PropertyFilter, compile_filters
from warehouse.reads.plan import RawDataGone, ReadPlan, plan_reads

if TYPE_CHECKING:
    from pulseops.settings import ColdSettings


@dataclass(frozen=True)
class BreakdownRow:
    value: Any  # the property's JSON value; None where the event lacks the property
    events: int
    users: int


def breakdown(
    conn: psycopg.Connection,
    scope: Scope,
    key: str,
    limit: int,
    cold: ColdSettings | None = None,
    unique_by: str = "distinct_id",
    plan: ReadPlan | None = None,
) -> tuple[list[BreakdownRow], int]:
    """Events and distinct users per value of property `key` (top `limit` by events), and the total events.

    With cold days, DuckDB returns their (value, user, events) rows and PostgreSQL groups them with the hot
    rows of the same shape: values group by jsonb equality, users are counted distinct across both tiers.
    `unique_by="person"` counts persons: each event's id (and each cold row's) is joined to its person in
    PostgreSQL (warehouse/identity.py).
    """
    user: sql.Composable = sql.SQL("e.distinct_id")
    cold_user: sql.Composable = sql.SQL("c.u")
    join = cold_join = sql.SQL("")
    if unique_by == "person":
        user, join = identity.person_column("m", "e"), identity.person_join("m", "e")
        cold_user, cold_join = identity.person_column("cm", "c", "u"), identity.person_join("cm", "c", "u")
    first, last = scope.utc_days
    every_day = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    plan = plan or plan_reads(conn, scope.project_id, first, last, cold)
    in_cold = plan.require_raw(every_day)
    condition, params = compile_filters(scope.filters)
    s, e = scope.utc_range
    names = list(scope.event_names) if scope.event_names is not None else None
    hot_rows = sql.SQL(
        """
        FROM events e {join}
        WHERE e.project_id = %(p)s AND e.event_time >= %(s)s AND e.event_time < %(e)s
          AND (%(names)s::text[] IS NULL OR e.event_name = ANY(%(names)s::text[]))
          AND {condition}
        """
    ).format(condition=condition, join=join)
    if not in_cold:
        query = (
            sql.SQL(
                """
                SELECT e.properties -> %(key)s, count(*)::bigint, count(DISTINCT {user})::bigint,
                       sum(count(*)) OVER ()::bigint
                """
            ).format(user=user)
            + hot_rows
            + sql.SQL("GROUP BY 1 ORDER BY 2 DESC, 1 NULLS LAST LIMIT %(limit)s")
        )
    else:
        assert cold is not None
        duck_condition, duck_params = cold_duck_where(scope)
        with cold_reader(conn, scope.project_id, in_cold, cold, plan) as duck:
            params["cv"], params["cu"], params["cn"] = cold_reads.breakdown_pairs(
                duck, key, duck_condition, duck_params
            )
        query = (
            sql.SQL(
                "WITH parts AS (SELECT e.properties -> %(key)s AS v, {user} AS u, count(*)::bigint AS n"
            ).format(user=user)
            + hot_rows
            + sql.SQL(
                """
                GROUP BY 1, 2
                UNION ALL
                SELECT c.v::jsonb, {cold_user}, c.n
                FROM unnest(%(cv)s::text[], %(cu)s::text[], %(cn)s::bigint[]) AS c(v, u, n) {cold_join}
            )
            SELECT v, sum(n)::bigint, count(DISTINCT u)::bigint, sum(sum(n)) OVER ()::bigint
            FROM parts
            GROUP BY 1
            ORDER BY 2 DESC, 1 NULLS LAST
            LIMIT %(limit)s
            """
            ).format(cold_user=cold_user, cold_join=cold_join)
        )
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
    cold: ColdSettings | None = None,
    plan: ReadPlan | None = None,
) -> list[EventRow]:
    """Newest first by (event_time, event_id), strictly after the keyset position `after`.

    The primary key (project_id, event_time, event_id) serves the order, partition by partition from the
    newest, so a page costs the same on the first and the thousandth page. With `cold`, UTC days whose raw
    partition is gone continue the order from their Parquet (`_cold_page`); `plan` must then cover the UTC
    days from `since` to `after` (or today), made here when the caller has none.
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
        rows = cur.execute(
            query, {**params, "p": project_id, "t": t, "id": eid, "since": since, "names": names, "n": first}
        ).fetchall()
    if cold is None:
        return rows
    lo = since.astimezone(UTC).date() if since else date(1970, 1, 1)
    hi = after[0].astimezone(UTC).date() if after else datetime.now(UTC).date()
    plan = plan or plan_reads(conn, project_id, lo, hi, cold)
    return _cold_page(conn, project_id, first, after, event_names, filters, since, cold, rows, plan, lo, hi)


def _cold_page(
    conn: psycopg.Connection,
    project_id: uuid.UUID,
    first: int,
    after: tuple[datetime, uuid.UUID] | None,
    event_names: tuple[str, ...] | None,
    filters: tuple[PropertyFilter, ...],
    since: datetime | None,
    cold: ColdSettings,
    hot: list[EventRow],
    plan: ReadPlan,
    lo: date,
    hi: date,
) -> list[EventRow]:
    """Merge the hot page with cold days, newest day first, until no older day can enter the page.

    Days are opened in batches of 1, 2, 4 ... (a page usually ends inside one day); a day that is neither in
    PostgreSQL nor in the cold tier refuses only when the page would have to read it.
    """
    gone = sorted(plan.without_raw(lo, hi), reverse=True)
    if not gone:
        return hot
    verified = plan.verified_cold or frozenset()
    rows = list(hot)
    batch = 1
    while gone:
        rows.sort(key=lambda r: (r.event_time, r.event_id), reverse=True)
        del rows[first:]
        day_end = datetime.combine(gone[0] + timedelta(days=1), time(0), UTC)
        if len(rows) >= first and rows[-1].event_time >= day_end:
            break  # every remaining day is older than the page's oldest row
        if gone[0] not in verified:
            raise RawDataGone([gone[0]])
        days = []
        while gone and len(days) < batch and gone[0] in verified:
            days.append(gone.pop(0))
        start = (
            max(since, datetime.combine(days[-1], time(0), UTC))
            if since
            else datetime.combine(days[-1], time(0), UTC)
        )
        with cold_reader(conn, project_id, days, cold, plan) as duck:
            found = cold_reads.recent(
                duck, after, start, datetime.combine(days[0] + timedelta(days=1), time(0), UTC),
                event_names, filters, first,
            )  # fmt: skip
        rows += [
            EventRow(eid, t, name, who, received, landed, json.loads(props))
            for eid, t, name, who, received, landed, props in found
        ]
        batch = min(batch * 2, 32)
    rows.sort(key=lambda r: (r.event_time, r.event_id), reverse=True)
    return rows[:first]
