"""Custom metric definitions: create, update, delete. A metric outside the key's projects is FORBIDDEN."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.graphql.arguments import Ctx, ProjectId
from api.graphql.context import Context
from api.graphql.errors import bad_input, forbidden
from api.graphql.metrics.queries import load_metric
from api.graphql.metrics.types import MetricDefinition, MetricInput, metric_definition
from api.graphql.permissions import CanReadProject
from warehouse import metric_defs


def _spec(data: MetricInput) -> metric_defs.MetricSpec:
    if data.filters is not None and not isinstance(data.filters, dict):
        raise bad_input("input.filters", "must be an object of property: value pairs")
    spec = metric_defs.MetricSpec(
        name=data.name,
        aggregation=data.aggregation.value,
        description=data.description,
        event_name=data.event_name,
        filters=data.filters,
        property=data.property,
        dimensions=tuple(data.dimensions),
    )
    try:
        spec.validate()
    except metric_defs.MetricError as exc:
        raise bad_input(f"input.{exc.field}", exc.reason) from None
    return spec


async def _write(ctx: Context, fn) -> metric_defs.MetricDefinition:
    def in_transaction(conn):
        try:
            return fn(conn)
        except metric_defs.MetricError as exc:
            raise bad_input(f"input.{exc.field}", exc.reason) from None

    return await ctx.write(in_transaction)


MetricId = Annotated[strawberry.ID, strawberry.argument(description="A metric of the key's projects.")]
Definition = Annotated[MetricInput, strawberry.argument(description="The whole definition.")]


@strawberry.type
class MetricMutation:
    @strawberry.mutation(
        permission_classes=[CanReadProject],
        description="Define a custom metric; its series is exact at once (raw until rebuilt).",
    )
    async def create_metric(self, info: Ctx, project_id: ProjectId, input: Definition) -> MetricDefinition:
        ctx = info.context
        project = await ctx.project(project_id)
        spec = _spec(input)
        created = await _write(
            ctx, lambda conn: metric_defs.create_metric(conn, project.org_id, project.id, spec)
        )
        return metric_definition(created)

    @strawberry.mutation(description="Replace a metric's definition.")
    async def update_metric(self, info: Ctx, id: MetricId, input: Definition) -> MetricDefinition:
        ctx = info.context
        metric = await load_metric(ctx, id)
        spec = _spec(input)
        updated = await _write(ctx, lambda conn: metric_defs.update_metric(conn, metric.id, spec))
        if updated is None:
            raise forbidden("this metric")
        return metric_definition(updated)

    @strawberry.mutation(description="Delete a metric and its built values. True if it existed.")
    async def delete_metric(self, info: Ctx, id: MetricId) -> bool:
        ctx = info.context
        metric = await load_metric(ctx, id)
        return await ctx.write(lambda conn: metric_defs.delete_metric(conn, metric.id))
