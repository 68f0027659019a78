"""The dashboards domain: saved dashboards (`dashboards`, `createDashboard`, `updateDashboard`,
`deleteDashboard`)."""

from api.graphql.dashboards.mutations import DashboardMutation
from api.graphql.dashboards.queries import DashboardQuery

__all__ = ["DashboardMutation", "DashboardQuery"]
