"""Types of saved dashboards: the web dashboard's named sets of panels (panels validated in
`warehouse.dashboards`)."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

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


def saved_dashboard(d: dashboards.DashboardRow) -> SavedDashboard:
    return SavedDashboard(
        id=strawberry.ID(str(d.id)),
        project_id=strawberry.ID(str(d.project_id)),
        name=d.name,
        panels=d.panels,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )
