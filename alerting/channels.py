"""Delivery of one firing to one channel: signed webhook, Slack-compatible webhook, e-mail over SMTP.

Each delivery is retried (`max_attempts`, backoff 0.5 s then 1 s) and never raises: the outcome is recorded
with the firing and shown in the alert history.
"""

from __future__ import annotations

import ipaddress
import smtplib
import socket
import time
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from alerting.signing import DELIVERY_HEADER, EVENT_HEADER, sign
from pulseops.settings import AlertSettings


@dataclass(frozen=True)
class Delivery:
    kind: str
    target: str
    ok: bool
    status: int | None
    error: str
    attempts: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def target_of(channel: dict[str, Any]) -> str:
    """What the history shows: an address, or the URL without path and query (they may hold tokens)."""
    if channel["kind"] == "email":
        return channel["to"]
    parts = urlsplit(channel["url"])
    return f"{parts.scheme}://{parts.netloc}/…"


def summary(alert: dict[str, Any]) -> str:
    op = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[alert["comparison"]]
    return (
        f"[PulseOps] {alert['rule']['name']} ({alert['project']}): {alert['metric']} = {alert['value']:g} "
        f"{op} {alert['threshold']:g} over the last {alert['window_seconds']} s"
    )


def deliver(channel: dict[str, Any], alert: dict[str, Any], settings: AlertSettings) -> Delivery:
    kind = channel["kind"]
    last_error, status = "", None
    for attempt in range(1, settings.max_attempts + 1):
        try:
            if kind == "email":
                _email(channel["to"], alert, settings)
                return Delivery(kind, target_of(channel), True, None, "", attempt)
            status = _post(channel, alert, settings)
            if 200 <= status < 300:
                return Delivery(kind, target_of(channel), True, status, "", attempt)
            last_error = f"HTTP {status}"
            if 400 <= status < 500 and status not in (408, 429):
                break  # the receiver refuses this request; repeating it will not help
        except (httpx.HTTPError, OSError, smtplib.SMTPException, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"[:500]
        if attempt < settings.max_attempts:
            time.sleep(0.5 * attempt)
    return Delivery(kind, target_of(channel), False, status, last_error, attempt)


def _post(channel: dict[str, Any], alert: dict[str, Any], settings: AlertSettings) -> int:
    if channel["kind"] == "slack":
        body = orjson.dumps({"text": summary(alert)})
        headers = {"Content-Type": "application/json"}
    else:
        body = orjson.dumps(alert)
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: "alert.fired",
            DELIVERY_HEADER: alert["delivery_id"],
            **sign(channel["secret"], body),
        }
    _check_target(channel["url"], settings)
    # No redirects: a receiver must not bounce a signed payload (or our request) elsewhere.
    response = httpx.post(
        channel["url"], content=body, headers=headers, timeout=settings.http_timeout_s, follow_redirects=False
    )
    return response.status_code


def _check_target(url: str, settings: AlertSettings) -> None:
    """Refuse webhook hosts that resolve to non-public addresses (SSRF guard) unless allowed by setting.

    Resolved here and again by httpx when it connects: a DNS answer that changes in between (rebinding) is
    not covered; an egress firewall is the complete answer and docs/dashboards.md says so.
    """
    if settings.allow_private_targets:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("webhook URL must be http(s) with a host")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for info in socket.getaddrinfo(parts.hostname, port, proto=socket.IPPROTO_TCP):
        if not ipaddress.ip_address(info[4][0].split("%")[0]).is_global:
            raise ValueError(
                "webhook host resolves to a non-public address (PULSEOPS_ALERTS__ALLOW_PRIVATE_TARGETS)"
            )


def _email(to: str, alert: dict[str, Any], settings: AlertSettings) -> None:
    if not settings.smtp_host:
        raise ValueError("no SMTP server configured (PULSEOPS_ALERTS__SMTP_HOST)")
    msg = EmailMessage()
    msg["Subject"] = summary(alert)
    msg["From"] = settings.smtp_from
    msg["To"] = to
    msg.set_content(summary(alert) + "\n\n" + orjson.dumps(alert, option=orjson.OPT_INDENT_2).decode())
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.http_timeout_s) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(msg)
