"""Alert rules, their evaluation state and the history of firings.

A rule compares one number of a project over a trailing window (events, distinct users, a custom metric,
dead letters, or seconds since the last landed event) with a threshold. The evaluator
(`alerting`) claims due rules here with `FOR UPDATE SKIP LOCKED`, so several evaluators share the
work and never evaluate one rule twice at once; delivery happens inside that claim, so a crash before the
commit re-evaluates and re-delivers (at-least-once), never loses a firing.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg.rows import class_row
from psycopg.types.json import Jsonb

from warehouse.db import set_local_statement_timeout

METRICS = ("events", "unique_users", "custom_metric", "dead_letters", "seconds_since_last_event")
COMPARISONS = {"gt": ">", "gte": "≥", "lt": "<", "lte": "≤"}
CHANNEL_KINDS = ("webhook", "slack", "email")
MAX_CHANNELS = 5
MIN_WINDOW_S, MAX_WINDOW_S = 60, 7 * 86400


class AlertError(ValueError):
    """A rule that cannot be stored; `field` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class AlertSpec:
    """The editable part of a rule. Channels: {"kind": "webhook", "url", "secret"?}, {"kind": "slack",
    "url"}, {"kind": "email", "to"}; a webhook without a secret gets a generated one."""

    name: str
    metric: str
    comparison: str
    threshold: float
    window_s: int
    cooldown_s: int = 3600
    event_name: str | None = None
    metric_id: uuid.UUID | None = None
    channels: tuple[dict[str, Any], ...] = ()
    enabled: bool = True

    def validate(self) -> None:
        if not 1 <= len(self.name) <= 200:
            raise AlertError("name", "must be 1..200 characters")
        if self.metric not in METRICS:
            raise AlertError("metric", f"one of {', '.join(METRICS)}")
        if self.comparison not in COMPARISONS:
            raise AlertError("comparison", f"one of {', '.join(COMPARISONS)}")
        if self.threshold != self.threshold or self.threshold in (float("inf"), float("-inf")):
            raise AlertError("threshold", "must be a finite number")
        if not MIN_WINDOW_S <= self.window_s <= MAX_WINDOW_S:
            raise AlertError("windowSeconds", f"between {MIN_WINDOW_S} and {MAX_WINDOW_S}")
        if not 0 <= self.cooldown_s <= MAX_WINDOW_S:
            raise AlertError("cooldownSeconds", f"between 0 and {MAX_WINDOW_S}")
        if (self.metric == "custom_metric") != (self.metric_id is not None):
            raise AlertError("metricId", "required for custom_metric, and only for it")
        if self.event_name is not None and not 1 <= len(self.event_name) <= 200:
            raise AlertError("eventName", "must be 1..200 characters")
        if self.event_name is not None and self.metric not in ("events", "unique_users"):
            raise AlertError("eventName", "only for events and unique_users")
        if len(self.channels) > MAX_CHANNELS:
            raise AlertError("channels", f"at most {MAX_CHANNELS}")
        for i, c in enumerate(self.channels):
            if not (c.get("id") and not (c.get("url") or c.get("to"))):  # an id alone keeps a stored channel
                _check_channel(f"channels[{i}]", c)


def _check_channel(where: str, c: dict[str, Any]) -> None:
    kind = c.get("kind")
    if kind not in CHANNEL_KINDS:
        raise AlertError(f"{where}.kind", f"one of {', '.join(CHANNEL_KINDS)}")
    if kind in ("webhook", "slack"):
        url = c.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2000:
            raise AlertError(f"{where}.url", "an http(s) URL")
        if parts.username or parts.password:
            raise AlertError(f"{where}.url", "must not carry credentials")
        secret = c.get("secret")
        if secret is not None and (not isinstance(secret, str) or not 16 <= len(secret) <= 200):
            raise AlertError(f"{where}.secret", "16..200 characters")
    else:
        to = c.get("to")
        if not isinstance(to, str) or "@" not in to or len(to) > 320 or any(ch in to for ch in "\r\n,;"):
            raise AlertError(f"{where}.to", "one e-mail address")


@dataclass(frozen=True)
class AlertRuleRow:
    id: uuid.UUID
    org_id: uuid.UUID
    project_id: uuid.UUID
    name: str
    metric: str
    event_name: str | None
    metric_id: uuid.UUID | None
    comparison: str
    threshold: float
    window_s: int
    cooldown_s: int
    channels: list[dict[str, Any]]
    enabled: bool
    state: str
    last_value: float | None
    last_evaluated_at: datetime | None
    last_fired_at: datetime | None
    last_error: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class FiringRow:
    id: int
    rule_id: uuid.UUID
    rule_name: str
    project_id: uuid.UUID
    fired_at: datetime
    value: float
    threshold: float
    comparison: str
    window_s: int
    deliveries: list[dict[str, Any]] = field(default_factory=list)


_COLUMNS = (
    "id, org_id, project_id, name, metric, event_name, metric_id, comparison, threshold, window_s, cooldown_s, "
    "channels, enabled, state, last_value, last_evaluated_at, last_fired_at, last_error, created_at, updated_at"
)


def _merge_channels(
    channels: tuple[dict[str, Any], ...], previous: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Stored channels: an input naming an existing channel's `id` keeps it as stored (URL and secret,
    which queries never reveal); new webhooks without a secret get a generated one."""
    known = {c.get("id"): c for c in previous}
    out = []
    for c in channels:
        if (
            c.get("id") in known
            and c.get("kind") == known[c["id"]]["kind"]
            and not (c.get("url") or c.get("to"))
        ):
            out.append(known[c["id"]])
            continue
        c = {k: v for k, v in c.items() if k in ("kind", "url", "to", "secret") and v is not None}
        _check_channel("channels", c)
        c["id"] = secrets.token_hex(6)
        if c["kind"] == "webhook" and not c.get("secret"):
            c["secret"] = secrets.token_urlsafe(32)
        if c["kind"] != "webhook":
            c.pop("secret", None)
        out.append(c)
    return out


def _check_metric(conn: psycopg.Connection, project_id: uuid.UUID, spec: AlertSpec) -> None:
    if spec.metric_id is None:
        return
    row = conn.execute(
        "SELECT project_id FROM metric_definitions WHERE id = %s", (spec.metric_id,)
    ).fetchone()
    if row is None or row[0] != project_id:
        raise AlertError("metricId", "not a metric of this project")


def create_rule(
    conn: psycopg.Connection, org_id: uuid.UUID, project_id: uuid.UUID, spec: AlertSpec
) -> AlertRuleRow:
    spec.validate()
    _check_metric(conn, project_id, spec)
    with conn.cursor(row_factory=class_row(AlertRuleRow)) as cur:
        try:
            return cur.execute(
                f"""
                INSERT INTO alert_rules (org_id, project_id, name, metric, event_name, metric_id, comparison,
                    threshold, window_s, cooldown_s, channels, enabled)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}
                """,  # noqa: S608 - constant column list
                (org_id, project_id, spec.name, spec.metric, spec.event_name, spec.metric_id, spec.comparison,
                 spec.threshold, spec.window_s, spec.cooldown_s, Jsonb(_merge_channels(spec.channels, [])),
                 spec.enabled),
            ).fetchone()  # fmt: skip
        except psycopg.errors.UniqueViolation as exc:
            raise AlertError("name", "an alert with this name exists in the project") from exc


def update_rule(conn: psycopg.Connection, rule_id: uuid.UUID, spec: AlertSpec) -> AlertRuleRow | None:
    """Replace a rule's definition; its state restarts at `pending` (the old state judged another rule)."""
    spec.validate()
    current = get_rule(conn, rule_id, lock=True)
    if current is None:
        return None
    _check_metric(conn, current.project_id, spec)
    channels = _merge_channels(spec.channels, current.channels)
    with conn.cursor(row_factory=class_row(AlertRuleRow)) as cur:
        try:
            return cur.execute(
                f"""
                UPDATE alert_rules SET name = %s, metric = %s, event_name = %s, metric_id = %s, comparison = %s,
                    threshold = %s, window_s = %s, cooldown_s = %s, channels = %s, enabled = %s,
                    state = 'pending', last_value = NULL, last_evaluated_at = NULL, last_error = '',
                    updated_at = clock_timestamp()
                WHERE id = %s RETURNING {_COLUMNS}
                """,  # noqa: S608 - constant column list
                (spec.name, spec.metric, spec.event_name, spec.metric_id, spec.comparison, spec.threshold,
                 spec.window_s, spec.cooldown_s, Jsonb(channels), spec.enabled, rule_id),
            ).fetchone()  # fmt: skip
        except psycopg.errors.UniqueViolation as exc:
            raise AlertError("name", "an alert with this name exists in the project") from exc


def delete_rule(conn: psycopg.Connection, rule_id: uuid.UUID) -> bool:
    return conn.execute("DELETE FROM alert_rules WHERE id = %s", (rule_id,)).rowcount == 1


def get_rule(conn: psycopg.Connection, rule_id: uuid.UUID, lock: bool = False) -> AlertRuleRow | None:
    with conn.cursor(row_factory=class_row(AlertRuleRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM alert_rules WHERE id = %s" + (" FOR UPDATE" if lock else ""),  # noqa: S608 - constant column list
            (rule_id,),
        ).fetchone()


def list_rules(conn: psycopg.Connection, project_id: uuid.UUID) -> list[AlertRuleRow]:
    with conn.cursor(row_factory=class_row(AlertRuleRow)) as cur:
        return cur.execute(
            f"SELECT {_COLUMNS} FROM alert_rules WHERE project_id = %s ORDER BY name",  # noqa: S608 - constant column list
            (project_id,),
        ).fetchall()


def list_firings(
    conn: psycopg.Connection, project_id: uuid.UUID, rule_id: uuid.UUID | None = None, limit: int = 50
) -> list[FiringRow]:
    with conn.cursor(row_factory=class_row(FiringRow)) as cur:
        return cur.execute(
            """
            SELECT f.id, f.rule_id, r.name AS rule_name, f.project_id, f.fired_at, f.value, f.threshold,
                   f.comparison, f.window_s, f.deliveries
            FROM alert_firings f JOIN alert_rules r ON r.id = f.rule_id
            WHERE f.project_id = %s AND (%s::uuid IS NULL OR f.rule_id = %s)
            ORDER BY f.fired_at DESC, f.id DESC LIMIT %s
            """,
            (project_id, rule_id, rule_id, limit),
        ).fetchall()


# --- evaluation ------------------------------------------------------------------------------------------


def claim_due_rule(conn: psycopg.Connection, interval_s: float, started: datetime) -> AlertRuleRow | None:
    """One enabled rule last evaluated at least `interval_s` before `started` (the evaluation pass's start,
    so a pass sees each rule once), locked until the caller's transaction ends; others skip it."""
    with conn.cursor(row_factory=class_row(AlertRuleRow)) as cur:
        return cur.execute(
            f"""
            SELECT {_COLUMNS} FROM alert_rules
            WHERE enabled AND (last_evaluated_at IS NULL OR last_evaluated_at <= %s - %s * interval '1 second')
            ORDER BY last_evaluated_at NULLS FIRST
            LIMIT 1 FOR UPDATE SKIP LOCKED
            """,  # noqa: S608 - constant column list
            (started, interval_s),
        ).fetchone()


def window_value(conn: psycopg.Connection, rule: AlertRuleRow, now: datetime) -> float | None:
    """The rule's number over [now - window, now); None when it is undefined (an average of no events,
    no event ever landed). Event-based metrics count by event time, like every chart."""
    start = now - timedelta(seconds=rule.window_s)
    if rule.metric in ("events", "unique_users"):
        count, users = conn.execute(
            """
            SELECT count(*), count(DISTINCT distinct_id) FROM events
            WHERE project_id = %s AND event_time >= %s AND event_time < %s
              AND (%s::text IS NULL OR event_name = %s)
            """,
            (rule.project_id, start, now, rule.event_name, rule.event_name),
        ).fetchone()
        return float(count if rule.metric == "events" else users)
    if rule.metric == "dead_letters":
        (n,) = conn.execute(
            "SELECT count(*) FROM dead_letters WHERE project_id = %s AND dead_at >= %s AND dead_at < %s",
            (rule.project_id, start, now),
        ).fetchone()
        return float(n)
    if rule.metric == "seconds_since_last_event":
        (last,) = conn.execute(
            "SELECT max(last_landed_at) FROM landed_days WHERE project_id = %s", (rule.project_id,)
        ).fetchone()
        return None if last is None else max(0.0, (now - last).total_seconds())
    metric = conn.execute(
        "SELECT event_name, filters, aggregation, property FROM metric_definitions WHERE id = %s",
        (rule.metric_id,),
    ).fetchone()
    if metric is None:
        return None
    event_name, filters, aggregation, prop = metric
    count, users, total, mean = conn.execute(
        """
        SELECT count(*), count(DISTINCT distinct_id), sum(num), avg(num)
        FROM (
            SELECT distinct_id, CASE WHEN jsonb_typeof(properties -> %(prop)s) = 'number'
                                     THEN (properties ->> %(prop)s)::double precision END AS num
            FROM events
            WHERE project_id = %(p)s AND event_time >= %(s)s AND event_time < %(e)s
              AND (%(name)s::text IS NULL OR event_name = %(name)s) AND properties @> %(filters)s
        ) x
        WHERE %(prop)s::text IS NULL OR num IS NOT NULL
        """,
        {
            "prop": prop,
            "p": rule.project_id,
            "s": start,
            "e": now,
            "name": event_name,
            "filters": Jsonb(filters),
        },
    ).fetchone()
    value = {"count": count, "unique_users": users, "sum": total if total is not None else 0.0, "avg": mean}
    v = value[aggregation]
    return None if v is None else float(v)


def evaluate_window(
    conn: psycopg.Connection, rule: AlertRuleRow, now: datetime, statement_timeout_ms: int
) -> float | None:
    """`window_value` in a savepoint under a statement timeout: a failing or slow query must not lose the
    transaction that holds the rule's claim."""
    with conn.transaction():
        set_local_statement_timeout(conn, statement_timeout_ms)
        return window_value(conn, rule, now)


def breached(comparison: str, value: float | None, threshold: float) -> bool:
    if value is None:
        return False
    return {
        "gt": value > threshold,
        "gte": value >= threshold,
        "lt": value < threshold,
        "lte": value <= threshold,
    }[comparison]


def should_notify(rule: AlertRuleRow, now: datetime) -> bool:
    """Notify on a breach unless the rule notified less than `cooldown_s` ago (a flapping or lasting
    breach notifies at most once per cooldown; the state shows `firing` meanwhile)."""
    return rule.last_fired_at is None or (now - rule.last_fired_at).total_seconds() >= rule.cooldown_s


def record_evaluation(
    conn: psycopg.Connection,
    rule_id: uuid.UUID,
    state: str,
    value: float | None,
    now: datetime,
    error: str = "",
) -> None:
    conn.execute(
        "UPDATE alert_rules SET state = %s, last_value = %s, last_evaluated_at = %s, last_error = %s "
        "WHERE id = %s",
        (state, value, now, error[:1000], rule_id),
    )


def record_firing(
    conn: psycopg.Connection,
    rule: AlertRuleRow,
    value: float,
    now: datetime,
    deliveries: list[dict[str, Any]],
) -> int:
    conn.execute("UPDATE alert_rules SET last_fired_at = %s WHERE id = %s", (now, rule.id))
    return conn.execute(
        """
        INSERT INTO alert_firings (rule_id, project_id, fired_at, value, threshold, comparison, window_s, deliveries)
        VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id
        """,
        (
            rule.id,
            rule.project_id,
            now,
            value,
            rule.threshold,
            rule.comparison,
            rule.window_s,
            Jsonb(deliveries),
        ),
    ).fetchone()[0]


def project_label(conn: psycopg.Connection, project_id: uuid.UUID) -> str:
    row = conn.execute(
        "SELECT o.slug || '/' || p.slug FROM projects p JOIN orgs o ON o.id = p.org_id WHERE p.id = %s",
        (project_id,),
    ).fetchone()
    return row[0] if row else str(project_id)
