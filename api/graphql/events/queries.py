"""Questions about events and users (series, totals, top events, breakdowns, recent events, active users).
Each resolver: tenant check (the `CanReadProject` permission where the field declares it, else
`read_scope`) and validation (`read_scope`, api/graphql/arguments.py), then exact warehouse reads over one
read plan (warehouse/reads/plan.py), cached where the answer is a pure function of the data version."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import UTC, datetime, timedelta
from typing import Annotated

import msgspec
import strawberry

from api.graphql import convert
from api.graphql.arguments import (
    MAX_TOP,
    Ctx,
    Filters,
    From,
    Gran,
    Limit,
    Names,
    ProjectId,
    To,
    UniqueByArg,
    Zone,
    limit_between,
    normalized,
    read_scope,
)
from api.graphql.errors import bad_input, forbidden
from api.graphql.events.types import (
    ActiveUsersKind,
    ActiveUsersSeries,
    Breakdown,
    BreakdownGroup,
    DayValue,
    Event,
    EventConnection,
    EventEdge,
    EventSeries,
    Metrics,
    Sources,
    TopEvent,
    bucket,
)
from api.graphql.people import cache_args, extra_version
from api.graphql.permissions import CanReadProject
from api.graphql.types import Granularity, Long, PageInfo, Project, UniqueBy
from warehouse.reads import explore, series
from warehouse.reads.plan import ReadPlan


def _encode_cursor(project_id: uuid.UUID, row: explore.EventRow) -> str:
    raw = msgspec.json.encode({"p": str(project_id), "t": row.event_time.isoformat(), "i": str(row.event_id)})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[uuid.UUID, datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = msgspec.json.decode(raw, type=dict[str, str])
        t = datetime.fromisoformat(data["t"])
        if t.tzinfo is None:
            raise ValueError("naive time")
        return uuid.UUID(data["p"]), t, uuid.UUID(data["i"])
    except (binascii.Error, msgspec.DecodeError, KeyError, ValueError, TypeError):
        raise bad_input("after", "not a cursor returned by this API") from None


@strawberry.type
class EventQuery:
    @strawberry.field(description="Projects this key may read.")
    async def projects(self, info: Ctx) -> list[Project]:
        return [
            Project(
                id=strawberry.ID(str(p.id)),
                slug=p.slug,
                name=p.name,
                org_slug=p.org_slug,
                timezone=p.timezone,
            )
            for p in (await info.context.projects()).values()
        ]

    @strawberry.field(
        description="Events per bucket; exact, including events landed seconds ago.",
        permission_classes=[CanReadProject],
    )
    async def event_counts(
        self,
        info: Ctx,
        project_id: ProjectId,
        from_: From,
        to: To,
        granularity: Gran = Granularity.DAY,
        timezone: Zone = None,
        event_names: Names = None,
        filters: Filters = None,
    ) -> EventSeries:
        ctx = info.context
        project, scope = await read_scope(ctx, project_id, from_, to, timezone, event_names, filters)
        g = granularity.value
        if series.bucket_count(scope, g) > ctx.settings.max_buckets:
            raise bad_input("granularity", f"more than {ctx.settings.max_buckets} buckets; use a coarser one")

        def build(conn, plan: ReadPlan) -> EventSeries:
            points = series.event_counts(conn, scope, g, cold=ctx.cold, plan=plan)
            first, last = scope.utc_days
            span = (last - first).days + 1
            raw = span if scope.filters else len(plan.stale(first, last))
            return EventSeries(
                range=convert.date_range(scope),
                granularity=granularity,
                total=sum(p.value for p in points),
                buckets=[bucket(p) for p in points],
                sources=Sources(raw_days=raw, aggregated_days=span - raw),
            )

        args = normalized(scope, g=g)
        return await ctx.cached("eventCounts", project, scope.utc_days, args, EventSeries, build)

    @strawberry.field(
        description="Exact distinct users per local day: DAU, WAU (7 days) or MAU (30 days).",
        permission_classes=[CanReadProject],
    )
    async def active_users(
        self,
        info: Ctx,
        project_id: ProjectId,
        from_: From,
        to: To,
        kind: Annotated[
            ActiveUsersKind, strawberry.argument(description="Trailing window.")
        ] = ActiveUsersKind.DAU,
        timezone: Zone = None,
        event_names: Names = None,
        filters: Filters = None,
        unique_by: UniqueByArg = UniqueBy.DISTINCT_ID,
    ) -> ActiveUsersSeries:
        ctx = info.context
        # user_activity knows no event names: with names, every day is read raw
        raw_only = event_names is not None
        project, scope = await read_scope(
            ctx, project_id, from_, to, timezone, event_names, filters, raw_only=raw_only
        )
        wide = scope.widened(kind.value - 1)

        def build(conn, plan: ReadPlan) -> ActiveUsersSeries:
            days = series.active_users(
                conn, scope, kind.value, cold=ctx.cold, unique_by=unique_by.value, plan=plan
            )
            return ActiveUsersSeries(
                kind=kind, range=convert.date_range(scope), days=[DayValue(date=d, value=n) for d, n in days]
            )

        args = normalized(scope, w=kind.value, **cache_args(unique_by))
        return await ctx.cached(
            "activeUsers", project, wide.utc_days, args, ActiveUsersSeries, build,
            extra_version(unique_by, project.id),
        )  # fmt: skip

    @strawberry.field(description="All events in the range.", permission_classes=[CanReadProject])
    async def total_events(
        self,
        info: Ctx,
        project_id: ProjectId,
        from_: From,
        to: To,
        timezone: Zone = None,
        event_names: Names = None,
        filters: Filters = None,
    ) -> Long:
        ctx = info.context
        project, scope = await read_scope(ctx, project_id, from_, to, timezone, event_names, filters)
        return await ctx.cached(
            "totalEvents", project, scope.utc_days, normalized(scope), int,
            lambda conn, plan: series.total_events(conn, scope, cold=ctx.cold, plan=plan),
        )  # fmt: skip

    @strawberry.field(
        description="Most frequent event names in the range.", permission_classes=[CanReadProject]
    )
    async def top_events(
        self,
        info: Ctx,
        project_id: ProjectId,
        from_: From,
        to: To,
        limit: Limit = 10,
        timezone: Zone = None,
        filters: Filters = None,
    ) -> list[TopEvent]:
        ctx = info.context
        limit_between(limit, MAX_TOP, "limit")
        project, scope = await read_scope(ctx, project_id, from_, to, timezone, None, filters)

        def build(conn, plan: ReadPlan) -> list[TopEvent]:
            return [
                TopEvent(event_name=n, count=c)
                for n, c in series.top_events(conn, scope, limit, cold=ctx.cold, plan=plan)
            ]

        args = normalized(scope, limit=limit)
        return await ctx.cached("topEvents", project, scope.utc_days, args, list[TopEvent], build)

    @strawberry.field(
        description="Total events, daily active users and top events for a range, in one call.",
        permission_classes=[CanReadProject],
    )
    async def metrics(
        self,
        info: Ctx,
        project_id: ProjectId,
        from_: From,
        to: To,
        timezone: Zone = None,
        top: Limit = 10,
        unique_by: UniqueByArg = UniqueBy.DISTINCT_ID,
    ) -> Metrics:
        ctx = info.context
        limit_between(top, MAX_TOP, "top")
        project, scope = await read_scope(ctx, project_id, from_, to, timezone)

        def build(conn, plan: ReadPlan) -> Metrics:
            # one plan for the three parts: the days are classified once
            users = series.active_users(conn, scope, 1, cold=ctx.cold, unique_by=unique_by.value, plan=plan)
            return Metrics(
                total_events=series.total_events(conn, scope, cold=ctx.cold, plan=plan),
                daily_active_users=[DayValue(date=d, value=n) for d, n in users],
                top_events=[
                    TopEvent(event_name=n, count=c)
                    for n, c in series.top_events(conn, scope, top, cold=ctx.cold, plan=plan)
                ],
                date_range=convert.date_range(scope),
            )

        args = normalized(scope, top=top, **cache_args(unique_by))
        return await ctx.cached(
            "metrics", project, scope.utc_days, args, Metrics, build, extra_version(unique_by, project.id)
        )

    @strawberry.field(
        description="Events and distinct users per value of one property (raw events).",
        permission_classes=[CanReadProject],
    )
    async def breakdown(
        self,
        info: Ctx,
        project_id: ProjectId,
        property: Annotated[str, strawberry.argument(description="Property key to group by.")],
        from_: From,
        to: To,
        limit: Limit = 20,
        timezone: Zone = None,
        event_names: Names = None,
        filters: Filters = None,
        unique_by: UniqueByArg = UniqueBy.DISTINCT_ID,
    ) -> Breakdown:
        ctx = info.context
        limit_between(limit, MAX_TOP, "limit")
        if not 1 <= len(property) <= 200:
            raise bad_input("property", "must be 1..200 characters")
        project, scope = await read_scope(
            ctx, project_id, from_, to, timezone, event_names, filters, raw_only=True
        )

        def build(conn, plan: ReadPlan) -> Breakdown:
            groups, total = explore.breakdown(
                conn, scope, property, limit, cold=ctx.cold, unique_by=unique_by.value, plan=plan
            )
            return Breakdown(
                property=property,
                range=convert.date_range(scope),
                total_events=total,
                groups=[BreakdownGroup(value=g.value, events=g.events, users=g.users) for g in groups],
            )

        args = normalized(scope, property=property, limit=limit, **cache_args(unique_by))
        return await ctx.cached(
            "breakdown", project, scope.utc_days, args, Breakdown, build, extra_version(unique_by, project.id)
        )

    @strawberry.field(description="Latest landed events, newest first, with cursor pagination.")
    async def recent_events(
        self,
        info: Ctx,
        project_id: ProjectId,
        first: Annotated[int, strawberry.argument(description="Page size (1..max_page_size).")] = 50,
        after: Annotated[
            str | None, strawberry.argument(description="`endCursor` of the previous page.")
        ] = None,
        event_names: Names = None,
        filters: Filters = None,
    ) -> EventConnection:
        ctx = info.context
        limit_between(first, ctx.settings.max_page_size, "first")
        today = datetime.now(UTC).date()
        project, scope = await read_scope(ctx, project_id, today, today, "UTC", event_names, filters)
        position = None
        if after is not None:
            cursor_project, t, eid = _decode_cursor(after)
            if cursor_project != project.id:
                raise forbidden("the project of this cursor")
            position = (t, eid)
        # as far back as other questions reach; days past hot retention come from the cold tier
        oldest = datetime.combine(
            today - timedelta(days=ctx.settings.max_range_days - 1), datetime.min.time(), UTC
        )
        rows = await ctx.run(
            lambda conn: explore.recent_events(
                conn, project.id, first + 1, position, scope.event_names, scope.filters, since=oldest,
                cold=ctx.cold,
            ),
            gone_field="after",
        )  # fmt: skip
        edges = [
            EventEdge(
                cursor=_encode_cursor(project.id, r),
                node=Event(
                    event_id=strawberry.ID(str(r.event_id)),
                    event_name=r.event_name,
                    distinct_id=r.distinct_id,
                    event_time=r.event_time,
                    received_at=r.received_at,
                    landed_at=r.landed_at,
                    properties=r.properties,
                ),
            )
            for r in rows[:first]
        ]
        return EventConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
        )
