"""Saved dashboards: create, update, delete. Panels are JSON validated in `warehouse.dashboards`; a
dashboard outside the key's projects is FORBIDDEN like every read."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry

from api.graphql.arguments import Ctx, ProjectId
from api.graphql.context import Context
from api.graphql.dashboards.types import DashboardInput, SavedDashboard, saved_dashboard
from api.graphql.errors import bad_input, forbidden
from api.graphql.permissions import CanReadProject
from warehouse import dashboards


async def _load(ctx: Context, dashboard_id: str) -> dashboards.DashboardRow:
    try:
        did = uuid.UUID(str(dashboard_id))
    except ValueError:
        raise bad_input("id", "not a dashboard id (UUID)") from None
    found = await ctx.run(lambda conn: dashboards.get_dashboard(conn, did))
    if found is None or found.project_id not in await ctx.projects():
        raise forbidden("this dashboard")
    return found


async def _write(ctx: Context, fn) -> dashboards.DashboardRow | bool | None:
    def in_transaction(conn):
        try:
            return fn(conn)
        except dashboards.DashboardError as exc:
            raise bad_input(f"input.{exc.field}", exc.reason) from None

    return await ctx.write(in_transaction)


DashboardId = Annotated[strawberry.ID, strawberry.argument(description="A dashboard of the key's projects.")]
Definition = Annotated[DashboardInput, strawberry.argument(description="The whole definition.")]


@strawberry.type
class DashboardMutation:
    @strawberry.mutation(description="Save a new dashboard.", permission_classes=[CanReadProject])
    async def create_dashboard(self, info: Ctx, project_id: ProjectId, input: Definition) -> SavedDashboard:
        ctx = info.context
        project = await ctx.project(project_id)
        created = await _write(
            ctx,
            lambda conn: dashboards.create_dashboard(
                conn, project.org_id, project.id, input.name, input.panels
            ),
        )
        return saved_dashboard(created)

    @strawberry.mutation(description="Replace a dashboard's name and panels.")
    async def update_dashboard(self, info: Ctx, id: DashboardId, input: Definition) -> SavedDashboard:
        ctx = info.context
        current = await _load(ctx, id)
        updated = await _write(
            ctx, lambda conn: dashboards.update_dashboard(conn, current.id, input.name, input.panels)
        )
        if updated is None:
            raise forbidden("this dashboard")
        return saved_dashboard(updated)

    @strawberry.mutation(description="Delete a dashboard. True if it existed.")
    async def delete_dashboard(self, info: Ctx, id: DashboardId) -> bool:
        ctx = info.context
        current = await _load(ctx, id)
        return await ctx.write(lambda conn: dashboards.delete_dashboard(conn, current.id))
