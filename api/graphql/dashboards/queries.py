"""Saved dashboards of a project, scoped to the key's projects like every read."""

from __future__ import annotations

import strawberry

from api.graphql.arguments import Ctx, ProjectId
from api.graphql.dashboards.types import SavedDashboard, saved_dashboard
from api.graphql.permissions import CanReadProject
from warehouse import dashboards


@strawberry.type
class DashboardQuery:
    @strawberry.field(
        description="Saved dashboards of a project, by name.", permission_classes=[CanReadProject]
    )
    async def dashboards(self, info: Ctx, project_id: ProjectId) -> list[SavedDashboard]:
        ctx = info.context
        project = await ctx.project(project_id)
        return [
            saved_dashboard(d)
            for d in await ctx.run(lambda conn: dashboards.list_dashboards(conn, project.id))
        ]
