"""The alert evaluator: a small process of its own (`python -m alerting`, run by `pulseops up`).

Why not a Dagster sensor: its loop floor is ~5 s on top of the interval, a sensor tick should not block on
webhooks, and alerts about the pipeline must keep working when Dagster is down. Why not the landing worker:
that is the ingest hot path. This loop wakes every `tick_s`, claims each rule whose last evaluation is
`interval_s` old (`FOR UPDATE SKIP LOCKED`: several evaluators share rules, none evaluates one twice),
computes the window value from raw events, notifies on a breach unless within the cooldown, and records
state, value and firing in the same transaction. Latency from a breach to the notification is at most
`interval_s + tick_s` plus evaluation and delivery time.
"""

from __future__ import annotations

import logging
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

from alerting.channels import Delivery, deliver
from pulseops.settings import Settings
from warehouse import alerts
from warehouse.db import connect

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    rule_id: uuid.UUID
    state: str
    value: float | None
    fired: bool
    deliveries: tuple[Delivery, ...] = ()


def evaluate_due(conn: psycopg.Connection, settings: Settings, limit: int = 1000) -> list[Evaluation]:
    """Evaluate every due rule once, one transaction per rule; returns what happened."""
    done: list[Evaluation] = []
    started = datetime.now(UTC)
    while len(done) < limit:
        with conn.transaction():
            rule = alerts.claim_due_rule(conn, settings.alerts.interval_s, started)
            if rule is None:
                break
            done.append(_evaluate(conn, rule, settings))
    return done


def _evaluate(conn: psycopg.Connection, rule: alerts.AlertRuleRow, settings: Settings) -> Evaluation:
    now = datetime.now(UTC)
    try:
        value = alerts.evaluate_window(conn, rule, now, settings.query.statement_timeout_ms)
    except psycopg.Error as exc:
        log.warning("alert %s: evaluation failed: %s", rule.id, exc)
        alerts.record_evaluation(
            conn, rule.id, "error", None, now, f"evaluation failed: {type(exc).__name__}"
        )
        return Evaluation(rule.id, "error", None, False)
    if not alerts.breached(rule.comparison, value, rule.threshold):
        alerts.record_evaluation(conn, rule.id, "ok", value, now)
        return Evaluation(rule.id, "ok", value, False)
    alerts.record_evaluation(conn, rule.id, "firing", value, now)
    if not alerts.should_notify(rule, now):
        return Evaluation(rule.id, "firing", value, False)
    payload = {
        "delivery_id": str(uuid.uuid4()),
        "event": "alert.fired",
        "fired_at": now.isoformat(),
        "project": alerts.project_label(conn, rule.project_id),
        "project_id": str(rule.project_id),
        "rule": {"id": str(rule.id), "name": rule.name},
        "metric": rule.metric,
        "event_name": rule.event_name,
        "metric_id": str(rule.metric_id) if rule.metric_id else None,
        "comparison": rule.comparison,
        "threshold": rule.threshold,
        "value": value,
        "window_seconds": rule.window_s,
    }
    deliveries = tuple(deliver(c, payload, settings.alerts) for c in rule.channels)
    alerts.record_firing(conn, rule, value, now, [d.as_json() for d in deliveries])
    log.info("alert %s fired: value %s, %d deliveries ok", rule.name, value, sum(d.ok for d in deliveries))
    return Evaluation(rule.id, "firing", value, True, deliveries)


def run_forever(settings: Settings, stop: threading.Event | None = None) -> None:
    """Evaluate due rules every `tick_s` until `stop` is set; reconnects after database errors."""
    stop = stop or threading.Event()
    conn: psycopg.Connection | None = None
    while not stop.is_set():
        try:
            if conn is None or conn.closed:
                conn = connect(settings.db.url, autocommit=True)
            evaluate_due(conn, settings)
        except psycopg.Error as exc:
            log.warning("alert evaluator: database error (%s); retrying", exc)
            if conn is not None:
                conn.close()
            conn = None
            stop.wait(min(5.0, settings.alerts.interval_s))
            continue
        stop.wait(settings.alerts.tick_s)
    if conn is not None:
        conn.close()
