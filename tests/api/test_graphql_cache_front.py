"""The plain-ASGI front of /graphql cache hits (api/routes/graphql_asgi.py) against real PostgreSQL and Redis: a
hit it answers is the framework path's answer byte for byte, headers and request count included; another key
or tenant, new data, a revoked or wrong key, a refusal or a miss go through the framework, answered as before,
charged to the rate limit once and looked up once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.metrics import REQUESTS
from api.routes import graphql as graphql_routes
from api.routes.graphql import MAX_BODY_BYTES
from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from tests.api.test_graphql_response_cache import END, HOURLY, LAST, START, _count
from tests.fixtures.system import make_settings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.tenants import create_api_key, revoke_api_key


@dataclass
class Front:
    client: TestClient
    db: psycopg.Connection
    tenants: dict[str, dict]
    rows: list
    executed: list[int]  # requests that reached Strawberry's router (`_Router.run`)
    responses: object  # the app's whole-answer cache, kept to turn the front off and on

    def post(self, query: str = HOURLY, tenant: str = "hot", key: str = "", project: str = "", **kw):
        project = project or str(self.tenants[tenant]["project_id"])
        return self.client.post(
            "/graphql",
            json={"query": query, "variables": {"p": project, "f": START.isoformat(), "t": LAST.isoformat()}},
            headers={"X-API-Key": key or self.tenants[tenant]["read_key"], **kw.pop("headers", {})},
            **kw,
        )

    def framework(self, enabled: bool) -> None:
        """Turn the front off (every request through FastAPI and Strawberry) or back on."""
        self.client.app.graphql_responses = self.responses if enabled else None


def _served(status: int) -> float:
    return REQUESTS.labels(route="/graphql", status=str(status))._value.get()


@pytest.fixture
def front(db, database_url, broker, redis_url, monkeypatch) -> Iterator[Front]:
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=7, end=END, days=7, total_events=2_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 0.7, 80), TenantSpec("quiet", 0.3, 30)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    land_rows(db, rows[:1500])
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0  # rows land and are queried at once
    executed: list[int] = []
    run = graphql_routes._Router.run

    async def counted(self, request, context=None, root_value=None):
        executed.append(1)
        return await run(self, request, context, root_value)

    monkeypatch.setattr(graphql_routes._Router, "run", counted)
    with TestClient(create_app(settings)) as client:
        yield Front(client, db, tenants, rows, executed, client.app.graphql_responses)


def test_a_hit_answered_by_the_front_is_the_frameworks_answer_byte_for_byte(front):
    first = front.post()
    assert first.status_code == 200 and "errors" not in first.json(), first.text
    front.framework(False)
    slow = front.post()  # a hit, served by `_Router.run`
    assert len(front.executed) == 2
    front.framework(True)
    counted, hits = _served(200), _count("local_hit")
    fast = front.post()
    assert len(front.executed) == 2  # never reached the framework
    assert _served(200) == counted + 1 and _count("local_hit") == hits + 1
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content == first.content
    assert fast.headers.items() == slow.headers.items()
    bearer = front.post(
        key="-", headers={"X-API-Key": "", "Authorization": f"Bearer {front.tenants['hot']['read_key']}"}
    )
    assert len(front.executed) == 2 and bearer.content == first.content


def test_a_redis_hit_is_answered_by_the_front_in_another_process(front, database_url, broker, redis_url):
    first = front.post()
    settings = make_settings(database_url, broker, redis_url)
    settings.query.version_ttl_s = 0
    with TestClient(create_app(settings)) as other:
        body = {
            "query": HOURLY,
            "variables": {
                "p": str(front.tenants["hot"]["project_id"]),
                "f": START.isoformat(),
                "t": LAST.isoformat(),
            },
        }
        headers = {"X-API-Key": front.tenants["hot"]["read_key"]}
        assert other.post("/graphql", json={"query": "{ __typename }"}, headers=headers).status_code == 200
        executed, redis_hits = len(front.executed), _count("hit")
        second = other.post("/graphql", json=body, headers=headers)  # the key is cached now
        assert _count("hit") == redis_hits + 1 and len(front.executed) == executed
        assert second.content == first.content and second.headers.items() == first.headers.items()


def test_another_tenants_key_never_gets_the_stored_answer(front):
    first = front.post()
    assert front.post().content == first.content
    # the quiet tenant's key (cached by its first request), the very same body naming the hot project
    front.post(tenant="quiet")
    executed = len(front.executed)
    other = front.post(tenant="quiet", project=str(front.tenants["hot"]["project_id"]))
    assert len(front.executed) == executed + 1  # a miss: executed, refused by the resolver
    assert other.json()["data"] is None and other.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    # the quiet tenant's own answer is its own, and the hot key still gets the hot answer
    own = front.post(tenant="quiet")
    assert own.content != first.content and front.post().content == first.content
    _id, key = create_api_key(
        front.db,
        org_id=front.tenants["hot"]["org_id"],
        project_id=front.tenants["hot"]["project_id"],
        kind="read",
    )
    front.post(query="{ __typename }", key=key)
    executed = len(front.executed)
    assert front.post(key=key).content == first.content
    assert len(front.executed) == executed + 1  # its own entry: a miss first


def test_new_data_is_never_answered_from_the_stored_entry(front):
    before = front.post()
    assert front.post().content == before.content
    land_rows(front.db, front.rows[1500:])
    executed, stale, missed = len(front.executed), _count("stale"), _count("miss")
    after = front.post()
    assert len(front.executed) == executed + 1 and _count("stale") == stale + 1
    assert _count("miss") == missed  # looked up once: the framework did not ask Redis again
    assert after.json()["data"]["eventCounts"]["total"] > before.json()["data"]["eventCounts"]["total"]
    again = front.post()
    assert again.content == after.content and len(front.executed) == executed + 1


def _refusal(front: Front, key: str, **kw) -> tuple[int, bytes, list]:
    """The answer with the front on, asserted equal to the framework's (front off)."""
    answers = []
    for enabled in (True, False):
        front.framework(enabled)
        r = front.client.post(
            "/graphql", headers={"X-API-Key": key, "Content-Type": "application/json"}, **kw
        )
        answers.append((r.status_code, r.content, sorted(r.headers.items())))
    front.framework(True)
    assert answers[0] == answers[1]
    return answers[0]


def test_refusals_are_the_frameworks(front):
    body = front.post().request.content
    assert front.post().status_code == 200  # a hit
    hot = front.tenants["hot"]
    assert _refusal(front, "po_read_not_a_key", content=body)[0] == 401
    assert _refusal(front, "", content=body)[0] == 401
    assert _refusal(front, hot["ingest_key"], content=body)[0] == 403
    assert _refusal(front, hot["read_key"], content=b" " * (MAX_BODY_BYTES + 1))[0] == 413
    revoke_api_key(front.db, hot["read_key_id"])
    time.sleep(0.6)  # ingest.key_cache_ttl_s = 0.5 in the tests' settings
    assert _refusal(front, hot["read_key"], content=body)[0] == 401


def test_a_request_is_charged_to_the_rate_limit_once(front):
    key_id, key = create_api_key(
        front.db,
        org_id=front.tenants["hot"]["org_id"],
        project_id=front.tenants["hot"]["project_id"],
        kind="read",
    )
    front.db.execute("UPDATE api_keys SET rate_per_s = 0.01, burst = 3 WHERE id = %s", (key_id,))
    # 1: the key is not cached yet (the framework charges); 2: another body, a miss the front charged and
    # handed on; 3: its hit; 4: refused with the framework's 429
    codes = [front.post(query=q, key=key).status_code for q in (HOURLY, HOURLY + " ", HOURLY + " ", HOURLY)]
    assert codes == [200, 200, 200, 429], codes
