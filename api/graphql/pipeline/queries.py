"""Pipeline queries for the health page: project health, dead-letter samples with payloads, and the build of
each day."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Annotated

import strawberry
from starlette.concurrency import run_in_threadpool

from api.graphql.arguments import Ctx, ProjectId
from api.graphql.errors import bad_input
from api.graphql.permissions import CanReadProject
from api.graphql.pipeline.types import DayBuild, DeadLetter, DeadLetterCount, IngestionHealth, LateArrivalDay
from warehouse import health, pipeline

MAX_SAMPLES = 50
MAX_BUILD_DAYS = 400


@strawberry.type
class PipelineQuery:
    @strawberry.field(description="Newest dead letters of a project (last 7 days), optionally of one reason.")
    async def dead_letter_samples(
        self,
        info: Ctx,
        project_id: ProjectId,
        reason: Annotated[str | None, strawberry.argument(description="Only this reason code.")] = None,
        limit: Annotated[int, strawberry.argument(description="1..50.")] = 10,
    ) -> list[DeadLetter]:
        ctx = info.context
        if not 1 <= limit <= MAX_SAMPLES:
            raise bad_input("limit", f"must be between 1 and {MAX_SAMPLES}")
        if reason is not None and not 1 <= len(reason) <= 100:
            raise bad_input("reason", "must be 1..100 characters")
        project = await ctx.project(project_id)
        since = datetime.now(UTC) - timedelta(days=7)
        rows = await ctx.run(
            lambda conn: pipeline.dead_letter_samples(conn, project.id, reason, since, limit)
        )
        return [
            DeadLetter(
                id=strawberry.ID(str(r.id)),
                dead_at=r.dead_at,
                reason=r.reason,
                detail=r.detail,
                payload=r.payload,
                payload_bytes=r.payload_bytes,
                source_topic=r.source_topic,
                source_partition=r.source_partition,
                source_offset=r.source_offset,
            )
            for r in rows
        ]

    @strawberry.field(description="Landed UTC days in [from, to], newest first, with their last build's run.")
    async def day_builds(
        self,
        info: Ctx,
        project_id: ProjectId,
        from_: Annotated[date, strawberry.argument(name="from", description="First UTC day.")],
        to: Annotated[date, strawberry.argument(description="Last UTC day.")],
    ) -> list[DayBuild]:
        ctx = info.context
        if to < from_:
            raise bad_input("to", "must not be before from")
        if (to - from_).days + 1 > MAX_BUILD_DAYS:
            raise bad_input("from", f"at most {MAX_BUILD_DAYS} days")
        project = await ctx.project(project_id)
        rows = await ctx.run(lambda conn: pipeline.day_builds(conn, project.id, from_, to))
        return [
            DayBuild(
                date=r.day,
                events=r.events,
                landed_version=r.landed_version,
                built_version=r.built_version,
                built_at=r.built_at,
                run_id=r.run_id,
                stale=r.built_version != r.landed_version,
                last_landed_at=r.last_landed_at,
                build_failures=r.build_failures,
                build_error=r.build_error,
                next_attempt_at=r.next_attempt_at,
            )
            for r in rows
        ]


@strawberry.type
class IngestionHealthQuery:
    @strawberry.field(
        description="Freshness, dead letters, late arrivals and consumer lag; never cached.",
        permission_classes=[CanReadProject],
    )
    async def ingestion_health(self, info: Ctx, project_id: ProjectId) -> IngestionHealth:
        ctx = info.context
        project = await ctx.project(project_id)
        now = datetime.now(UTC)
        lag_s = ctx.services.settings.orchestration.late_lag_s
        h = await ctx.run(lambda conn: health.project_health(conn, project.id, now, 7, lag_s))
        return IngestionHealth(
            last_landed_at=h.last_landed_at,
            seconds_since_last_landed=(now - h.last_landed_at).total_seconds() if h.last_landed_at else None,
            events_today=h.events_today,
            consumer_lag=await run_in_threadpool(ctx.services.lag),  # the broker's lag probe blocks
            dead_letters_last_24h=[
                DeadLetterCount(reason=r, count=n) for r, n in h.dead_letters_by_reason.items()
            ],
            late_arrivals=[
                LateArrivalDay(
                    date=d.day, events=d.events, late=d.late, share=d.late / d.events if d.events else 0.0
                )
                for d in h.late_by_day
            ],
            days_awaiting_rebuild=h.stale_days,
        )
