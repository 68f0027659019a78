"""People over GraphQL (real PostgreSQL and Redis): `uniqueBy: PERSON` on activeUsers, breakdown and unique-user
metrics exact against a union-find truth before and after the rebuild and after a late link, the default
unchanged, the cache key moving with links alone, the `person` query and its tenant checks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from api.main import create_app
from tests.api.test_graphql import Api
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows
from tests.utils.identity import active_people, as_people, identity_data
from tests.utils.tenants import make_tenant
from tests.utils.truth import Truth, rows_of
from warehouse.aggregates import rebuild_day

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
DAYS = 14
START, LAST = (END - timedelta(days=DAYS - 1)).date(), END.date() - timedelta(days=1)
ZONES = ("UTC", "America/New_York", "Asia/Kolkata")

USERS = """
query($p: ID!, $from: Date!, $to: Date!, $k: ActiveUsersKind!, $tz: String, $by: UniqueBy!) {
  activeUsers(projectId: $p, from: $from, to: $to, kind: $k, timezone: $tz, uniqueBy: $by) { days { date value } }
}"""
USERS_DEFAULT = """
query($p: ID!, $from: Date!, $to: Date!, $k: ActiveUsersKind!, $tz: String) {
  activeUsers(projectId: $p, from: $from, to: $to, kind: $k, timezone: $tz) { days { date value } }
}"""
BREAKDOWN = """
query($p: ID!, $from: Date!, $to: Date!, $tz: String, $by: UniqueBy!) {
  breakdown(projectId: $p, property: "plan", from: $from, to: $to, timezone: $tz, uniqueBy: $by) {
    totalEvents groups { value events users }
  }
}"""
METRIC = """
query($m: ID!, $from: Date!, $to: Date!, $tz: String, $by: UniqueBy!) {
  metricSeries(metricId: $m, from: $from, to: $to, timezone: $tz, uniqueBy: $by) { points { localDate value } }
}"""
OVERVIEW = """
query($p: ID!, $from: Date!, $to: Date!, $tz: String, $by: UniqueBy!) {
  metrics(projectId: $p, from: $from, to: $to, timezone: $tz, uniqueBy: $by) { dailyActiveUsers { date value } }
}"""
PERSON = """
query($p: ID!, $d: String!) { person(projectId: $p, distinctId: $d) { personId distinctIds distinctIdCount properties } }
"""


@pytest.fixture
def api(db, database_url, broker, redis_url) -> Iterator[Api]:
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    with TestClient(create_app(settings)) as client:
        yield Api(client, db, tenants, [])


def _vars(api: Api, tenant: str = "hot", **kw) -> dict:
    return {
        "p": str(api.tenants[tenant]["project_id"]),
        "from": START.isoformat(),
        "to": LAST.isoformat(),
        **kw,
    }


def _check(api: Api, landed: list[tuple], metric_id: str) -> None:
    project = api.tenants["hot"]["project_id"]
    people = as_people(rows_of(landed), links_from=landed)
    plain = rows_of(landed)
    for tz in ZONES:
        for kind, window in (("DAU", 1), ("WAU", 7), ("MAU", 30)):
            got = api.data(USERS, _vars(api, k=kind, tz=tz, by="PERSON"))["activeUsers"]["days"]
            assert [(date.fromisoformat(d["date"]), d["value"]) for d in got] == active_people(
                people, project, tz, START, LAST, window
            ), (tz, kind)
            default = api.query(USERS_DEFAULT, _vars(api, k=kind, tz=tz)).content
            explicit = api.query(USERS, _vars(api, k=kind, tz=tz, by="DISTINCT_ID")).content
            assert default == explicit
            days = orjson.loads(default)["data"]["activeUsers"]["days"]
            truth = Truth(plain, project, tz, START, LAST)
            assert [(date.fromisoformat(d["date"]), d["value"]) for d in days] == truth.active(window)
        overview = api.data(OVERVIEW, _vars(api, tz=tz, by="PERSON"))["metrics"]["dailyActiveUsers"]
        assert [(date.fromisoformat(d["date"]), d["value"]) for d in overview] == active_people(
            people, project, tz, START, LAST, 1
        ), tz
        truth = Truth(people, project, tz, START, LAST)
        got = api.data(BREAKDOWN, _vars(api, tz=tz, by="PERSON"))["breakdown"]
        assert got["totalEvents"] == truth.total()
        assert {
            (None if g["value"] is None else orjson.dumps(g["value"]).decode()): (g["events"], g["users"])
            for g in got["groups"]
        } == (truth.breakdown("plan"))
        want: dict = {}
        for r, loc in truth.select(names=("page_view",)):
            want.setdefault(loc.date().isoformat(), set()).add(r.distinct_id)
        points = api.data(
            METRIC,
            {"m": metric_id, "from": START.isoformat(), "to": LAST.isoformat(), "tz": tz, "by": "PERSON"},
        )["metricSeries"]["points"]
        assert {p["localDate"]: p["value"] for p in points} == {d: len(u) for d, u in want.items()}, tz


def test_people_counts_before_and_after_rebuild_and_after_a_late_link(api):
    hot = api.tenants["hot"]
    ident = identity_data(hot["project_id"], hot["org_id"], END, DAYS, people=48, seed=7)
    metric = api.data(
        'mutation($p: ID!) { createMetric(projectId: $p, input: {name: "viewers", aggregation: UNIQUE_USERS, '
        'eventName: "page_view"}) { id } }',
        {"p": str(hot["project_id"])},
    )["createMetric"]["id"]
    land_rows(api.db, ident.rows)
    _check(api, ident.rows, metric)  # raw only
    for day in sorted({r[1].date() for r in ident.rows}):
        rebuild_day(api.db, day)
    _check(api, ident.rows, metric)  # from aggregates, mapped to persons
    assert ident.late_links
    land_rows(api.db, ident.late_links)  # late links after the build: cached answers must not survive
    _check(api, ident.rows + ident.late_links, metric)
    for day in sorted({r[1].date() for r in ident.late_links}):
        rebuild_day(api.db, day)
    _check(api, ident.rows + ident.late_links, metric)


def test_a_link_alone_moves_the_cache_key(api):
    """The link's own event lies outside the range: only the identity version can tell the cache."""
    hot = api.tenants["hot"]
    p, o = hot["project_id"], hot["org_id"]
    day = LAST - timedelta(days=1)
    ts = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)

    def ev(when: datetime, who: str, name: str = "page_view", props: dict | None = None) -> tuple:
        return (p, when, uuid.uuid4(), o, name, who, when, orjson.dumps(props or {}).decode())

    land_rows(api.db, [ev(ts, "phone"), ev(ts, "laptop")])
    variables = _vars(api, k="DAU", tz="UTC", by="PERSON", **{"from": day.isoformat(), "to": day.isoformat()})
    assert api.data(USERS, variables)["activeUsers"]["days"][0]["value"] == 2
    assert api.data(USERS, variables)["activeUsers"]["days"][0]["value"] == 2  # served from the cache
    outside = datetime.combine(START - timedelta(days=3), datetime.min.time(), UTC)
    land_rows(api.db, [ev(outside, "laptop", "$identify", {"$anon_distinct_id": "phone"})])
    assert api.data(USERS, variables)["activeUsers"]["days"][0]["value"] == 1
    default = {k: v for k, v in variables.items() if k != "by"}
    assert api.data(USERS_DEFAULT, default)["activeUsers"]["days"][0]["value"] == 2


def test_person_query_and_tenant_checks(api):
    hot, quiet = api.tenants["hot"], api.tenants["quiet"]
    t0 = END - timedelta(days=2)

    def ev(tenant: dict, hours: int, who: str, name: str, props: dict) -> tuple:
        when = t0 + timedelta(hours=hours)
        return (
            tenant["project_id"],
            when,
            uuid.uuid4(),
            tenant["org_id"],
            name,
            who,
            when,
            orjson.dumps(props).decode(),
        )

    land_rows(
        api.db,
        [
            ev(hot, 0, "anon-1", "page_view", {"$set_once": {"referrer": "ad"}}),
            ev(hot, 1, "user-1", "$identify", {"$anon_distinct_id": "anon-1", "$set": {"plan": "free"}}),
            ev(hot, 3, "device-2", "$create_alias", {"alias": "user-1"}),
            ev(hot, 2, "user-1", "$set", {"$set": {"plan": "pro"}, "$set_once": {"referrer": "later"}}),
            ev(quiet, 0, "user-1", "$set", {"$set": {"plan": "quiet-plan"}}),
            ev(quiet, 1, "user-1", "$identify", {"$anon_distinct_id": "someone-else"}),
        ],
    )
    got = api.data(PERSON, {"p": str(hot["project_id"]), "d": "device-2"})["person"]
    assert got == {
        "personId": "anon-1",
        "distinctIds": ["anon-1", "device-2", "user-1"],
        "distinctIdCount": 3,
        "properties": {"plan": "pro", "referrer": "ad"},
    }
    other = api.data(PERSON, {"p": str(quiet["project_id"]), "d": "user-1"}, tenant="quiet")["person"]
    assert other["distinctIds"] == ["someone-else", "user-1"]
    assert other["properties"] == {"plan": "quiet-plan"}
    alone = api.data(PERSON, {"p": str(hot["project_id"]), "d": "never-seen"})["person"]
    assert alone == {
        "personId": "never-seen",
        "distinctIds": ["never-seen"],
        "distinctIdCount": 1,
        "properties": {},
    }
    # another tenant's project, with the hot key: FORBIDDEN, whatever the id
    for query, variables in (
        (PERSON, {"p": str(quiet["project_id"]), "d": "user-1"}),
        (USERS, _vars(api, "quiet", k="DAU", by="PERSON")),
        (BREAKDOWN, _vars(api, "quiet", by="PERSON")),
    ):
        assert api.error(query, variables)["extensions"]["code"] == "FORBIDDEN"
    assert api.error(PERSON, {"p": str(hot["project_id"]), "d": ""})["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "distinctId",
    }


@hyp_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(distinct_id=st.text(max_size=220))
def test_any_distinct_id_is_data_or_a_client_error(api, distinct_id):
    r = api.query(PERSON, {"p": str(api.tenants["hot"]["project_id"]), "d": distinct_id})
    assert r.status_code == 200, r.text
    body = r.json()
    if "errors" in body:
        assert body["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "distinctId"}, body
    else:
        assert body["data"]["person"]["distinctIds"] == [distinct_id]


def test_a_lone_surrogate_is_a_client_error(api):
    body = '{"query": %s, "variables": {"p": "%s", "d": "a\\ud800b"}}' % (
        orjson.dumps(PERSON).decode(),
        api.tenants["hot"]["project_id"],
    )
    r = api.client.post(
        "/graphql",
        content=body,
        headers={"X-API-Key": api.tenants["hot"]["read_key"], "Content-Type": "application/json"},
    )
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert r.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT", r.text
