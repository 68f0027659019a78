"""Days the orchestration sensors keep failing to rebuild or export show on the pipeline page's GraphQL and
in /metrics (the retry ledger, warehouse/runs.py)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient

from api.main import create_app
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant
from warehouse.landing import land_batch
from warehouse.runs import COLD_EXPORT, REBUILD, record_failure

DAY_BUILDS = (
    "query($p: ID!, $f: Date!, $t: Date!) { dayBuilds(projectId: $p, from: $f, to: $t) "
    "{ date stale buildFailures buildError nextAttemptAt } }"
)


def _gauge(text: str, job: str, state: str) -> float:
    m = re.search(rf'^pulseops_orchestration_failing_days{{job="{job}",state="{state}"}} (\S+)$', text, re.M)
    assert m, text[-2000:]
    return float(m.group(1))


def test_a_day_that_keeps_failing_shows_on_the_pipeline_page_and_in_metrics(
    db, database_url, broker, redis_url
):
    t = make_tenant(db)
    days = [datetime.now(UTC).date() - timedelta(days=n) for n in (3, 4)]
    for day in days:
        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=1)
        land_batch(db, [(t["project_id"], at, uuid.uuid4(), t["org_id"], "e", "u", at, "{}")])
    with TestClient(create_app(make_settings(database_url, broker, redis_url))) as client:
        assert _gauge(client.get("/metrics").text, "aggregates", "retrying") == 0
        record_failure(db, REBUILD, {days[0]: "1"}, "run-a", "connection lost", 30, 2)
        record_failure(
            db, REBUILD, {days[1]: "1"}, "run-a", "connection lost", 30, 1
        )  # one attempt: given up
        record_failure(db, COLD_EXPORT, {days[0]: "1"}, "run-b", "disk full", 30, 5)
        text = client.get("/metrics").text
        assert _gauge(text, "aggregates", "retrying") == 1 and _gauge(text, "aggregates", "given_up") == 1
        assert _gauge(text, "cold_export", "retrying") == 1
        r = client.post(
            "/graphql",
            json={
                "query": DAY_BUILDS,
                "variables": {"p": str(t["project_id"]), "f": str(days[1]), "t": str(days[0])},
            },
            headers={"X-API-Key": t["read_key"]},
        )
        rows = {b["date"]: b for b in r.json()["data"]["dayBuilds"]}
        assert rows[str(days[0])]["buildFailures"] == 1 and rows[str(days[0])]["nextAttemptAt"]
        assert rows[str(days[0])]["buildError"] == "connection lost"
        assert rows[str(days[1])]["buildFailures"] == 1 and rows[str(days[1])]["nextAttemptAt"] is None
