"""Saved dashboards (the web dashboard's named sets of panels): list, create, update, delete.

Panels are JSON validated in `warehouse.dashboards`; scoped to the key's projects like every read.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

import strawberry
from strawberry.scalars import JSON

from api.graphql.arguments import Ctx, ProjectId
from api.graphql.context import Context
from api.graphql.errors import bad_input, forbidden
from api.graphql.permissions import CanReadProject
from warehouse import dashboards


@strawberry.type(description="A saved dashboard: panels, each a chart with its own date range.")
class SavedDashboard:
    id: strawberry.ID = strawberry.field(description="The dashboard's id.")
    project_id: strawberry.ID = strawberry.field(description="The project it belongs to.")
    name: str = strawberry.field(description="Unique within the project.")
    panels: JSON = strawberry.field(
        description='[{"title", "kind": events|active_users|metric, "granularity", "chart": line|bar, '
        '"range": {"preset": 24h|7d|30d|90d} or {"from", "to"}, "eventNames"?, "metricId"?, "window"?}]'
    )
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When it was last saved.")


@strawberry.input(description="A dashboard's whole definition.")
class DashboardInput:
    name: str = strawberry.field(description="1..200 characters, unique within the project.")
    panels: JSON = strawberry.field(description="The panel list; see `SavedDashboard.panels`.")


def _public(d: dashboards.DashboardRow) -> SavedDashboard:
    return SavedDashboard(
        id=strawberry.ID(str(d.id)),
        project_id=strawberry.ID(str(d.project_id)),
        name=d.name,
        panels=d.panels,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


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
class DashboardQuery:
    @strawberry.field(
        description="Saved dashboards of a project, by name.", permission_classes=[CanReadProject]
    )
    async def dashboards(self, info: Ctx, project_id: ProjectId) -> list[SavedDashboard]:
        ctx = info.context
        project = await ctx.project(project_id)
        return [_public(d) for d in await ctx.run(lambda conn: dashboards.list_dashboards(conn, project.id))]


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
        return _public(created)

    @strawberry.mutation(description="Replace a dashboard's name and panels.")
    async def update_dashboard(self, info: Ctx, id: DashboardId, input: Definition) -> SavedDashboard:
        ctx = info.context
        current = await _load(ctx, id)
        updated = await _write(
            ctx, lambda conn: dashboards.update_dashboard(conn, current.id, input.name, input.panels)
        )
        if updated is None:
            raise forbidden("this dashboard")
        return _public(updated)

    @strawberry.mutation(description="Delete a dashboard. True if it existed.")
    async def delete_dashboard(self, info: Ctx, id: DashboardId) -> bool:
        ctx = info.context
        current = await _load(ctx, id)
        return await ctx.write(lambda conn: dashboards.delete_dashboard(conn, current.id))
