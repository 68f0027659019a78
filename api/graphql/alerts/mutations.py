"""Alert rules: create, replace, delete. Rules are evaluated by `python -m alerting` (see docs/dashboards.md);
the API only stores them. Webhook secrets are returned once, by the mutation that stores them."""

from __future__ import annotations

from typing import Annotated

import strawberry

from api.graphql.alerts.queries import load_rule
from api.graphql.alerts.types import AlertRule, AlertRuleInput, alert_rule
from api.graphql.arguments import Ctx, ProjectId
from api.graphql.context import Context
from api.graphql.errors import bad_input, forbidden
from api.graphql.metrics import load_metric
from api.graphql.permissions import CanReadProject
from warehouse import alerts


async def _spec(ctx: Context, data: AlertRuleInput) -> alerts.AlertSpec:
    metric_id = None
    if data.metric_id is not None:
        metric_id = (await load_metric(ctx, data.metric_id)).id
    spec = alerts.AlertSpec(
        name=data.name,
        metric=data.metric.value,
        comparison=data.comparison.value,
        threshold=data.threshold,
        window_s=data.window_seconds,
        cooldown_s=data.cooldown_seconds,
        event_name=data.event_name,
        metric_id=metric_id,
        channels=tuple(
            {"kind": c.kind.value, "id": c.id, "url": c.url, "to": c.to, "secret": c.secret}
            for c in data.channels
        ),
        enabled=data.enabled,
    )
    try:
        spec.validate()
    except alerts.AlertError as exc:
        raise bad_input(f"input.{exc.field}", exc.reason) from None
    return spec


async def _write(ctx: Context, fn):
    def in_transaction(conn):
        try:
            return fn(conn)
        except alerts.AlertError as exc:
            raise bad_input(f"input.{exc.field}", exc.reason) from None

    return await ctx.write(in_transaction)


RuleId = Annotated[strawberry.ID, strawberry.argument(description="An alert rule of the key's projects.")]
RuleDefinition = Annotated[AlertRuleInput, strawberry.argument(description="The whole definition.")]


@strawberry.type
class AlertMutation:
    @strawberry.mutation(
        description="Create a rule; the response carries generated webhook secrets (once).",
        permission_classes=[CanReadProject],
    )
    async def create_alert_rule(self, info: Ctx, project_id: ProjectId, input: RuleDefinition) -> AlertRule:
        ctx = info.context
        project = await ctx.project(project_id)
        spec = await _spec(ctx, input)
        if spec.metric_id is not None:
            metric = await load_metric(ctx, str(spec.metric_id))
            if metric.project_id != project.id:
                raise bad_input("input.metricId", "not a metric of this project")
        created = await _write(ctx, lambda conn: alerts.create_rule(conn, project.org_id, project.id, spec))
        return alert_rule(created, reveal=True)

    @strawberry.mutation(
        description="Replace a rule's definition (state restarts at PENDING); new webhook secrets are returned."
    )
    async def update_alert_rule(self, info: Ctx, id: RuleId, input: RuleDefinition) -> AlertRule:
        ctx = info.context
        current = await load_rule(ctx, id)
        spec = await _spec(ctx, input)
        updated = await _write(ctx, lambda conn: alerts.update_rule(conn, current.id, spec))
        if updated is None:
            raise forbidden("this alert rule")
        kept = {c["id"] for c in current.channels}
        rule = alert_rule(updated, reveal=True)
        for c in rule.channels:
            if c.id in kept:
                c.secret = None  # only secrets created by this mutation are shown
        return rule

    @strawberry.mutation(description="Delete a rule and its history. True if it existed.")
    async def delete_alert_rule(self, info: Ctx, id: RuleId) -> bool:
        ctx = info.context
        current = await load_rule(ctx, id)
        return await ctx.write(lambda conn: alerts.delete_rule(conn, current.id))
