"""GraphQL over days whose raw events went to the cold tier (exported, verified, partition dropped): answers
that aggregates serve stay exact across cold and hot days; questions only raw events answer are refused for
cold days instead of silently undercounting."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from fastapi.testclient import TestClient

from api.main import create_app
from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from tests.utils.truth import Truth, rows_of
from warehouse import cold
from warehouse.aggregates import rebuild_day

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)


def test_queries_spanning_cold_and_hot_days_equal_truth(db, database_url, broker, redis_url, tmp_path):
    tenant = make_tenant(db, "acme", "web")
    config = GeneratorConfig(
        seed=9, end=END, days=12, total_events=4_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("t", 1.0, 80)],
    )  # fmt: skip
    landed = landing_rows(generate(config), {"t": (tenant["org_id"], tenant["project_id"])}, received_at=END)
    land_rows(db, landed)
    days = sorted({r[1].date() for r in landed})
    for day in days:
        rebuild_day(db, day)
    cold_settings = ColdSettings(url=str(tmp_path / "cold"))
    old = days[:5]
    for day in old:
        cold.export_day(db, database_url, day, cold_settings)
        assert cold.verify_day(db, day, cold_settings).ok
    dropped = cold.drop_exported_partitions_before(db, old[-1] + timedelta(days=1), cold_settings).dropped
    assert set(old) <= set(dropped)  # the raw rows of these days are only in Parquet now

    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    start, last = days[0], days[-1]
    truth = Truth(rows_of(landed), tenant["project_id"], "UTC", start, last)
    variables = {"p": str(tenant["project_id"]), "f": start.isoformat(), "t": last.isoformat()}
    query = """
    query($p: ID!, $f: Date!, $t: Date!) {
      eventCounts(projectId: $p, from: $f, to: $t, granularity: HOUR, timezone: "UTC") { total buckets { start value } }
      activeUsers(projectId: $p, from: $f, to: $t, kind: WAU, timezone: "UTC") { days { date value } }
      topEvents(projectId: $p, from: $f, to: $t, limit: 5, timezone: "UTC") { eventName count }
    }"""
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": tenant["read_key"]}
        data = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers).json()
        assert "errors" not in data, data
        data = data["data"]
        counts = {
            (datetime.fromisoformat(b["start"]).replace(tzinfo=None), datetime.fromisoformat(b["start"]).utcoffset()): b["value"]
            for b in data["eventCounts"]["buckets"] if b["value"]
        }  # fmt: skip
        assert counts == truth.counts("hour")
        assert data["eventCounts"]["total"] == truth.total() == len(landed)
        assert [
            (date.fromisoformat(d["date"]), d["value"]) for d in data["activeUsers"]["days"]
        ] == truth.active(7)
        assert [(t["eventName"], t["count"]) for t in data["topEvents"]] == truth.top(5)

        filtered = """
        query($p: ID!, $f: Date!, $t: Date!) {
          eventCounts(projectId: $p, from: $f, to: $t, filters: [{property: "plan", op: EQ, value: "pro"}]) { total }
        }"""
        body = client.post(
            "/graphql", json={"query": filtered, "variables": variables}, headers=headers
        ).json()
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "from"}
        assert "cold tier" in body["errors"][0]["message"]
        hot_only = {**variables, "f": (old[-1] + timedelta(days=1)).isoformat()}
        body = client.post(
            "/graphql", json={"query": filtered, "variables": hot_only}, headers=headers
        ).json()
        hot_truth = Truth(rows_of(landed), tenant["project_id"], "UTC", old[-1] + timedelta(days=1), last)
        assert body["data"]["eventCounts"]["total"] == hot_truth.total(where=lambda p: p.get("plan") == "pro")

        # other questions that need raw events of the dropped days are refused too, inside the read snapshot
        for needs_raw in (
            'query($p: ID!, $f: Date!, $t: Date!) { activeUsers(projectId: $p, from: $f, to: $t, eventNames: ["page_view"]) { days { value } } }',
            'query($p: ID!, $f: Date!, $t: Date!) { breakdown(projectId: $p, property: "plan", from: $f, to: $t) { totalEvents } }',
        ):
            body = client.post(
                "/graphql", json={"query": needs_raw, "variables": variables}, headers=headers
            ).json()
            assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "from"}, needs_raw
        # a metric created now: its built days predate it, so its series needs raw events of the dropped days
        create = 'mutation($p: ID!) { createMetric(projectId: $p, input: {name: "views", aggregation: COUNT}) { id } }'
        metric = client.post(
            "/graphql", json={"query": create, "variables": {"p": variables["p"]}}, headers=headers
        )
        series_q = "query($m: ID!, $f: Date!, $t: Date!) { metricSeries(metricId: $m, from: $f, to: $t) { points { value } } }"
        mv = {"m": metric.json()["data"]["createMetric"]["id"], "f": variables["f"], "t": variables["t"]}
        body = client.post("/graphql", json={"query": series_q, "variables": mv}, headers=headers).json()
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "from"}
