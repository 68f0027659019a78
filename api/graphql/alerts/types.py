"""Types of alert rules and their firings. Webhook secrets appear only in a mutation's response; queries show
webhook/Slack URLs only as scheme://host/… (a Slack URL is itself a credential), see `alert_rule`."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import strawberry

from warehouse import alerts


@strawberry.enum(description="What a rule measures over its trailing window.")
class AlertMetric(Enum):
    EVENTS = "events"
    UNIQUE_USERS = "unique_users"
    CUSTOM_METRIC = "custom_metric"
    DEAD_LETTERS = "dead_letters"
    SECONDS_SINCE_LAST_EVENT = "seconds_since_last_event"


@strawberry.enum(description="value <comparison> threshold means the rule is breached.")
class Comparison(Enum):
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"


@strawberry.enum(description="PENDING: not evaluated yet; OK; FIRING: breached; ERROR: evaluation failed.")
class AlertState(Enum):
    PENDING = "pending"
    OK = "ok"
    FIRING = "firing"
    ERROR = "error"


@strawberry.enum(
    description="WEBHOOK: signed JSON POST; SLACK: Slack-compatible incoming webhook; EMAIL: SMTP."
)
class ChannelKind(Enum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    EMAIL = "email"


@strawberry.type(description="Where a firing is sent.")
class AlertChannel:
    id: str = strawberry.field(
        description="Send it back (with kind) to keep this channel unchanged on an update."
    )
    kind: ChannelKind = strawberry.field(description="Webhook, Slack or e-mail.")
    target: str = strawberry.field(
        description="E-mail address, or the URL's scheme://host/… (never in full)."
    )
    secret: str | None = strawberry.field(
        description="HMAC secret of a webhook: only in the response of the mutation that stored it."
    )


@strawberry.type(description="A threshold rule and its current state.")
class AlertRule:
    id: strawberry.ID = strawberry.field(description="The rule's id.")
    project_id: strawberry.ID = strawberry.field(description="The project it watches.")
    name: str = strawberry.field(description="Unique within the project.")
    metric: AlertMetric = strawberry.field(description="What is measured over the window.")
    event_name: str | None = strawberry.field(
        description="EVENTS/UNIQUE_USERS: only this event; null for all."
    )
    metric_id: strawberry.ID | None = strawberry.field(description="CUSTOM_METRIC: the metric.")
    comparison: Comparison = strawberry.field(description="How the value is compared with the threshold.")
    threshold: float = strawberry.field(description="The breach threshold.")
    window_seconds: int = strawberry.field(description="Trailing window in seconds.")
    cooldown_seconds: int = strawberry.field(description="Minimum time between two notifications.")
    channels: list[AlertChannel] = strawberry.field(description="Where firings are sent.")
    enabled: bool = strawberry.field(description="Disabled rules are not evaluated.")
    state: AlertState = strawberry.field(description="As of the last evaluation.")
    last_value: float | None = strawberry.field(
        description="Value at the last evaluation; null if undefined or not evaluated."
    )
    last_evaluated_at: datetime | None = strawberry.field(
        description="When the evaluator last looked at the rule."
    )
    last_fired_at: datetime | None = strawberry.field(description="When the rule last notified.")
    last_error: str = strawberry.field(
        description="Why the last evaluation failed (state ERROR), else empty."
    )
    created_at: datetime = strawberry.field(description="When it was created.")
    updated_at: datetime = strawberry.field(description="When its definition last changed.")


@strawberry.type(description="The outcome of sending one firing to one channel.")
class AlertDelivery:
    kind: ChannelKind = strawberry.field(description="The channel's kind.")
    target: str = strawberry.field(description="E-mail address, or the URL's scheme://host/….")
    ok: bool = strawberry.field(description="Whether the receiver accepted it.")
    status: int | None = strawberry.field(description="HTTP status (webhook, Slack); null for e-mail.")
    error: str = strawberry.field(description="Why it failed, else empty.")
    attempts: int = strawberry.field(description="How many attempts were made.")


@strawberry.type(description="One notification of a breached rule.")
class AlertFiring:
    id: strawberry.ID = strawberry.field(description="The firing's id.")
    rule_id: strawberry.ID = strawberry.field(description="The rule that fired.")
    rule_name: str = strawberry.field(description="Its current name.")
    fired_at: datetime = strawberry.field(description="When it fired.")
    value: float = strawberry.field(description="The value that breached.")
    threshold: float = strawberry.field(description="The rule's threshold at that time.")
    comparison: Comparison = strawberry.field(description="The rule's comparison at that time.")
    window_seconds: int = strawberry.field(description="The rule's window at that time.")
    deliveries: list[AlertDelivery] = strawberry.field(description="One outcome per channel.")


@strawberry.input(description="A channel; give only `id` (and `kind`) to keep a stored one unchanged.")
class AlertChannelInput:
    kind: ChannelKind = strawberry.field(description="Webhook, Slack or e-mail.")
    id: str | None = strawberry.field(
        default=None, description="A stored channel of this rule, kept as it is."
    )
    url: str | None = strawberry.field(default=None, description="webhook and slack")
    to: str | None = strawberry.field(default=None, description="email: one address")
    secret: str | None = strawberry.field(
        default=None, description="webhook: 16..200 characters; omitted: one is generated and returned once"
    )


@strawberry.input(description="A threshold rule: metric over the trailing window, compared with threshold.")
class AlertRuleInput:
    name: str = strawberry.field(description="1..200 characters, unique within the project.")
    metric: AlertMetric = strawberry.field(description="What to measure over the window.")
    comparison: Comparison = strawberry.field(description="Breached when value <comparison> threshold.")
    threshold: float = strawberry.field(description="A finite number.")
    window_seconds: int = strawberry.field(description="Trailing window, 60..604800 s.")
    cooldown_seconds: int = strawberry.field(default=3600, description="Minimum time between notifications.")
    event_name: str | None = strawberry.field(
        default=None, description="EVENTS/UNIQUE_USERS: only this event."
    )
    metric_id: strawberry.ID | None = strawberry.field(default=None, description="CUSTOM_METRIC: which one.")
    channels: list[AlertChannelInput] = strawberry.field(default_factory=list, description="Up to 5.")
    enabled: bool = strawberry.field(default=True, description="Disabled rules are not evaluated.")


def _masked(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/…" if parts.path not in ("", "/") or parts.query else url


def _channel(c: dict[str, Any], reveal: bool) -> AlertChannel:
    kind = ChannelKind(c["kind"])
    target = c["to"] if kind is ChannelKind.EMAIL else _masked(c["url"])
    return AlertChannel(id=c["id"], kind=kind, target=target, secret=c.get("secret") if reveal else None)


def alert_rule(r: alerts.AlertRuleRow, reveal: bool = False) -> AlertRule:
    return AlertRule(
        id=strawberry.ID(str(r.id)),
        project_id=strawberry.ID(str(r.project_id)),
        name=r.name,
        metric=AlertMetric(r.metric),
        event_name=r.event_name,
        metric_id=strawberry.ID(str(r.metric_id)) if r.metric_id else None,
        comparison=Comparison(r.comparison),
        threshold=r.threshold,
        window_seconds=r.window_s,
        cooldown_seconds=r.cooldown_s,
        channels=[_channel(c, reveal) for c in r.channels],
        enabled=r.enabled,
        state=AlertState(r.state),
        last_value=r.last_value,
        last_evaluated_at=r.last_evaluated_at,
        last_fired_at=r.last_fired_at,
        last_error=r.last_error,
        created_at=r.created_at,
        updated_at=r.updated_at,
    )


def alert_firing(f: alerts.FiringRow) -> AlertFiring:
    return AlertFiring(
        id=strawberry.ID(str(f.id)),
        rule_id=strawberry.ID(str(f.rule_id)),
        rule_name=f.rule_name,
        fired_at=f.fired_at,
        value=f.value,
        threshold=f.threshold,
        comparison=Comparison(f.comparison),
        window_seconds=f.window_s,
        deliveries=[
            AlertDelivery(
                kind=ChannelKind(d["kind"]),
                target=d["target"],
                ok=bool(d["ok"]),
                status=d.get("status"),
                error=d.get("error", ""),
                attempts=int(d.get("attempts", 1)),
            )
            for d in f.deliveries
        ],
    )
