"""Alert evaluation against the real warehouse: window values, comparisons, cooldown, delivery outcomes and
signatures, with a local HTTP receiver (no mocks)."""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from alerting.evaluator import evaluate_due
from alerting.signing import sign, verify
from benchmarks.harness import free_port
from pulseops.settings import Settings
from tests.utils.events import land_rows
from tests.utils.tenants import make_tenant
from warehouse import alerts, metric_defs


class Hook(http.server.BaseHTTPRequestHandler):
    status = 204
    calls: list[tuple[dict[str, str], bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).calls.append((dict(self.headers.items()), body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def hook() -> Iterator[str]:
    Hook.calls, Hook.status = [], 204
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def settings(database_url: str) -> Settings:
    return Settings(
        db={"url": database_url},
        alerts={"interval_s": 0, "max_attempts": 2, "http_timeout_s": 2, "allow_private_targets": True},
    )


def events(t: dict, n: int, name: str = "signup", ago_s: float = 30, **props) -> list[tuple]:
    at = datetime.now(UTC) - timedelta(seconds=ago_s)
    return [
        (t["project_id"], at, uuid.uuid4(), t["org_id"], name, f"u-{i % 3}", at, orjson.dumps(props).decode())
        for i in range(n)
    ]


def rule(db, t: dict, **kw) -> alerts.AlertRuleRow:
    spec = alerts.AlertSpec(
        **{"name": "r", "metric": "events", "comparison": "gt", "threshold": 5, "window_s": 300, **kw}
    )
    return alerts.create_rule(db, t["org_id"], t["project_id"], spec)


def test_breach_fires_once_per_cooldown_with_a_signed_webhook(db, database_url, hook) -> None:
    t = make_tenant(db)
    land_rows(db, events(t, 8))
    r = rule(db, t, cooldown_s=3600, channels=({"kind": "webhook", "url": hook},))
    secret = r.channels[0]["secret"]
    (first,) = evaluate_due(db, settings(database_url))
    assert (first.state, first.value, first.fired) == ("firing", 8.0, True)
    headers, body = Hook.calls[0]
    assert verify(secret, headers, body)
    payload = orjson.loads(body)
    assert payload["value"] == 8 and payload["rule"]["id"] == str(r.id) and payload["project"] == "acme/web"
    assert headers["X-PulseOps-Delivery"] == payload["delivery_id"]
    (again,) = evaluate_due(db, settings(database_url))
    assert (again.state, again.fired) == ("firing", False)  # still breached, inside the cooldown
    assert len(Hook.calls) == 1
    (firing,) = alerts.list_firings(db, t["project_id"])
    assert firing.deliveries[0]["ok"] and firing.deliveries[0]["status"] == 204
    assert firing.deliveries[0]["target"] == f"{hook.rsplit('/', 1)[0]}/…"  # no path: it may hold a token


def test_quiet_rule_is_ok_and_a_lt_rule_fires_on_silence(db, database_url, hook) -> None:
    t = make_tenant(db)
    land_rows(db, events(t, 3))
    rule(db, t, name="busy")
    rule(db, t, name="silent", comparison="lt", threshold=1, event_name="purchase", cooldown_s=0,
         channels=({"kind": "slack", "url": hook},))  # fmt: skip
    results = {alerts.get_rule(db, e.rule_id).name: e for e in evaluate_due(db, settings(database_url))}
    assert (results["busy"].state, results["busy"].value) == ("ok", 3.0)
    assert (results["silent"].state, results["silent"].value, results["silent"].fired) == (
        "firing",
        0.0,
        True,
    )
    assert orjson.loads(Hook.calls[0][1])["text"].startswith("[PulseOps] silent (acme/web): events = 0 < 1")


def test_window_excludes_older_events_and_unique_users_counts_people(db, database_url) -> None:
    t = make_tenant(db)
    land_rows(db, events(t, 6, ago_s=30) + events(t, 50, ago_s=900))
    r = rule(db, t, metric="unique_users", threshold=2)
    assert alerts.window_value(db, r, datetime.now(UTC)) == 3.0  # u-0..u-2 in the last 5 minutes
    r = rule(db, t, name="all", window_s=3600)
    assert alerts.window_value(db, r, datetime.now(UTC)) == 56.0


def test_custom_metric_dead_letters_and_silence_values(db, database_url) -> None:
    t = make_tenant(db)
    land_rows(
        db,
        events(t, 4, name="purchase", amount=10, plan="pro")
        + events(t, 2, name="purchase", amount=1, plan="free"),
    )
    m = metric_defs.create_metric(db, t["org_id"], t["project_id"],
                                  metric_defs.MetricSpec("revenue", "sum", event_name="purchase", filters={"plan": "pro"}, property="amount"))  # fmt: skip
    now = datetime.now(UTC)
    assert alerts.window_value(db, rule(db, t, name="m", metric="custom_metric", metric_id=m.id), now) == 40.0
    db.execute(
        "INSERT INTO dead_letters (reason, org_id, project_id, payload, payload_sha256, source_topic, source_partition, "
        "source_offset) VALUES ('invalid_json', %s, %s, 'x', 'h', 't', 0, 1)",
        (t["org_id"], t["project_id"]),
    )
    now = datetime.now(UTC)
    assert alerts.window_value(db, rule(db, t, name="d", metric="dead_letters"), now) == 1.0
    since = alerts.window_value(db, rule(db, t, name="s", metric="seconds_since_last_event"), now)
    assert 0 <= since < 60
    other = make_tenant(db, "globex", "shop")
    assert alerts.window_value(db, rule(db, other, name="s", metric="seconds_since_last_event"), now) is None


def test_failed_delivery_is_retried_and_recorded(db, database_url, hook) -> None:
    t = make_tenant(db)
    land_rows(db, events(t, 8))
    Hook.status = 500
    rule(db, t, channels=({"kind": "webhook", "url": hook}, {"kind": "email", "to": "ops@example.com"}))
    (result,) = evaluate_due(db, settings(database_url))
    webhook, email = result.deliveries
    assert (webhook.ok, webhook.status, webhook.attempts, webhook.error) == (False, 500, 2, "HTTP 500")
    assert len(Hook.calls) == 2
    assert not email.ok and "SMTP" in email.error  # no SMTP server configured
    (firing,) = alerts.list_firings(db, t["project_id"])
    assert [d["ok"] for d in firing.deliveries] == [False, False]


def test_two_evaluators_never_evaluate_a_rule_twice(db, database_url) -> None:
    t = make_tenant(db)
    for i in range(6):
        rule(db, t, name=f"r{i}")
    s = settings(database_url).model_copy(
        update={"alerts": settings(database_url).alerts.model_copy(update={"interval_s": 60})}
    )
    seen: list[uuid.UUID] = []

    def run() -> None:
        import psycopg

        with psycopg.connect(database_url, autocommit=True) as conn:
            seen.extend(e.rule_id for e in evaluate_due(conn, s))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(seen) == sorted(r.id for r in alerts.list_rules(db, t["project_id"]))


def test_signature_refuses_replays_and_tampering() -> None:
    body = b'{"value": 1}'
    headers = sign("s" * 32, body)
    assert verify("s" * 32, headers, body)
    assert not verify("s" * 32, headers, b'{"value": 2}')
    assert not verify("t" * 32, headers, body)
    old = sign("s" * 32, body, now=time.time() - 301)
    assert not verify("s" * 32, old, body)  # replayed after the tolerance window
    assert not verify("s" * 32, {}, body)


def test_rule_validation_names_the_field(db) -> None:
    t = make_tenant(db)
    for kw, where in (
        ({"window_s": 10}, "windowSeconds"),
        ({"metric": "custom_metric"}, "metricId"),
        ({"channels": ({"kind": "webhook", "url": "ftp://x"},)}, "channels[0].url"),
        ({"channels": ({"kind": "webhook", "url": "http://u:p@x/"},)}, "channels[0].url"),
        ({"channels": ({"kind": "email", "to": "a@b.c\r\nBcc: x@y.z"},)}, "channels[0].to"),
        ({"threshold": float("nan")}, "threshold"),
    ):
        with pytest.raises(alerts.AlertError) as err:
            rule(db, t, **kw)
        assert err.value.field == where


class Smtp(socketserver.StreamRequestHandler):
    """The smallest SMTP server that accepts one message (no TLS): enough to see what the evaluator sends."""

    messages: list[bytes] = []

    def handle(self) -> None:
        self.wfile.write(b"220 test\r\n")
        while line := self.rfile.readline():
            verb = line.split(b" ", 1)[0].strip().upper()
            if verb == b"DATA":
                self.wfile.write(b"354 go\r\n")
                data = b"".join(iter(self.rfile.readline, b".\r\n"))
                type(self).messages.append(data)
                self.wfile.write(b"250 queued\r\n")
            elif verb == b"QUIT":
                self.wfile.write(b"221 bye\r\n")
                return
            else:
                self.wfile.write(b"250 ok\r\n")


def test_email_goes_through_the_configured_smtp_server(db, database_url) -> None:
    Smtp.messages = []
    server = socketserver.ThreadingTCPServer(("127.0.0.1", free_port()), Smtp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        t = make_tenant(db)
        land_rows(db, events(t, 8))
        rule(db, t, name="mail me", channels=({"kind": "email", "to": "ops@example.com"},))
        s = Settings(db={"url": database_url}, alerts={"interval_s": 0, "smtp_host": "127.0.0.1",
                     "smtp_port": server.server_address[1], "smtp_starttls": False, "smtp_from": "alerts@example.com"})  # fmt: skip
        (result,) = evaluate_due(db, s)
        assert result.deliveries[0].ok, result.deliveries[0]
        (message,) = Smtp.messages
        assert b"To: ops@example.com" in message and b"From: alerts@example.com" in message
        assert b"Subject: [PulseOps] mail me (acme/web): events = 8 > 5 over the last 300 s" in message
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://10.0.0.1/x",
    ],
)
def test_webhooks_to_non_public_addresses_are_refused_by_default(url):
    """SSRF guard: a read key must not make the evaluator probe internal services."""
    from alerting.channels import deliver
    from pulseops.settings import AlertSettings

    alert = {"delivery_id": "d-1", "rule": {"name": "r"}, "project": "p", "metric": "events", "value": 1.0,
             "threshold": 0.0, "comparison": "gt", "window_seconds": 60}  # fmt: skip
    result = deliver(
        {"kind": "webhook", "url": url, "secret": "s3cret"},  # pragma: allowlist secret
        alert,
        AlertSettings(max_attempts=1),
    )
    assert not result.ok and result.status is None and "non-public" in result.error
