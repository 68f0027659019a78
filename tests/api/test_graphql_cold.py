"""GraphQL over days whose raw events went to the cold tier (exported, verified, partition dropped): every
answer, aggregate-backed or raw-only (filters, breakdowns, event-name active users, recent events, custom
metrics), equals the ground truth over ranges spanning cold and hot days, in UTC and New York; a dropped day
that is not in the cold tier still refuses."""

from __future__ import annotations

from collections import Counter
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
from warehouse.reads import explore, series
from warehouse.reads.exact import Scope, data_version
from warehouse.reads.filters import FilterOp, PropertyFilter

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
    # The same questions from PostgreSQL (exported, not yet dropped) and then from Parquet: equal answers, so
    # a cached answer (its data version does not move at the drop) is what a recomputation would return.
    before = _direct_answers(db, tenant["project_id"], days[0], days[-1], cold_settings)
    version = data_version(db, tenant["project_id"], days[0], days[-1])
    dropped = cold.drop_exported_partitions_before(db, old[-1] + timedelta(days=1), cold_settings).dropped
    assert set(old) <= set(dropped)  # the raw rows of these days are only in Parquet now

    assert _direct_answers(db, tenant["project_id"], days[0], days[-1], cold_settings) == before
    # the tier that answers changed: new cache keys (float sums from DuckDB may differ in the last bits)
    assert data_version(db, tenant["project_id"], days[0], days[-1]) != version
    assert ".c" not in data_version(
        db, tenant["project_id"], old[-1] + timedelta(days=1), days[-1]
    )  # hot only

    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    settings.cold = cold_settings
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

        rows = rows_of(landed)
        for tz in ("UTC", "America/New_York"):
            _raw_questions_equal_truth(client, headers, rows, tenant["project_id"], tz, start, last)
        _recent_events_page_across_tiers(client, headers, rows)

        # a day dropped from PostgreSQL that is not (or no longer) verified in the cold tier still refuses
        # (a question not asked before: answers cached earlier stay valid, the data did not change)
        db.execute(
            "UPDATE cold_exports SET status = 'failed' WHERE project_id = %s AND day = %s AND dataset = 'events'",
            (tenant["project_id"], old[1]),
        )
        filtered = """
        query($p: ID!, $f: Date!, $t: Date!) {
          eventCounts(projectId: $p, from: $f, to: $t, filters: [{property: "plan", op: EQ, value: "team"}]) { total }
        }"""
        body = client.post(
            "/graphql", json={"query": filtered, "variables": variables}, headers=headers
        ).json()
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "from"}
        assert f"{old[1].isoformat()}..{old[1].isoformat()}" in body["errors"][0]["message"]
        assert "neither in PostgreSQL nor in the cold tier" in body["errors"][0]["message"]
        hot_only = {**variables, "f": (old[1] + timedelta(days=1)).isoformat()}
        body = client.post(
            "/graphql", json={"query": filtered, "variables": hot_only}, headers=headers
        ).json()
        hot_truth = Truth(rows, tenant["project_id"], "UTC", old[1] + timedelta(days=1), last)
        assert body["data"]["eventCounts"]["total"] == hot_truth.total(
            where=lambda p: p.get("plan") == "team"
        )
        # recentEvents pages down to that day and then refuses, rather than skipping it
        page_q = """query($p: ID!, $after: String) { recentEvents(projectId: $p, first: 200, after: $after) {
          edges { node { eventTime } } pageInfo { hasNextPage endCursor } } }"""
        after, seen = None, 0
        while True:
            body = client.post(
                "/graphql", json={"query": page_q, "variables": {"p": variables["p"], "after": after}},
                headers=headers,
            ).json()  # fmt: skip
            if "errors" in body:
                break
            page = body["data"]["recentEvents"]
            seen += len(page["edges"])
            assert page["pageInfo"]["hasNextPage"], "paged past the missing day without an error"
            after = page["pageInfo"]["endCursor"]
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "after"}
        # every page that did not need the missing day was served (the refused one would have reached it)
        assert seen > sum(1 for r in rows if r.ts.date() > old[1]) - 201


def _direct_answers(db, project_id, start, last, cold_settings) -> tuple:
    scope = Scope(project_id, start, last, "America/New_York", ("page_view", "purchase"),
                  (PropertyFilter("device", FilterOp.NEQ, "mobile"),))  # fmt: skip
    return (
        series.event_counts(db, scope, "hour", cold=cold_settings),
        series.active_users(db, scope, 7, cold=cold_settings),
        series.top_events(db, scope, 5, cold=cold_settings),
        explore.breakdown(db, scope, "country", 50, cold=cold_settings),
    )


PRO = {"property": "plan", "op": "EQ", "value": "pro"}


def _gql(client, headers, query: str, variables: dict) -> dict:
    body = client.post("/graphql", json={"query": query, "variables": variables}, headers=headers).json()
    assert "errors" not in body, body
    return body["data"]


def _raw_questions_equal_truth(client, headers, rows, project_id, tz, start, last) -> None:
    truth = Truth(rows, project_id, tz, start, last)
    variables = {"p": str(project_id), "f": start.isoformat(), "t": last.isoformat(), "tz": tz, "pro": [PRO]}
    pro = lambda p: p.get("plan") == "pro"  # noqa: E731
    data = _gql(client, headers, """
    query($p: ID!, $f: Date!, $t: Date!, $tz: String!, $pro: [PropertyFilter!]) {
      day: eventCounts(projectId: $p, from: $f, to: $t, timezone: $tz, filters: $pro) { total buckets { start value } }
      week: eventCounts(projectId: $p, from: $f, to: $t, timezone: $tz, granularity: WEEK, filters: $pro,
                        eventNames: ["page_view", "signup"]) { total buckets { start value } }
      hour: eventCounts(projectId: $p, from: $f, to: $t, timezone: $tz, granularity: HOUR,
                        filters: [{property: "amount", op: GT, value: 20}]) { buckets { start value } }
      totalEvents(projectId: $p, from: $f, to: $t, timezone: $tz, filters: $pro)
      topEvents(projectId: $p, from: $f, to: $t, timezone: $tz, limit: 3, filters: $pro) { eventName count }
      breakdown(projectId: $p, property: "country", from: $f, to: $t, timezone: $tz, limit: 100,
                filters: [{property: "device", op: NEQ, value: "mobile"}]) { totalEvents groups { value events users } }
      dau: activeUsers(projectId: $p, from: $f, to: $t, timezone: $tz, kind: DAU, eventNames: ["page_view"]) { days { date value } }
      wau: activeUsers(projectId: $p, from: $f, to: $t, timezone: $tz, kind: WAU, eventNames: ["page_view"]) { days { date value } }
      mau: activeUsers(projectId: $p, from: $f, to: $t, timezone: $tz, kind: MAU, eventNames: ["page_view"]) { days { date value } }
      metrics(projectId: $p, from: $f, to: $t, timezone: $tz) { totalEvents dailyActiveUsers { date value } }
    }""", variables)  # fmt: skip

    def buckets(series_: dict) -> dict:
        out = {}
        for b in series_["buckets"]:
            if b["value"]:
                t = datetime.fromisoformat(b["start"])
                out[(t.replace(tzinfo=None), t.utcoffset())] = b["value"]
        return out

    assert buckets(data["day"]) == truth.counts("day", where=pro), tz
    assert data["day"]["total"] == data["totalEvents"] == truth.total(where=pro)
    names = ("page_view", "signup")
    assert buckets(data["week"]) == truth.counts("week", names=names, where=pro), tz
    big = lambda p: isinstance(p.get("amount"), int | float) and p["amount"] > 20  # noqa: E731
    assert buckets(data["hour"]) == truth.counts("hour", where=big), tz
    top = Counter(r.name for r, _ in truth.select(where=pro))
    assert [(t["eventName"], t["count"]) for t in data["topEvents"]] == sorted(
        top.items(), key=lambda kv: (-kv[1], kv[0])
    )[:3]
    not_mobile = lambda p: p.get("device") != "mobile"  # noqa: E731
    want = truth.breakdown("country", where=not_mobile)
    got = {
        (None if g["value"] is None else f'"{g["value"]}"'): (g["events"], g["users"])
        for g in data["breakdown"]["groups"]
    }
    assert got == want, tz
    assert data["breakdown"]["totalEvents"] == truth.total(where=not_mobile)
    for kind, window in (("dau", 1), ("wau", 7), ("mau", 30)):
        days = [(date.fromisoformat(d["date"]), d["value"]) for d in data[kind]["days"]]
        assert days == truth.active(window, names=("page_view",)), (tz, kind)
    assert data["metrics"]["totalEvents"] == truth.total()
    assert [(date.fromisoformat(d["date"]), d["value"]) for d in data["metrics"]["dailyActiveUsers"]] == (
        truth.active(1)
    )

    # custom metrics created now: every built day predates them, so each series reads raw events of every day
    create = """mutation($p: ID!, $name: String!, $agg: Aggregation!, $prop: String, $dims: [String!]!) {
      createMetric(projectId: $p, input: {name: $name, aggregation: $agg, eventName: "purchase",
                   property: $prop, dimensions: $dims, filters: {plan: "pro"}}) { id } }"""
    series_q = """query($m: ID!, $f: Date!, $t: Date!, $tz: String!, $g: Granularity!) {
      metricSeries(metricId: $m, from: $f, to: $t, timezone: $tz, granularity: $g) {
        points { start dimensions value events } } }"""
    purchases = truth.select(names=("purchase",), where=pro)
    for agg, prop, dims in (
        ("UNIQUE_USERS", None, ["device"]),
        ("SUM", "amount", ["country"]),
        ("COUNT", None, []),
    ):
        made = _gql(
            client,
            headers,
            create,
            {"p": str(project_id), "name": f"{agg} {tz}", "agg": agg, "prop": prop, "dims": dims},
        )
        for g in ("DAY", "WEEK"):
            points = _gql(client, headers, series_q, {"m": made["createMetric"]["id"], "f": start.isoformat(),
                                                      "t": last.isoformat(), "tz": tz, "g": g})["metricSeries"]["points"]  # fmt: skip
            want_m: dict = {}
            for r, loc in purchases:
                day = datetime.combine(loc.date(), datetime.min.time())
                if g == "WEEK":
                    day -= timedelta(days=day.weekday())
                key = (day, tuple(r.props[d] for d in dims if d in r.props))
                want_m.setdefault(key, []).append(r)
            got_m = {
                (datetime.fromisoformat(p["start"]).replace(tzinfo=None), tuple(p["dimensions"].values())): p
                for p in points
            }
            assert got_m.keys() == want_m.keys(), (tz, agg, g)
            for key, rs in want_m.items():
                value = {
                    "UNIQUE_USERS": len({r.distinct_id for r in rs}),
                    "SUM": sum(r.props["amount"] for r in rs),
                    "COUNT": len(rs),
                }[agg]
                assert abs(got_m[key]["value"] - value) < 1e-6, (tz, agg, g, key)
                assert got_m[key]["events"] == len(rs)


def _recent_events_page_across_tiers(client, headers, rows) -> None:
    """Newest first, page after page, from hot days into cold days, equals every matching event in order."""
    query = """query($p: ID!, $after: String) {
      recentEvents(projectId: $p, first: 37, after: $after, eventNames: ["purchase", "signup"],
                   filters: [{property: "plan", op: IN, values: ["pro", "team"]}]) {
        edges { node { eventId eventTime } } pageInfo { hasNextPage endCursor } } }"""
    project = rows[0].project_id
    want = sorted(
        (r for r in rows if r.name in ("purchase", "signup") and r.props.get("plan") in ("pro", "team")),
        key=lambda r: (r.ts, r.event_id),
        reverse=True,
    )
    got: list[str] = []
    after = None
    while True:
        page = _gql(client, headers, query, {"p": str(project), "after": after})["recentEvents"]
        got += [e["node"]["eventId"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert got == [str(r.event_id) for r in want]
