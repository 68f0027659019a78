"""Every GraphQL query and mutation the schema has, asked over one deterministic data set, answers byte for
byte what the committed recording `tests/api/recorded/graphql_responses.json` holds (issue 14: the read
path and the GraphQL package were restructured with behaviour unchanged; this is the proof).

The data: two tenants from the product's generator (fixed seed, fixed end), identity links for the `person`
and PERSON questions; the first days exported to the cold tier and dropped from PostgreSQL, the middle days
built into aggregates, the last days raw only; a closing question over a dropped day whose cold copy is
marked failed records the refusal. Ids the database draws at random (tenants, metric definitions,
dashboards, alert rules) are replaced by placeholders in order of appearance, and no field that reads the
clock is asked for, so the recording is stable from run to run; long float fractions are kept to 9 significant digits (marked
`~`), since DuckDB adds cold-tier floats in no fixed order.

Regenerate (only when a change of an answer is intended, and say why in the commit):
    PULSEOPS_RECORD_GRAPHQL=1 .venv/bin/pytest tests/api/test_graphql_recorded.py
"""

from __future__ import annotations

import base64
import os
import re
from datetime import UTC, datetime
from pathlib import Path

import orjson
from fastapi.testclient import TestClient

from api.main import create_app
from pulseops.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.identity import identity_data
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.aggregates import rebuild_day

RECORDING = Path(__file__).parent / "recorded" / "graphql_responses.json"
END = datetime(2026, 10, 20, 15, tzinfo=UTC)  # fixed: answers must not move with the day the test runs
DAYS = 14
COLD_DAYS = 4  # the oldest days: exported, verified, partitions dropped
RAW_DAYS = 3  # the newest days: never built

SERIES = """query($p: ID!, $f: Date!, $t: Date!, $g: Granularity!, $tz: String, $n: [String!], $x: [PropertyFilter!]) {
  eventCounts(projectId: $p, from: $f, to: $t, granularity: $g, timezone: $tz, eventNames: $n, filters: $x) {
    range { from to timezone } granularity total
    buckets { start localDate localTime utcOffset value } sources { rawDays aggregatedDays }
  }
}"""
USERS = """query($p: ID!, $f: Date!, $t: Date!, $k: ActiveUsersKind!, $tz: String, $n: [String!], $x: [PropertyFilter!], $u: UniqueBy!) {
  activeUsers(projectId: $p, from: $f, to: $t, kind: $k, timezone: $tz, eventNames: $n, filters: $x, uniqueBy: $u) {
    kind range { from to timezone } days { date value }
  }
}"""
TOTAL = """query($p: ID!, $f: Date!, $t: Date!, $tz: String, $n: [String!], $x: [PropertyFilter!]) {
  totalEvents(projectId: $p, from: $f, to: $t, timezone: $tz, eventNames: $n, filters: $x)
}"""
TOP = """query($p: ID!, $f: Date!, $t: Date!, $tz: String, $x: [PropertyFilter!]) {
  topEvents(projectId: $p, from: $f, to: $t, limit: 7, timezone: $tz, filters: $x) { eventName count }
}"""
METRICS = """query($p: ID!, $f: Date!, $t: Date!, $tz: String, $u: UniqueBy!) {
  metrics(projectId: $p, from: $f, to: $t, timezone: $tz, top: 5, uniqueBy: $u) {
    totalEvents dailyActiveUsers { date value } topEvents { eventName count } dateRange { from to timezone }
  }
}"""
BREAKDOWN = """query($p: ID!, $f: Date!, $t: Date!, $prop: String!, $tz: String, $n: [String!], $x: [PropertyFilter!], $u: UniqueBy!) {
  breakdown(projectId: $p, property: $prop, from: $f, to: $t, limit: 20, timezone: $tz, eventNames: $n, filters: $x, uniqueBy: $u) {
    property range { from to timezone } totalEvents groups { value events users }
  }
}"""
RECENT = """query($p: ID!, $first: Int!, $after: String, $n: [String!], $x: [PropertyFilter!]) {
  recentEvents(projectId: $p, first: $first, after: $after, eventNames: $n, filters: $x) {
    edges { cursor node { eventId eventName distinctId eventTime receivedAt properties } }
    pageInfo { hasNextPage endCursor }
  }
}"""
PROJECTS = "{ projects { id slug name orgSlug timezone } }"
METRIC_FIELDS = "id projectId name description eventName filters aggregation property dimensions"
CREATE_METRIC = (
    "mutation($p: ID!, $i: MetricInput!) { createMetric(projectId: $p, input: $i) { " + METRIC_FIELDS + " } }"
)
UPDATE_METRIC = (
    "mutation($id: ID!, $i: MetricInput!) { updateMetric(id: $id, input: $i) { " + METRIC_FIELDS + " } }"
)
DELETE_METRIC = "mutation($id: ID!) { deleteMetric(id: $id) }"
METRIC_DEFS = "query($p: ID!) { metricDefinitions(projectId: $p) { " + METRIC_FIELDS + " } }"
METRIC_SERIES = """query($m: ID!, $f: Date!, $t: Date!, $g: Granularity!, $tz: String, $u: UniqueBy!) {
  metricSeries(metricId: $m, from: $f, to: $t, granularity: $g, timezone: $tz, uniqueBy: $u) {
    metricId granularity range { from to timezone } points { start localDate localTime utcOffset dimensions value events }
  }
}"""
HEALTH = """query($p: ID!) {
  ingestionHealth(projectId: $p) {
    eventsToday deadLettersLast24h { reason count } lateArrivals { date events late share } daysAwaitingRebuild
  }
  deadLetterSamples(projectId: $p, limit: 5) { id reason }
}"""
DAY_BUILDS = """query($p: ID!, $f: Date!, $t: Date!) {
  dayBuilds(projectId: $p, from: $f, to: $t) { date events landedVersion builtVersion stale buildFailures buildError }
}"""
PERSON = """query($p: ID!, $d: String!) {
  person(projectId: $p, distinctId: $d) { personId distinctIds distinctIdCount properties }
}"""
DASH_FIELDS = "id projectId name panels"
CREATE_DASH = (
    "mutation($p: ID!, $i: DashboardInput!) { createDashboard(projectId: $p, input: $i) { "
    + DASH_FIELDS
    + " } }"
)
UPDATE_DASH = (
    "mutation($id: ID!, $i: DashboardInput!) { updateDashboard(id: $id, input: $i) { " + DASH_FIELDS + " } }"
)
DELETE_DASH = "mutation($id: ID!) { deleteDashboard(id: $id) }"
DASHBOARDS = "query($p: ID!) { dashboards(projectId: $p) { " + DASH_FIELDS + " } }"
RULE_FIELDS = (
    "id projectId name metric eventName metricId comparison threshold windowSeconds cooldownSeconds "
    "channels { kind target } enabled state lastValue lastError"
)
CREATE_RULE = (
    "mutation($p: ID!, $i: AlertRuleInput!) { createAlertRule(projectId: $p, input: $i) { "
    + RULE_FIELDS
    + " } }"
)
UPDATE_RULE = (
    "mutation($id: ID!, $i: AlertRuleInput!) { updateAlertRule(id: $id, input: $i) { " + RULE_FIELDS + " } }"
)
DELETE_RULE = "mutation($id: ID!) { deleteAlertRule(id: $id) }"
RULES = "query($p: ID!) { alertRules(projectId: $p) { " + RULE_FIELDS + " } }"
FIRINGS = "query($p: ID!) { alertFirings(projectId: $p, limit: 5) { id ruleId value } }"


_CURSOR = re.compile(rb'"(cursor|endCursor)":"([A-Za-z0-9_=-]+)"')


def _open_cursor(m: re.Match) -> bytes:
    """A cursor as its decoded text, so that the placeholders reach the ids inside it."""
    raw = base64.urlsafe_b64decode(m.group(2) + b"=" * (-len(m.group(2)) % 4))
    return b'"' + m.group(1) + b'":' + orjson.dumps("decoded:" + raw.decode())


# Float sums over the cold tier are added up by DuckDB's threads in no fixed order, so their last bits vary
# from run to run (see tests/api/test_graphql_cold.py); long fractions are kept to 9 significant digits.
_LONG_FLOAT = re.compile(rb"-?\d+\.\d{8,}(?:e-?\d+)?")


def _round_float(m: re.Match) -> bytes:
    return f"~{float(m.group()):.9g}".encode()


class Recorder:
    """Posts each question and keeps its raw response body, random ids replaced by placeholders."""

    def __init__(self, client: TestClient, keys: dict[str, str], placeholders: dict[bytes, bytes]) -> None:
        self.client, self.keys, self.placeholders = client, keys, placeholders
        self.entries: list[tuple[str, str]] = []

    def ask(
        self, name: str, query: str, variables: dict | None = None, tenant: str = "hot", keep: bool = True
    ) -> dict:
        r = self.client.post(
            "/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"X-API-Key": self.keys[tenant]},
        )
        body = _CURSOR.sub(_open_cursor, r.content)  # a cursor holds the project id in base64
        body = _LONG_FLOAT.sub(_round_float, body)
        for real, label in self.placeholders.items():
            body = body.replace(real, label)
        if keep:
            self.entries.append((name, f"{r.status_code} {body.decode()}"))
        return r.json()

    def learn(self, real: str, label: str) -> None:
        """A database-drawn id seen in a response: later responses show `label` in its place."""
        self.placeholders[real.encode()] = label.encode()


def _seed(db, database_url: str, cold_settings: ColdSettings) -> tuple[dict, list]:
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=14, end=END, days=DAYS, total_events=5_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 0.75, 150), TenantSpec("quiet", 0.25, 30)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    hot = tenants["hot"]
    ident = identity_data(hot["project_id"], hot["org_id"], END, DAYS, people=12, seed=14, prefix="id-")
    land_rows(db, rows + ident.rows)
    days = sorted({r[1].date() for r in rows + ident.rows})
    for day in days[:-RAW_DAYS]:
        rebuild_day(db, day)
    for day in days[:COLD_DAYS]:
        cold.export_day(db, database_url, day, cold_settings)
        assert cold.verify_day(db, day, cold_settings).ok
    cold.drop_exported_partitions_before(db, days[COLD_DAYS], cold_settings)
    return tenants, days


def _ask_reads(rec: Recorder, p: str, days: list) -> None:
    f, t = days[0].isoformat(), days[-1].isoformat()
    hot_f = days[COLD_DAYS].isoformat()
    plan = [{"property": "plan", "op": "EQ", "value": "pro"}]
    for tz in ("UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"):
        for g in (
            ("DAY", "HOUR", "WEEK", "MONTH") if tz in ("UTC", "Australia/Lord_Howe") else ("DAY", "WEEK")
        ):
            rec.ask(f"eventCounts {tz} {g}", SERIES, {"p": p, "f": f, "t": t, "g": g, "tz": tz})
    base = {"p": p, "f": f, "t": t}
    rec.ask("eventCounts default zone", SERIES, {**base, "g": "DAY"})
    rec.ask("eventCounts names", SERIES, {**base, "g": "DAY", "tz": "UTC", "n": ["page_view", "signup"]})
    rec.ask("eventCounts filter", SERIES, {**base, "g": "HOUR", "tz": "America/New_York", "x": plan})
    rec.ask("eventCounts hot only", SERIES, {**base, "f": hot_f, "g": "DAY", "tz": "UTC"})
    rec.ask("eventCounts raw only", SERIES, {**base, "f": days[-2].isoformat(), "g": "HOUR", "tz": "UTC"})
    rec.ask("eventCounts quiet", SERIES, {**base, "p": rec.quiet, "g": "DAY", "tz": "UTC"}, tenant="quiet")
    for kind in ("DAU", "WAU", "MAU"):
        for u in ("DISTINCT_ID", "PERSON"):
            for tz in ("UTC", "America/New_York"):
                rec.ask(f"activeUsers {kind} {u} {tz}", USERS, {**base, "k": kind, "u": u, "tz": tz})
    rec.ask("activeUsers names", USERS, {**base, "k": "DAU", "u": "DISTINCT_ID", "n": ["page_view"]})
    rec.ask("activeUsers filter", USERS, {**base, "k": "WAU", "u": "PERSON", "x": plan, "tz": "UTC"})
    rec.ask("totalEvents", TOTAL, {**base, "tz": "Asia/Kolkata"})
    rec.ask("totalEvents filter", TOTAL, {**base, "n": ["page_view"], "x": plan})
    rec.ask("topEvents", TOP, {**base, "tz": "UTC"})
    rec.ask("topEvents filter", TOP, {**base, "tz": "America/New_York", "x": plan})
    for u in ("DISTINCT_ID", "PERSON"):
        for tz in ("UTC", "America/New_York"):
            rec.ask(f"metrics {u} {tz}", METRICS, {**base, "tz": tz, "u": u})
            rec.ask(f"breakdown plan {u} {tz}", BREAKDOWN, {**base, "prop": "plan", "tz": tz, "u": u})
    rec.ask(
        "breakdown country filtered",
        BREAKDOWN,
        {**base, "prop": "country", "u": "DISTINCT_ID", "n": ["page_view"], "x": plan},
    )
    rec.ask("metrics hot range", METRICS, {**base, "f": hot_f, "u": "DISTINCT_ID"})
    after = None
    for page in range(4):
        body = rec.ask(f"recentEvents page {page}", RECENT, {"p": p, "first": 150, "after": after})
        after = body["data"]["recentEvents"]["pageInfo"]["endCursor"]
    rec.ask("recentEvents filtered", RECENT, {"p": p, "first": 20, "n": ["page_view"], "x": plan})
    for who in ("id-anon-0", "id-user-0", "id-user-2", "never-seen"):
        rec.ask(f"person {who}", PERSON, {"p": p, "d": who})
    rec.ask("ingestionHealth", HEALTH, {"p": p})
    rec.ask("dayBuilds", DAY_BUILDS, base)
    rec.ask("projects", PROJECTS)


def _ask_metrics(rec: Recorder, p: str, days: list) -> None:
    base = {"f": days[0].isoformat(), "t": days[-1].isoformat()}
    inputs = {
        "count": {"name": "Signups", "eventName": "signup", "aggregation": "COUNT"},
        "users": {"name": "Pro users", "aggregation": "UNIQUE_USERS", "filters": {"plan": "pro"}, "dimensions": ["country"]},
        "sum": {"name": "Revenue", "eventName": "purchase", "aggregation": "SUM", "property": "amount"},
        "avg": {"name": "Basket", "eventName": "purchase", "aggregation": "AVG", "property": "amount", "dimensions": ["plan"]},
    }  # fmt: skip
    ids = {}
    for label, i in inputs.items():
        body = rec.ask(f"createMetric {label}", CREATE_METRIC, {"p": p, "i": i})
        assert "errors" not in body, body
        ids[label] = body["data"]["createMetric"]["id"]
        rec.learn(ids[label], f"<metric-{label}>")
        rec.entries[-1] = (rec.entries[-1][0], rec.entries[-1][1].replace(ids[label], f"<metric-{label}>"))
    rec.ask("createMetric invalid", CREATE_METRIC, {"p": p, "i": {"name": "", "aggregation": "SUM"}})
    rec.ask(
        "updateMetric", UPDATE_METRIC, {"id": ids["count"], "i": {**inputs["count"], "description": "new"}}
    )
    for label, mid in ids.items():
        for g in ("DAY", "HOUR", "WEEK"):
            for u in ("DISTINCT_ID", "PERSON"):
                rec.ask(
                    f"metricSeries {label} {g} {u}",
                    METRIC_SERIES,
                    {"m": mid, **base, "g": g, "tz": "America/New_York", "u": u},
                )
    rec.ask("metricDefinitions", METRIC_DEFS, {"p": p})
    rec.ask("deleteMetric", DELETE_METRIC, {"id": ids["sum"]})
    rec.ask("metricDefinitions after delete", METRIC_DEFS, {"p": p})
    rec.ask("metricDefinitions other tenant", METRIC_DEFS, {"p": p}, tenant="quiet")


def _ask_dashboards_and_alerts(rec: Recorder, p: str) -> None:
    panels = [
        {
            "title": "Events",
            "kind": "events",
            "granularity": "day",
            "chart": "line",
            "range": {"preset": "7d"},
        }
    ]
    body = rec.ask("createDashboard", CREATE_DASH, {"p": p, "i": {"name": "Main", "panels": panels}})
    dash = body["data"]["createDashboard"]["id"]
    rec.learn(dash, "<dashboard>")
    rec.entries[-1] = (rec.entries[-1][0], rec.entries[-1][1].replace(dash, "<dashboard>"))
    rec.ask(
        "createDashboard invalid", CREATE_DASH, {"p": p, "i": {"name": "Bad", "panels": [{"kind": "pie"}]}}
    )
    rec.ask("updateDashboard", UPDATE_DASH, {"id": dash, "i": {"name": "Main 2", "panels": panels * 2}})
    rec.ask("dashboards", DASHBOARDS, {"p": p})
    rec.ask(
        "dashboards other tenant", UPDATE_DASH, {"id": dash, "i": {"name": "x", "panels": []}}, tenant="quiet"
    )
    rule = {
        "name": "Too few", "metric": "EVENTS", "comparison": "LT", "threshold": 5, "windowSeconds": 3600,
        "eventName": "signup", "channels": [{"kind": "EMAIL", "to": "ops@example.com"}],
    }  # fmt: skip
    body = rec.ask("createAlertRule", CREATE_RULE, {"p": p, "i": rule})
    rid = body["data"]["createAlertRule"]["id"]
    rec.learn(rid, "<rule>")
    rec.entries[-1] = (rec.entries[-1][0], rec.entries[-1][1].replace(rid, "<rule>"))
    rec.ask("createAlertRule invalid", CREATE_RULE, {"p": p, "i": {**rule, "windowSeconds": 0}})
    rec.ask("updateAlertRule", UPDATE_RULE, {"id": rid, "i": {**rule, "threshold": 9, "enabled": False}})
    rec.ask("alertRules", RULES, {"p": p})
    rec.ask("alertFirings", FIRINGS, {"p": p})
    rec.ask("deleteAlertRule", DELETE_RULE, {"id": rid})
    rec.ask("deleteDashboard", DELETE_DASH, {"id": dash})
    rec.ask("dashboards after delete", DASHBOARDS, {"p": p})


def _ask_refusals(rec: Recorder, p: str, days: list, db) -> None:
    base = {"p": p, "f": days[0].isoformat(), "t": days[-1].isoformat()}
    rec.ask("eventCounts bad zone", SERIES, {**base, "g": "DAY", "tz": "Mars/Olympus"})
    rec.ask("eventCounts reversed range", SERIES, {**base, "f": base["t"], "t": base["f"], "g": "DAY"})
    rec.ask("eventCounts other tenant", SERIES, {**base, "g": "DAY"}, tenant="quiet")
    rec.ask("no key", PROJECTS, tenant="none")
    db.execute(
        "UPDATE cold_exports SET status = 'failed' WHERE project_id = %s AND day = %s AND dataset = 'events'",
        (p, days[1]),
    )
    x = [{"property": "plan", "op": "EQ", "value": "free"}]
    rec.ask("refused filter over a lost day", SERIES, {**base, "g": "DAY", "tz": "UTC", "x": x})
    rec.ask("refused breakdown over a lost day", BREAKDOWN, {**base, "prop": "country", "u": "PERSON"})
    after = None
    for _page in range(30):  # pages down to the lost day, then refuses rather than skipping it
        body = rec.ask("refused recentEvents", RECENT, {"p": p, "first": 200, "after": after}, keep=False)
        if body.get("errors") or not body["data"]["recentEvents"]["pageInfo"]["hasNextPage"]:
            rec.ask("refused recentEvents", RECENT, {"p": p, "first": 200, "after": after})
            break
        after = body["data"]["recentEvents"]["pageInfo"]["endCursor"]


def test_graphql_answers_equal_the_recording(db, database_url, broker, redis_url, tmp_path):
    cold_settings = ColdSettings(url=str(tmp_path / "cold"))
    tenants, days = _seed(db, database_url, cold_settings)
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    settings.cold = cold_settings
    placeholders = {}
    for name, t in tenants.items():
        placeholders[str(t["project_id"]).encode()] = f"<{name}-project>".encode()
        placeholders[str(t["org_id"]).encode()] = f"<{name}-org>".encode()
    keys = {name: t["read_key"] for name, t in tenants.items()} | {"none": ""}
    with TestClient(create_app(settings)) as client:
        rec = Recorder(client, keys, placeholders)
        rec.quiet = str(tenants["quiet"]["project_id"])
        p = str(tenants["hot"]["project_id"])
        _ask_reads(rec, p, days)
        _ask_metrics(rec, p, days)
        _ask_dashboards_and_alerts(rec, p)
        _ask_refusals(rec, p, days, db)
    text = orjson.dumps(dict(rec.entries), option=orjson.OPT_INDENT_2).decode() + "\n"
    assert len(dict(rec.entries)) == len(rec.entries), "every question has its own name"
    if os.environ.get("PULSEOPS_RECORD_GRAPHQL") == "1":
        RECORDING.parent.mkdir(exist_ok=True)
        RECORDING.write_text(text)
    recorded = RECORDING.read_text()
    for (name, got), want in zip(rec.entries, orjson.loads(recorded).values(), strict=True):
        assert got == want, name
    assert text == recorded
