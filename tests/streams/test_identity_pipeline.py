"""Identity end to end over real processes: HTTP `/v1/batch` -> Tansu -> landing worker -> PostgreSQL. Link
events sent twice (an SDK retry) and late links after the rest land once; the persons equal a union-find of
the links sent, per project, and people-based DAU/WAU equal the truth."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import orjson
import psycopg
import pytest

from benchmarks.generator import GeneratedEvent, send_http_sync
from tests.fixtures.system import wait_until
from tests.utils.identity import active_people, as_people, identity_data, link_pairs, people_of
from tests.utils.tenants import make_tenant
from tests.utils.truth import rows_of
from warehouse import identity
from warehouse.reads import series
from warehouse.reads.exact import Scope

pytestmark = pytest.mark.slow

END = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
DAYS = 10


def _payloads(tenant: str, rows: list[tuple]) -> list[GeneratedEvent]:
    return [
        GeneratedEvent(
            tenant,
            {
                "event": r[4],
                "distinct_id": r[5],
                "event_id": str(r[2]),
                "timestamp": r[1].isoformat(),
                "properties": orjson.loads(r[7]),
            },
        )
        for r in rows
    ]


def _landed(database_url: str) -> int:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


def test_links_through_the_landing_worker(system_factory, db, database_url):
    a, b = make_tenant(db, "acme", "web"), make_tenant(db, "globex", "shop")
    ident = identity_data(a["project_id"], a["org_id"], END, DAYS, people=200, seed=21)
    twin = identity_data(b["project_id"], b["org_id"], END, DAYS, people=40, seed=22)
    links = [r for r in ident.rows if r[4] in ("$identify", "$create_alias")]
    system = system_factory()
    system.start_ingest(workers=1)
    system.start_worker()
    keys = {"a": a["ingest_key"], "b": b["ingest_key"]}
    events = _payloads("a", ident.rows) + _payloads("b", twin.rows) + _payloads("a", links)  # links re-sent
    report = send_http_sync(events, system.url, keys, batch_size=200, concurrency=4)
    assert report.accepted == len(events), report
    expected = len(ident.rows) + len(twin.rows)
    wait_until(lambda: _landed(database_url) >= expected, 120, "events landed")
    late = _payloads("a", ident.late_links)
    assert late
    for _ in range(2):  # late links, and their retry
        assert send_http_sync(late, system.url, keys, batch_size=50).accepted == len(late)
    expected += len(ident.late_links)
    wait_until(lambda: _landed(database_url) >= expected, 60, "late links landed")
    assert _landed(database_url) == expected

    # project B got no late links: its persons are its own links only, whatever A's ids are
    for tenant, every in ((a, ident.rows + ident.late_links), (b, twin.rows)):
        groups: dict = {}
        for (_p, did), rep in people_of(every).items():
            groups.setdefault(rep, set()).add(did)
        want = {did: min(groups[rep]) for (_p, did), rep in people_of(every).items()}
        assert identity.persons(db, tenant["project_id"]) == want
        assert set(identity.inconsistencies(db, tenant["project_id"]).values()) == {0}
        pairs = {tuple(sorted((x, y))) for _p, x, y in link_pairs(every)}
        got = db.execute(
            "SELECT count(*) FROM identity_links WHERE project_id = %s", (tenant["project_id"],)
        ).fetchone()[0]
        assert got == len(pairs)
        start, last = (END - timedelta(days=DAYS - 1)).date(), END.date() - timedelta(days=1)
        truth_rows = as_people(rows_of(every), links_from=every)
        for window in (1, 7):
            scope = Scope(tenant["project_id"], start, last, "UTC")
            assert series.active_users(db, scope, window, unique_by="person") == active_people(
                truth_rows, tenant["project_id"], "UTC", start, last, window
            )
