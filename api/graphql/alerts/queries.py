"""Alert rules of a project with their state, and their firings; never cached."""

from __future__ import annotations

import uuid
from typing import Annotated

import strawberry

from api.graphql.alerts.types import AlertFiring, AlertRule, alert_firing, alert_rule
from api.graphql.arguments import Ctx, ProjectId
from api.graphql.context import Context
from api.graphql.errors import bad_input, forbidden
from api.graphql.permissions import CanReadProject
from warehouse import alerts


async def load_rule(ctx: Context, rule_id: str) -> alerts.AlertRuleRow:
    try:
        rid = uuid.UUID(str(rule_id))
    except ValueError:
        raise bad_input("id", "not an alert rule id (UUID)") from None
    found = await ctx.run(lambda conn: alerts.get_rule(conn, rid))
    if found is None or found.project_id not in await ctx.projects():
        raise forbidden("this alert rule")
    return found


@strawberry.type
class AlertQuery:
    @strawberry.field(
        description="Alert rules of a project with their state; never cached.",
        permission_classes=[CanReadProject],
    )
    async def alert_rules(self, info: Ctx, project_id: ProjectId) -> list[AlertRule]:
        ctx = info.context
        project = await ctx.project(project_id)
        return [alert_rule(r) for r in await ctx.run(lambda conn: alerts.list_rules(conn, project.id))]

    @strawberry.field(description="Firings of a project (or one rule), newest first.")
    async def alert_firings(
        self,
        info: Ctx,
        project_id: ProjectId,
        rule_id: Annotated[strawberry.ID | None, strawberry.argument(description="Only this rule.")] = None,
        limit: Annotated[int, strawberry.argument(description="1..200.")] = 50,
    ) -> list[AlertFiring]:
        ctx = info.context
        if not 1 <= limit <= 200:
            raise bad_input("limit", "must be between 1 and 200")
        project = await ctx.project(project_id)
        rid = None
        if rule_id is not None:
            rule = await load_rule(ctx, rule_id)
            if rule.project_id != project.id:
                raise forbidden("this alert rule")
            rid = rule.id
        rows = await ctx.run(lambda conn: alerts.list_firings(conn, project.id, rid, limit))
        return [alert_firing(f) for f in rows]
