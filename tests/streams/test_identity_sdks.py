"""Identity from the official PostHog and Segment Python libraries (from PyPI) through the running system
(uvicorn ingest, Tansu, a landing worker, PostgreSQL): anonymous sessions, then identify and alias calls; the
people-based DAU/WAU that GraphQL answers over HTTP equal a union-find of the links the test sent, and
`person` returns the linked ids and the last `$set`."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, time, timedelta

import httpx
import psycopg
import pytest
from posthog import Posthog
from segment.analytics import Client as SegmentClient

from tests.fixtures.system import wait_until
from tests.utils.tenants import make_tenant

pytestmark = pytest.mark.slow

PEOPLE = 60
TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=i) for i in (4, 3, 2, 1)]
USERS = """query($p: ID!, $from: Date!, $to: Date!, $k: ActiveUsersKind!, $by: UniqueBy!) {
  activeUsers(projectId: $p, from: $from, to: $to, kind: $k, timezone: "UTC", uniqueBy: $by) { days { date value } }
}"""
PERSON = "query($p: ID!, $d: String!) { person(projectId: $p, distinctId: $d) { distinctIds properties } }"


def _at(day: date, minute: int = 0) -> datetime:
    return datetime.combine(day, time(12, minute), UTC)


def _graphql(url: str, key: str, query: str, variables: dict) -> dict:
    body = httpx.post(
        f"{url}/graphql",
        json={"query": query, "variables": variables},
        headers={"X-API-Key": key},
        timeout=30,
    ).json()
    assert "errors" not in body, body
    return body["data"]


def _truth(
    activity: list[tuple[date, str]], links: list[tuple[str, str]], window: int
) -> list[tuple[str, int]]:
    """People active per day over a trailing window: a plain union-find of the links sent."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for a, b in links:
        parent[find(a)] = find(b)
    out = []
    for day in DAYS:
        seen = {find(who) for d, who in activity if day - timedelta(days=window - 1) <= d <= day}
        out.append((day.isoformat(), len(seen)))
    return out


def _check(url: str, tenant: dict, activity, links, total: int, database_url: str) -> None:
    def landed() -> int:
        with psycopg.connect(database_url) as conn:
            return conn.execute(
                "SELECT count(*) FROM events WHERE project_id = %s", (tenant["project_id"],)
            ).fetchone()[0]

    wait_until(lambda: landed() >= total, 120, "every event landed")
    assert landed() == total
    variables = {"p": str(tenant["project_id"]), "from": DAYS[0].isoformat(), "to": DAYS[-1].isoformat()}
    for kind, window in (("DAU", 1), ("WAU", 7)):
        for by, pairs in (("PERSON", links), ("DISTINCT_ID", [])):
            got = _graphql(url, tenant["read_key"], USERS, {**variables, "k": kind, "by": by})
            assert [(d["date"], d["value"]) for d in got["activeUsers"]["days"]] == _truth(
                activity, pairs, window
            ), (kind, by)


@pytest.fixture
def running(system_factory):
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    return system


def test_posthog_identify_and_alias_make_people(running, db, database_url) -> None:
    tenant = make_tenant(db, "sdk", "posthog-people")
    errors: list = []
    client = Posthog(
        tenant["ingest_key"], host=running.url, gzip=True, flush_at=50, flush_interval=0.1,
        on_error=lambda exc, batch: errors.append((exc, len(batch))),
    )  # fmt: skip
    activity: list[tuple[date, str]] = []
    links: list[tuple[str, str]] = []
    sent = 0

    def view(who: str, day: date, minute: int = 0) -> None:
        nonlocal sent
        client.capture("$pageview", distinct_id=who, timestamp=_at(day, minute), uuid=str(uuid.uuid4()))
        activity.append((day, who))
        sent += 1

    for k in range(PEOPLE):
        anon, user = f"anon-{uuid.uuid4()}", f"user-{k}"
        view(anon, DAYS[0])
        view(anon, DAYS[1])
        # posthog-js's identify: the identified id, the anonymous id it replaces, person properties
        client.capture(
            "$identify", distinct_id=user, timestamp=_at(DAYS[2]), uuid=str(uuid.uuid4()),
            properties={"$anon_distinct_id": anon, "$set": {"plan": "free"}, "$set_once": {"first": "x"}},
        )  # fmt: skip
        activity.append((DAYS[2], user))
        links.append((user, anon))
        sent += 1
        view(user, DAYS[3])
        if k % 3 == 0:
            device = f"device-{k}"
            view(device, DAYS[1], 5)
            client.alias(previous_id=device, distinct_id=user, timestamp=_at(DAYS[3], 9))
            client.set(distinct_id=user, properties={"plan": "pro"}, timestamp=_at(DAYS[3], 10))
            # the alias lands as an event of the device (alias = the user), the $set as one of the user
            activity += [(DAYS[3], device), (DAYS[3], user)]
            links.append((device, user))
            sent += 2
    client.flush()
    client.shutdown()
    assert errors == []
    _check(running.url, tenant, activity, links, sent, database_url)
    person = _graphql(
        running.url, tenant["read_key"], PERSON, {"p": str(tenant["project_id"]), "d": "device-0"}
    )
    assert sorted(person["person"]["distinctIds"]) == sorted(["device-0", "user-0", links[0][1]])
    assert person["person"]["properties"] == {"plan": "pro", "first": "x"}


def test_segment_identify_and_alias_make_people(running, db, database_url) -> None:
    tenant = make_tenant(db, "sdk", "segment-people")
    errors: list = []
    client = SegmentClient(
        tenant["ingest_key"], host=running.url, gzip=True, upload_size=50, upload_interval=0.1,
        on_error=lambda exc, batch: errors.append((exc, len(batch))),
    )  # fmt: skip
    activity: list[tuple[date, str]] = []
    links: list[tuple[str, str]] = []
    sent = 0
    for k in range(PEOPLE):
        anon, user, old = f"anon-{uuid.uuid4()}", f"user-{k}", f"old-{k}"
        for day in DAYS[:2]:
            client.track(anonymous_id=anon, event="viewed", timestamp=_at(day))
            activity.append((day, anon))
        client.identify(user_id=user, anonymous_id=anon, traits={"plan": "team"}, timestamp=_at(DAYS[2]))
        activity.append((DAYS[2], user))
        links.append((user, anon))
        client.track(user_id=old, event="viewed", timestamp=_at(DAYS[1], 3))
        client.alias(previous_id=old, user_id=user, timestamp=_at(DAYS[3]))
        activity += [(DAYS[1], old), (DAYS[3], user)]
        links.append((old, user))
        sent += 5
    client.flush()
    client.join()
    assert errors == []
    _check(running.url, tenant, activity, links, sent, database_url)
    person = _graphql(running.url, tenant["read_key"], PERSON, {"p": str(tenant["project_id"]), "d": "old-7"})
    assert sorted(person["person"]["distinctIds"]) == sorted(["old-7", "user-7", links[14][1]])
    assert person["person"]["properties"] == {"plan": "team"}
