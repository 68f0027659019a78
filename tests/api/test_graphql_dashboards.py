"""GraphQL fields of the web dashboard against real PostgreSQL and Redis: saved dashboards, alert rules and
firings, dead-letter samples, day builds; tenant isolation and secrets shown only once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant
from warehouse import alerts
from warehouse.aggregates import rebuild_day
from warehouse.landing import land_batch

RULE_FIELDS = "id name state metric comparison threshold windowSeconds channels { id kind target secret }"
CREATE_RULE = f"mutation($p: ID!, $i: AlertRuleInput!) {{ createAlertRule(projectId: $p, input: $i) {{ {RULE_FIELDS} }} }}"
UPDATE_RULE = (
    f"mutation($id: ID!, $i: AlertRuleInput!) {{ updateAlertRule(id: $id, input: $i) {{ {RULE_FIELDS} }} }}"
)
RULES = f"query($p: ID!) {{ alertRules(projectId: $p) {{ {RULE_FIELDS} }} }}"
CREATE_DASHBOARD = (
    "mutation($p: ID!, $i: DashboardInput!) { createDashboard(projectId: $p, input: $i) { id name panels } }"
)


@pytest.fixture
def gql(db, database_url, broker, redis_url) -> Iterator:
    tenants = {"a": make_tenant(db, "acme", "web"), "b": make_tenant(db, "globex", "shop")}
    with TestClient(create_app(make_settings(database_url, broker, redis_url))) as client:

        def run(query: str, variables: dict, tenant: str = "a") -> dict:
            r = client.post("/graphql", json={"query": query, "variables": variables},
                            headers={"X-API-Key": tenants[tenant]["read_key"]})  # fmt: skip
            assert r.status_code == 200, r.text
            return r.json()

        run.tenants = tenants
        yield run


def rule_input(**kw) -> dict:
    return {
        "name": "busy",
        "metric": "EVENTS",
        "comparison": "GT",
        "threshold": 10,
        "windowSeconds": 300,
        **kw,
    }


def test_webhook_secret_is_returned_once_and_kept_across_edits(gql) -> None:
    p = str(gql.tenants["a"]["project_id"])
    channels = [
        {"kind": "WEBHOOK", "url": "https://hooks.example.com/in/abc?token=t"},
        {"kind": "EMAIL", "to": "ops@example.com"},
    ]
    created = gql(CREATE_RULE, {"p": p, "i": rule_input(channels=channels)})["data"]["createAlertRule"]
    webhook = created["channels"][0]
    assert len(webhook["secret"]) >= 32 and created["channels"][1]["secret"] is None
    assert webhook["target"] == "https://hooks.example.com/…"  # path and query may carry tokens
    listed = gql(RULES, {"p": p})["data"]["alertRules"][0]
    assert [c["secret"] for c in listed["channels"]] == [None, None]
    kept = [
        {"kind": "WEBHOOK", "id": webhook["id"]},
        {"kind": "SLACK", "url": "https://hooks.slack.com/services/x"},
    ]
    updated = gql(UPDATE_RULE, {"id": created["id"], "i": rule_input(threshold=20, channels=kept)})["data"][
        "updateAlertRule"
    ]
    assert updated["state"] == "PENDING" and updated["threshold"] == 20
    assert [c["secret"] for c in updated["channels"]] == [None, None]  # kept webhook: not shown again
    assert updated["channels"][0]["id"] == webhook["id"]


def test_kept_webhook_keeps_its_secret_in_the_warehouse(gql, db) -> None:
    p = str(gql.tenants["a"]["project_id"])
    channels = [{"kind": "WEBHOOK", "url": "https://hooks.example.com/in", "secret": "s" * 20}]
    created = gql(CREATE_RULE, {"p": p, "i": rule_input(channels=channels)})["data"]["createAlertRule"]
    assert created["channels"][0]["secret"] == "s" * 20
    kept = [{"kind": "WEBHOOK", "id": created["channels"][0]["id"]}]
    gql(UPDATE_RULE, {"id": created["id"], "i": rule_input(channels=kept)})
    (stored,) = alerts.list_rules(db, gql.tenants["a"]["project_id"])
    assert (
        stored.channels[0]["secret"] == "s" * 20
        and stored.channels[0]["url"] == "https://hooks.example.com/in"
    )


def test_other_tenants_rules_dashboards_and_metrics_are_forbidden(gql) -> None:
    a, b = str(gql.tenants["a"]["project_id"]), str(gql.tenants["b"]["project_id"])
    rule = gql(CREATE_RULE, {"p": a, "i": rule_input()})["data"]["createAlertRule"]
    board = gql(CREATE_DASHBOARD, {"p": a, "i": {"name": "Growth", "panels": []}})["data"]["createDashboard"]
    for query, variables in (
        (UPDATE_RULE, {"id": rule["id"], "i": rule_input()}),
        ("mutation($id: ID!) { deleteAlertRule(id: $id) }", {"id": rule["id"]}),
        ("mutation($id: ID!) { deleteDashboard(id: $id) }", {"id": board["id"]}),
        (RULES, {"p": a}),
        ("query($p: ID!) { alertFirings(projectId: $p) { id } }", {"p": a}),
        ("query($p: ID!) { deadLetterSamples(projectId: $p) { id } }", {"p": a}),
        (
            'query($p: ID!) { dayBuilds(projectId: $p, from: "2026-01-01", to: "2026-01-02") { date } }',
            {"p": a},
        ),
    ):
        body = gql(query, variables, tenant="b")
        assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN", (query, body)
    body = gql(
        'query($p: ID!) { alertFirings(projectId: $p, ruleId: "%s") { id } }' % rule["id"],
        {"p": b},
        tenant="b",
    )
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert gql(RULES, {"p": a})["data"]["alertRules"][0]["id"] == rule["id"]  # untouched


def test_invalid_inputs_name_the_field(gql) -> None:
    p = str(gql.tenants["a"]["project_id"])
    for i, field in (
        (rule_input(windowSeconds=5), "input.windowSeconds"),
        (rule_input(metric="CUSTOM_METRIC"), "input.metricId"),
        (rule_input(channels=[{"kind": "WEBHOOK", "url": "file:///etc/passwd"}]), "input.channels[0].url"),
        (rule_input(channels=[{"kind": "WEBHOOK", "id": "nope"}]), "input.channels.url"),
    ):
        err = gql(CREATE_RULE, {"p": p, "i": i})["errors"][0]
        assert (err["extensions"]["code"], err["extensions"]["field"]) == ("BAD_USER_INPUT", field), err
    for panels, field in (
        ([{"kind": "pie"}], "input.panels[0].kind"),
        ([{"kind": "metric", "range": {"preset": "7d"}}], "input.panels[0].metricId"),
        (
            [{"kind": "events", "range": {"from": "2026-02-01", "to": "2026-01-01"}}],
            "input.panels[0].range.to",
        ),
        ([{"kind": "events"}] * 25, "input.panels"),
    ):
        err = gql(CREATE_DASHBOARD, {"p": p, "i": {"name": "x", "panels": panels}})["errors"][0]
        assert (err["extensions"]["code"], err["extensions"]["field"]) == ("BAD_USER_INPUT", field), err


def test_dashboards_round_trip_with_canonical_panels(gql) -> None:
    p = str(gql.tenants["a"]["project_id"])
    panels = [{"kind": "events", "title": "All", "range": {"preset": "30d"}, "junk": 1},
              {"kind": "active_users", "window": "WAU", "granularity": "week", "range": {"from": "2026-01-01", "to": "2026-01-31"}}]  # fmt: skip
    created = gql(CREATE_DASHBOARD, {"p": p, "i": {"name": "Growth", "panels": panels}})["data"][
        "createDashboard"
    ]
    assert created["panels"][0] == {"title": "All", "kind": "events", "granularity": "day", "chart": "line",
                                    "range": {"preset": "30d"}, "eventNames": []}  # fmt: skip
    assert created["panels"][1]["window"] == "WAU"
    dup = gql(CREATE_DASHBOARD, {"p": p, "i": {"name": "Growth", "panels": []}})["errors"][0]
    assert dup["extensions"]["field"] == "input.name"
    listed = gql("query($p: ID!) { dashboards(projectId: $p) { id panels } }", {"p": p})["data"]["dashboards"]
    assert [d["id"] for d in listed] == [created["id"]]
    assert gql("mutation($id: ID!) { deleteDashboard(id: $id) }", {"id": created["id"]})["data"][
        "deleteDashboard"
    ]


def test_dead_letter_samples_and_day_builds(gql, db) -> None:
    t = gql.tenants["a"]
    p = str(t["project_id"])
    db.execute(
        "INSERT INTO dead_letters (reason, detail, org_id, project_id, payload, payload_sha256, source_topic, "
        "source_partition, source_offset) VALUES ('invalid_json', 'cut', %s, %s, %s, 'h', 'events-raw', 2, 9)",
        (t["org_id"], t["project_id"], b"\xff{not json" + b"x" * 5000),
    )
    (sample,) = gql(
        'query($p: ID!) { deadLetterSamples(projectId: $p, reason: "invalid_json") { reason payload payloadBytes sourceOffset } }',
        {"p": p},
    )["data"]["deadLetterSamples"]
    assert sample["payloadBytes"] == 5010 and len(sample["payload"].encode()) <= 4096 + 2
    assert sample["payload"].startswith("\ufffd{not json") and sample["sourceOffset"] == 9
    day = datetime.now(UTC).date() - timedelta(days=2)
    at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=3)
    land_batch(db, [(t["project_id"], at, uuid.uuid4(), t["org_id"], "e", "u", at, "{}")])
    rebuild_day(db, day, run_id="dagster-run-1")
    land_batch(
        db, [(t["project_id"], at, uuid.uuid4(), t["org_id"], "e", "u", at, "{}")]
    )  # late: rebuild due
    q = "query($p: ID!, $f: Date!, $t: Date!) { dayBuilds(projectId: $p, from: $f, to: $t) { date events runId stale builtVersion landedVersion } }"
    (built,) = gql(q, {"p": p, "f": str(day), "t": str(day)})["data"]["dayBuilds"]
    assert built == {
        "date": str(day),
        "events": 2,
        "runId": "dagster-run-1",
        "stale": True,
        "builtVersion": 1,
        "landedVersion": 2,
    }
