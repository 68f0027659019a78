"""Migration 0010: the (project_id, event_name, event_time, event_id) index reaches every events partition
(those created before the migration and those created after it) and serves a newest-first page of one name."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest

from tests.fixtures.postgres import create_database, drop_database
from warehouse.migrate import downgrade, upgrade

OLD_DAY, NEW_DAY = date(2026, 11, 24), date(2026, 11, 25)


@pytest.fixture
def url() -> Iterator[str]:
    url = create_database("pulseops_nameidx")
    yield url
    drop_database(url)


def name_indexes(conn: psycopg.Connection) -> dict[str, str]:
    """Partition -> definition of its index attached to events_name_time_idx."""
    rows = conn.execute(
        "SELECT t.relname, pg_get_indexdef(i.inhrelid) FROM pg_inherits i "
        "JOIN pg_index x ON x.indexrelid = i.inhrelid JOIN pg_class t ON t.oid = x.indrelid "
        "WHERE i.inhparent = 'events_name_time_idx'::regclass"
    ).fetchall()
    return dict(rows)


def test_existing_and_new_partitions_get_the_index(url: str) -> None:
    upgrade(url, "0009")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT ensure_events_partition(%s)", (OLD_DAY,))
        conn.execute(
            "INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at) "
            "VALUES (%s, '2026-11-24T10:00:00Z', %s, %s, 'e', 'u', now())",
            (uuid.uuid4(), uuid.uuid4(), uuid.uuid4()),
        )
    upgrade(url)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT ensure_events_partition(%s)", (NEW_DAY,)).fetchone()[0] is True
        found = name_indexes(conn)
    assert set(found) == {"events_p20261124", "events_p20261125"}
    for definition in found.values():
        assert "(project_id, event_name, event_time, event_id)" in definition
    downgrade(url, "0009")
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT to_regclass('events_name_time_idx')").fetchone()[0] is None


def test_a_page_of_a_rare_name_reads_the_name_index(url: str) -> None:
    """20,000 events of another name and 20 of one: the newest 10 of that name come from the name index,
    not from the primary key read newest-first past every other name."""
    upgrade(url)
    project = uuid.uuid4()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("SELECT ensure_events_partition(%s)", (NEW_DAY,))
        conn.execute(
            "INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at) "
            "SELECT %s, '2026-11-25T00:00:00Z'::timestamptz + g * interval '1 second', gen_random_uuid(), %s, "
            "CASE WHEN g %% 1000 = 0 THEN 'rare' ELSE 'page_view' END, 'u', now() "
            "FROM generate_series(1, 20000) g",
            (project, uuid.uuid4()),
        )
        conn.execute("ANALYZE events")
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT event_id FROM events WHERE project_id = %s AND event_name = ANY(%s) "
                "ORDER BY event_time DESC, event_id DESC LIMIT 10",
                (project, ["rare"]),
            )
        )
    assert "project_id_event_name_event_time_event_id_idx" in plan, plan
