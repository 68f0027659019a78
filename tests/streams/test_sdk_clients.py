"""The official PostHog and Segment libraries against the running system: uvicorn ingest, Tansu, a landing
worker and PostgreSQL, with the libraries' own batching, gzip and retries. Python: posthog and
segment-analytics-python (PyPI, dev extra); Node: posthog-node and @segment/analytics-node (npm,
dashboards/package.json devDependencies, driven by tests/streams/node/sdk_clients.cjs).

The key is rate limited below what the libraries offer, so they meet 429 + Retry-After and retry; some
events are captured twice with the same id, as an SDK retry after a lost answer would. Every event must land
exactly once (count by event_id in PostgreSQL), and GraphQL must count what was sent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
import pytest
from posthog import Posthog
from segment.analytics import Client as SegmentClient

from tests.fixtures.system import ROOT, wait_until
from tests.utils.tenants import make_tenant
from tests.utils.tools import require, skip_unless_installed
from warehouse.tenants import create_api_key

pytestmark = pytest.mark.slow

N_EVENTS = 3_000
RETRIED = 100  # events sent a second time with the same id


def _landed(database_url: str, project_id: uuid.UUID) -> tuple[int, int, Counter]:
    """(rows, distinct event ids, rows by event name) of one project."""
    with psycopg.connect(database_url) as conn:
        rows, ids = conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events WHERE project_id = %s", (project_id,)
        ).fetchone()
        names = conn.execute(
            "SELECT event_name, count(*) FROM events WHERE project_id = %s GROUP BY 1", (project_id,)
        ).fetchall()
    return rows, ids, Counter(dict(names))


def _graphql_total(url: str, read_key: str, project_id: uuid.UUID) -> tuple[int, dict[str, int]]:
    today = datetime.now(UTC).date().isoformat()
    query = """query($p: ID!, $d: Date!) { totalEvents(projectId: $p, from: $d, to: $d, timezone: "UTC")
      topEvents(projectId: $p, from: $d, to: $d, limit: 20, timezone: "UTC") { eventName count } }"""
    resp = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": {"p": str(project_id), "d": today}},
        headers={"X-API-Key": read_key},
        timeout=30,
    )
    body = resp.json()
    assert "errors" not in body, body
    data = body["data"]
    return data["totalEvents"], {t["eventName"]: t["count"] for t in data["topEvents"]}


def _tenant(db: psycopg.Connection, project: str) -> tuple[dict, str]:
    """A tenant and an ingest key limited below what the libraries send, so they meet 429 and retry."""
    t = make_tenant(db, "sdk", project)
    _, key = create_api_key(
        db, org_id=t["org_id"], project_id=t["project_id"], kind="ingest", rate_per_s=1500, burst=400
    )
    return t, key


def _rate_limited(url: str, route: str) -> float:
    """429 answers on `route` so far (one API process: its /metrics sees every request)."""
    prefix = f'pulseops_http_requests_total{{route="{route}",status="429"}} '
    lines = httpx.get(f"{url}/metrics", timeout=10).text.splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(prefix))


def _assert_exactly(database_url: str, system_url: str, tenant: dict, expected: Counter) -> None:
    project = tenant["project_id"]
    total = sum(expected.values())
    wait_until(lambda: _landed(database_url, project)[0] >= total, 120, "every event landed")
    rows, ids, names = _landed(database_url, project)
    assert (rows, ids) == (total, total), "an event landed twice or not at all"
    assert names == expected
    assert _graphql_total(system_url, tenant["read_key"], project) == (total, dict(expected))


@pytest.fixture
def running(system_factory):
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    return system


def test_posthog_python_events_land_exactly_once(running, db, database_url) -> None:
    tenant, key = _tenant(db, "posthog")
    errors: list = []
    client = Posthog(
        key, host=running.url, gzip=True, flush_at=100, flush_interval=0.1, max_retries=10,
        on_error=lambda exc, batch: errors.append((exc, len(batch))),
    )  # fmt: skip
    expected: Counter = Counter()
    retried: list[tuple[str, str, int]] = []
    for i in range(N_EVENTS):
        user = f"user-{i % 97}"
        event_id = str(uuid.uuid4())
        client.capture(event=f"ev-{i % 5}", distinct_id=user, properties={"i": i}, uuid=event_id)
        expected[f"ev-{i % 5}"] += 1
        if i < RETRIED:
            retried.append((user, event_id, i))
    for i in range(50):
        client.set(distinct_id=f"user-{i}", properties={"plan": "pro"})
        client.alias(previous_id=f"anon-{i}", distinct_id=f"user-{i}")
        client.group_identify(group_type="company", group_key=f"c-{i}", properties={"size": i})
    expected.update({"$set": 50, "$create_alias": 50, "$groupidentify": 50})
    for user, event_id, i in retried:  # the same events again, as a retry after a lost answer
        client.capture(event=f"ev-{i % 5}", distinct_id=user, properties={"i": i}, uuid=event_id)
    client.flush()
    client.shutdown()
    assert errors == []
    assert _rate_limited(running.url, "/batch/") > 0, "the library never had to retry: the test proves less"
    _assert_exactly(database_url, running.url, tenant, expected)


def test_segment_analytics_python_events_land_exactly_once(running, db, database_url) -> None:
    tenant, key = _tenant(db, "segment")
    errors: list = []
    client = SegmentClient(
        key, host=running.url, gzip=True, upload_size=100, upload_interval=0.1, max_retries=10,
        on_error=lambda exc, batch: errors.append((exc, len(batch))),
    )  # fmt: skip
    expected: Counter = Counter()
    retried: list[tuple[str, str, int]] = []
    for i in range(N_EVENTS):
        user = f"user-{i % 97}"
        message_id = f"msg-{uuid.uuid4()}"  # not a UUID: mapped to a stable uuid5
        client.track(user_id=user, event=f"ev-{i % 5}", properties={"i": i}, message_id=message_id)
        expected[f"ev-{i % 5}"] += 1
        if i < RETRIED:
            retried.append((user, message_id, i))
    for i in range(50):
        client.identify(user_id=f"user-{i}", anonymous_id=f"anon-{i}", traits={"n": i})
        client.alias(previous_id=f"anon-{i}", user_id=f"user-{i}")
        client.group(user_id=f"user-{i}", group_id=f"c-{i}", traits={"size": i})
        client.page(user_id=f"user-{i}", name="Home", properties={"path": "/"})
        client.screen(anonymous_id=f"anon-{i}", name="Settings")
    expected.update(
        {"$identify": 50, "$create_alias": 50, "$groupidentify": 50, "$pageview": 50, "$screen": 50}
    )
    for user, message_id, i in retried:  # the same messages again, as a retry after a lost answer
        client.track(user_id=user, event=f"ev-{i % 5}", properties={"i": i}, message_id=message_id)
    client.flush()
    client.join()
    assert errors == []
    assert _rate_limited(running.url, "/v1/batch") > 0, "the library never had to retry: the test proves less"
    _assert_exactly(database_url, running.url, tenant, expected)


NODE = shutil.which("node")
NODE_PACKAGES = ROOT / "dashboards" / "node_modules"
NODE_MISSING = NODE is None or not (NODE_PACKAGES / "posthog-node").exists()
SCRIPT = Path(__file__).parent / "node" / "sdk_clients.cjs"


@skip_unless_installed(
    NODE_MISSING, "node with posthog-node and @segment/analytics-node (npm ci --prefix dashboards)"
)
@pytest.mark.parametrize(
    ("library", "route", "extra"),
    [
        ("posthog-node", "/batch/", {"$identify": 50, "$create_alias": 50, "$groupidentify": 50}),
        ("analytics-node", "/v1/batch",
         {"$identify": 50, "$create_alias": 50, "$groupidentify": 50, "$pageview": 50, "$screen": 50}),
    ],
)  # fmt: skip
def test_node_libraries_events_land_exactly_once(running, db, database_url, library, route, extra) -> None:
    require(NODE_MISSING, "node with posthog-node and @segment/analytics-node (npm ci --prefix dashboards)")
    tenant, key = _tenant(db, library)
    done = subprocess.run(
        [NODE, str(SCRIPT), library, running.url, key, str(N_EVENTS)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"errors": 0}, done.stdout[-3000:]
    assert _rate_limited(running.url, route) > 0, "the library never had to retry: the test proves less"
    expected = Counter({f"ev-{i}": N_EVENTS // 5 for i in range(5)}) + Counter(extra)
    _assert_exactly(database_url, running.url, tenant, expected)
