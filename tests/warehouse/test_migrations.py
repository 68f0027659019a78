"""Alembic migrations on brand-new databases: up, down to base (leaving nothing of ours), and up again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date

import psycopg
import pytest
from alembic.script import ScriptDirectory

from tests.fixtures.postgres import SERVER_URL, create_database, drop_database
from warehouse.db import with_database
from warehouse.migrate import alembic_config, downgrade, upgrade

TABLES = {
    "orgs",
    "projects",
    "api_keys",
    "events",
    "event_ids",
    "landed_days",
    "aggregate_builds",
    "dead_letters",
    "event_rollups",
    "user_activity",
    "metric_definitions",
    "daily_aggregates",
}
ALEMBIC = {"alembic_version", "alembic_version_pkc"}
HEAD = ScriptDirectory.from_config(alembic_config("postgresql://unused/db")).get_current_head()


@pytest.fixture
def empty_url() -> Iterator[str]:
    url = create_database("pulseops_migrate")
    yield url
    drop_database(url)


def our_objects(url: str) -> dict[str, set[str]]:
    """Relations (tables, views, indexes, sequences), functions and types in `public`, alembic's excluded."""
    with psycopg.connect(url) as conn:
        relations = {
            name
            for (name,) in conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'public'"
            )
        }
        functions = {
            name
            for (name,) in conn.execute(
                "SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                "WHERE n.nspname = 'public'"
            )
        }
        types = {
            name
            for (name,) in conn.execute(
                "SELECT t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace "
                "WHERE n.nspname = 'public'"
            )
        }
    return {
        "relations": relations - ALEMBIC,
        "functions": functions,
        "types": types - {"alembic_version", "_alembic_version"},
    }


def relkinds(url: str) -> dict[str, str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v')"
        ).fetchall()
    return dict(rows)


def head(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [v for (v,) in conn.execute("SELECT version_num FROM alembic_version")]


def use_schema(url: str) -> None:
    """Put data and partitions in, so the downgrade has to remove more than empty tables."""
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT ensure_events_partition(%s)", (date(2026, 11, 24),)).fetchone()[0]
        assert conn.execute("SELECT ensure_events_partition(%s)", (date(2026, 11, 25),)).fetchone()[0]
        org = conn.execute("INSERT INTO orgs (slug, name) VALUES ('acme', 'Acme') RETURNING id").fetchone()[0]
        conn.execute(
            "INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at) "
            "VALUES (%s, '2026-11-25T10:00:00Z', %s, %s, 'e', 'u', now())",
            (uuid.uuid4(), uuid.uuid4(), org),
        )
        conn.execute(
            "INSERT INTO dead_letters (reason, payload, payload_sha256, source_topic, source_partition, "
            "source_offset) VALUES ('invalid_json', 'x', 'h', 't', 0, 1)"
        )


def test_upgrade_creates_the_schema_on_an_empty_database(empty_url: str) -> None:
    assert our_objects(empty_url) == {"relations": set(), "functions": set(), "types": set()}
    upgrade(empty_url)
    kinds = relkinds(empty_url)
    assert set(kinds) >= TABLES
    assert kinds["events"] == "p"  # partitioned
    assert kinds["late_days"] == "v"
    assert "ensure_events_partition" in our_objects(empty_url)["functions"]
    assert head(empty_url) == [HEAD]
    upgrade(empty_url)  # again: nothing to do
    assert head(empty_url) == [HEAD]


def test_downgrade_to_base_removes_everything_and_upgrade_works_again(empty_url: str) -> None:
    upgrade(empty_url)
    use_schema(empty_url)
    downgrade(empty_url, "base")
    assert our_objects(empty_url) == {"relations": set(), "functions": set(), "types": set()}
    assert head(empty_url) == []

    upgrade(empty_url)
    assert set(relkinds(empty_url)) >= TABLES
    with psycopg.connect(empty_url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        assert conn.execute("SELECT ensure_events_partition(%s)", (date(2026, 11, 25),)).fetchone()[0] is True
        assert (
            conn.execute("SELECT ensure_events_partition(%s)", (date(2026, 11, 25),)).fetchone()[0] is False
        )
        parts = conn.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = 'events'::regclass"
        ).fetchall()
    assert parts == [("events_p20261125",)]
    assert head(empty_url) == [HEAD]


def test_upgrade_creates_a_missing_database() -> None:
    url = with_database(SERVER_URL, f"pulseops_migrate_new_{uuid.uuid4().hex[:10]}")
    try:
        upgrade(url)
        assert set(relkinds(url)) >= TABLES
        assert head(url) == [HEAD]
    finally:
        drop_database(url)
