"""Custom metrics: their definitions and their series. Scoped to the key's projects like every read."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry

from api.graphql import convert
from api.graphql.arguments import Ctx, From, Gran, ProjectId, To, UniqueByArg, Zone, normalized, read_scope
from api.graphql.context import Context
from api.graphql.errors import bad_input, forbidden
from api.graphql.metrics.types import MetricDefinition, MetricSeries, metric_definition, metric_point
from api.graphql.people import cache_args, extra_version
from api.graphql.permissions import CanReadProject
from api.graphql.types import Granularity, UniqueBy
from warehouse import metric_defs
from warehouse.reads import series
from warehouse.reads.metrics import metric_series
from warehouse.reads.plan import ReadPlan


async def load_metric(ctx: Context, metric_id: str) -> metric_defs.MetricDefinition:
    """The metric if it belongs to a project the key reads; FORBIDDEN otherwise (existence is not revealed)."""
    try:
        mid = uuid.UUID(str(metric_id))
    except ValueError:
        raise bad_input("metricId", "not a metric id (UUID)") from None
    metric = await ctx.run(lambda conn: metric_defs.get_metric(conn, mid))
    if metric is None or metric.project_id not in await ctx.projects():
        raise forbidden("this metric")
    return metric


@strawberry.type
class MetricQuery:
    @strawberry.field(
        description="Custom metric definitions of a project.", permission_classes=[CanReadProject]
    )
    async def metric_definitions(self, info: Ctx, project_id: ProjectId) -> list[MetricDefinition]:
        ctx = info.context
        project = await ctx.project(project_id)
        rows = await ctx.run(lambda conn: metric_defs.list_metrics(conn, project.id))
        return [metric_definition(m) for m in rows]

    @strawberry.field(
        description="A custom metric per bucket and dimension values; exact before any rebuild."
    )
    async def metric_series(
        self,
        info: Ctx,
        metric_id: Annotated[
            strawberry.ID, strawberry.argument(description="A metric of the key's projects.")
        ],
        from_: From,
        to: To,
        granularity: Gran = Granularity.DAY,
        timezone: Zone = None,
        unique_by: UniqueByArg = UniqueBy.DISTINCT_ID,
    ) -> MetricSeries:
        ctx = info.context
        metric = await load_metric(ctx, metric_id)
        g = granularity.value
        # Built rows serve only UTC days; anything else reads raw events, so raw limits apply.
        project, scope = await read_scope(ctx, str(metric.project_id), from_, to, timezone)
        # persons: built rows hold distinct ids, so a unique-users metric then reads raw events only
        if metric.aggregation != "unique_users":
            unique_by = UniqueBy.DISTINCT_ID
        raw_only = not (scope.tz == "UTC" and g == "day") or unique_by is UniqueBy.PERSON
        if raw_only:
            project, scope = await read_scope(ctx, str(metric.project_id), from_, to, timezone, raw_only=True)
        if series.bucket_count(scope, g) > ctx.settings.max_buckets:
            raise bad_input("granularity", f"more than {ctx.settings.max_buckets} buckets; use a coarser one")

        def build(conn, plan: ReadPlan) -> MetricSeries:
            points = metric_series(
                conn, metric, scope, g, cold=ctx.cold, unique_by=unique_by.value, plan=plan
            )
            return MetricSeries(
                metric_id=strawberry.ID(str(metric.id)),
                granularity=granularity,
                range=convert.date_range(scope),
                points=[metric_point(p) for p in points],
            )

        args = normalized(
            scope, g=g, metric=str(metric.id), updated=metric.updated_at.isoformat(), **cache_args(unique_by)
        )
        return await ctx.cached(
            "metricSeries", project, scope.utc_days, args, MetricSeries, build,
            extra_version(unique_by, project.id),
        )  # fmt: skip
