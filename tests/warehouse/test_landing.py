"""land_batch against the real warehouse: exactly-once per (project, event_id), partitions on demand,
landed-day versions and late days, dead letters."""

from __future__ import annotations

import json
import random
import threading
import time as clock
import uuid
from datetime import UTC, date, datetime, time, timedelta

import psycopg
import pytest

from warehouse import landing
from warehouse.landing import DeadLetter, LandingRow, PartitionCache, land_batch
from warehouse.partitions import partition_name

ORG = uuid.UUID("00000000-0000-4000-8000-00000000000a")
TODAY = datetime.now(UTC).date()


def at(day: date, hour: int = 12, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=UTC)


def row(
    project: uuid.UUID,
    when: datetime,
    event_id: uuid.UUID | None = None,
    name: str = "page_view",
    props: dict | None = None,
) -> LandingRow:
    return (
        project,
        when,
        event_id or uuid.uuid4(),
        ORG,
        name,
        "user-1",
        datetime.now(UTC),
        json.dumps(props or {"path": "/"}),
    )


def count(conn: psycopg.Connection, sql: str, *params) -> int:
    return conn.execute(sql, params).fetchone()[0]


def landed_day(conn: psycopg.Connection, project: uuid.UUID, day: date) -> tuple[int, int] | None:
    """(version, events) of a landed day, or None."""
    return conn.execute(
        "SELECT version, events FROM landed_days WHERE project_id = %s AND day = %s", (project, day)
    ).fetchone()


def partitions(conn: psycopg.Connection) -> set[str]:
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent = 'events'::regclass"
    ).fetchall()
    return {name for (name,) in rows}


@pytest.fixture
def project() -> uuid.UUID:
    return uuid.uuid4()


def test_redelivered_batch_lands_once(db: psycopg.Connection, project: uuid.UUID) -> None:
    rows = [row(project, at(TODAY, 10, i)) for i in range(5)]
    first = land_batch(db, rows)
    assert (first.received, first.landed, first.duplicates) == (5, 5, 0)
    assert first.days == {(project, TODAY): 5}
    again = land_batch(db, rows)
    assert (again.received, again.landed, again.duplicates) == (5, 0, 5)
    assert again.days == {}
    assert count(db, "SELECT count(*) FROM events WHERE project_id = %s", project) == 5
    assert count(db, "SELECT count(*) FROM event_ids WHERE project_id = %s", project) == 5
    stored = db.execute("SELECT event_id, event_name, distinct_id, org_id FROM events ORDER BY event_time")
    assert stored.fetchall() == [(r[2], "page_view", "user-1", ORG) for r in rows]


def test_properties_land_as_a_json_object(db: psycopg.Connection, project: uuid.UUID) -> None:
    land_batch(db, [row(project, at(TODAY), props={"path": "/a", "n": 1, "tags": ["x"]})])
    kind, props = db.execute("SELECT jsonb_typeof(properties), properties FROM events").fetchone()
    assert (kind, props) == ("object", {"path": "/a", "n": 1, "tags": ["x"]})
    assert db.execute("SELECT count(*) FROM events WHERE properties->>'path' = '/a'").fetchone()[0] == 1


def test_same_event_id_with_another_time_lands_once(db: psycopg.Connection, project: uuid.UUID) -> None:
    event_id = uuid.uuid4()
    land_batch(db, [row(project, at(TODAY, 10), event_id)])
    later = land_batch(db, [row(project, at(TODAY, 10, 1), event_id)])  # retried with a new skew correction
    assert later.landed == 0
    other_day = land_batch(db, [row(project, at(TODAY - timedelta(days=1), 23, 59), event_id)])
    assert other_day.landed == 0
    times = db.execute("SELECT event_time FROM events WHERE event_id = %s", (event_id,)).fetchall()
    assert times == [(at(TODAY, 10),)]
    assert landed_day(db, project, TODAY - timedelta(days=1)) is None


def test_same_event_id_in_two_projects_lands_twice(db: psycopg.Connection, project: uuid.UUID) -> None:
    other = uuid.uuid4()
    event_id = uuid.uuid4()
    result = land_batch(db, [row(project, at(TODAY), event_id), row(other, at(TODAY), event_id)])
    assert result.landed == 2
    assert result.days == {(project, TODAY): 1, (other, TODAY): 1}
    projects = db.execute("SELECT project_id FROM events WHERE event_id = %s", (event_id,)).fetchall()
    assert {p for (p,) in projects} == {project, other}


@pytest.mark.parametrize("offset_days", [-60, 1], ids=["60-days-ago", "tomorrow"])
def test_partition_is_created_on_demand(db: psycopg.Connection, project: uuid.UUID, offset_days: int) -> None:
    day = TODAY + timedelta(days=offset_days)
    name = partition_name(day)
    db.execute(f'DROP TABLE IF EXISTS "{name}"')  # the session database may have it from another test
    assert name not in partitions(db)
    result = land_batch(db, [row(project, at(day, 0, 0)), row(project, at(day, 23, 59))])
    assert result.landed == 2
    assert name in partitions(db)
    assert count(db, f'SELECT count(*) FROM "{name}"') == 2
    # A warm cache that does not know the day yet creates it too.
    next_day = day + timedelta(days=1)
    db.execute(f'DROP TABLE IF EXISTS "{partition_name(next_day)}"')
    cache = PartitionCache()
    land_batch(db, [row(project, at(day, 1))], partitions=cache)
    land_batch(db, [row(project, at(next_day, 1))], partitions=cache)
    assert partition_name(next_day) in partitions(db)


def test_landed_day_version_increments_per_landing_transaction(
    db: psycopg.Connection, project: uuid.UUID
) -> None:
    yesterday = TODAY - timedelta(days=1)
    land_batch(db, [row(project, at(TODAY, 9, i)) for i in range(3)] + [row(project, at(yesterday))])
    assert landed_day(db, project, TODAY) == (1, 3)
    assert landed_day(db, project, yesterday) == (1, 1)
    redelivered = [row(project, at(TODAY, 11, i)) for i in range(2)]
    land_batch(db, redelivered)
    assert landed_day(db, project, TODAY) == (2, 5)
    assert landed_day(db, project, yesterday) == (1, 1)  # untouched days keep their version
    land_batch(db, redelivered)  # only duplicates: nothing new landed, no new version
    assert landed_day(db, project, TODAY) == (2, 5)
    assert count(db, "SELECT count(*) FROM events WHERE project_id = %s", project) == 6


def test_data_landed_after_a_build_makes_the_day_late(db: psycopg.Connection, project: uuid.UUID) -> None:
    built_day, unbuilt_day = TODAY - timedelta(days=2), TODAY - timedelta(days=3)
    land_batch(db, [row(project, at(built_day)), row(project, at(unbuilt_day))])
    version = landed_day(db, project, built_day)[0]
    db.execute(
        "INSERT INTO aggregate_builds (project_id, day, built_version, run_id) VALUES (%s, %s, %s, 'r1')",
        (project, built_day, version),
    )
    assert db.execute("SELECT * FROM late_days").fetchall() == []

    land_batch(db, [row(project, at(unbuilt_day, 13))])  # a day never built is not "late"
    assert db.execute("SELECT * FROM late_days").fetchall() == []

    land_batch(db, [row(project, at(built_day, 13))])
    late = db.execute("SELECT project_id, day, version, built_version FROM late_days").fetchall()
    assert late == [(project, built_day, version + 1, version)]

    db.execute(
        "UPDATE aggregate_builds SET built_version = %s WHERE project_id = %s AND day = %s",
        (version + 1, project, built_day),
    )
    assert db.execute("SELECT * FROM late_days").fetchall() == []


def test_dead_letters_are_stored_once_when_relanded(db: psycopg.Connection, project: uuid.UUID) -> None:
    dead = [
        DeadLetter("invalid_json", "JSON is malformed", b"{nope", "events-raw", 0, 41),
        DeadLetter("nul_character", "NUL", b'{"event":"a\\u0000"}', "events-raw", 1, 7, ORG, project),
    ]
    rows = [row(project, at(TODAY))]
    for _ in range(2):
        result = land_batch(db, rows, dead)
        assert result.dead_letters == 2
    assert count(db, "SELECT count(*) FROM dead_letters") == 2
    assert count(db, "SELECT count(*) FROM events") == 1
    stored = db.execute(
        "SELECT reason, payload, source_partition, source_offset, project_id FROM dead_letters ORDER BY id"
    ).fetchall()
    assert stored == [
        ("invalid_json", b"{nope", 0, 41, None),
        ("nul_character", b'{"event":"a\\u0000"}', 1, 7, project),
    ]
    # The same offset with other bytes (a reset broker reusing offsets) is another dead letter.
    land_batch(db, [], [DeadLetter("invalid_json", "", b"{other", "events-raw", 0, 41)])
    assert count(db, "SELECT count(*) FROM dead_letters") == 3


def test_non_autocommit_connection_is_refused(
    db: psycopg.Connection, database_url: str, project: uuid.UUID
) -> None:
    with psycopg.connect(database_url) as conn:
        assert not conn.autocommit
        with pytest.raises(ValueError, match="autocommit"):
            land_batch(conn, [row(project, at(TODAY))])
    assert count(db, "SELECT count(*) FROM events") == 0


def test_batch_partly_landed_lands_only_the_rest(db: psycopg.Connection, project: uuid.UUID) -> None:
    """The ledger COPY fails on the first known key; the claim then lands exactly the unknown ones."""
    old = [row(project, at(TODAY, 8, i)) for i in range(3)]
    land_batch(db, old)
    new = [row(project, at(TODAY, 9, i)) for i in range(4)] + [row(project, at(TODAY - timedelta(days=1)))]
    result = land_batch(db, [*new[:2], old[1], *new[2:], old[0]])
    assert (result.received, result.landed, result.duplicates) == (7, 5, 2)
    assert result.days == {(project, TODAY): 4, (project, TODAY - timedelta(days=1)): 1}
    assert landed_day(db, project, TODAY) == (2, 7)
    assert landed_day(db, project, TODAY - timedelta(days=1)) == (1, 1)
    stored = db.execute("SELECT event_id FROM events WHERE project_id = %s", (project,)).fetchall()
    assert sorted(e for (e,) in stored) == sorted(r[2] for r in old + new)


def test_two_landers_racing_on_the_same_event_ids_land_each_once(
    db: psycopg.Connection, database_url: str, project: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lander A has claimed its keys but not committed when lander B copies an overlapping batch: B waits on
    the ledger's primary key, sees the conflict once A commits, and lands only the events A did not."""
    shared = [row(project, at(TODAY, 10, i)) for i in range(50)]
    a_rows = shared + [row(project, at(TODAY, 11, i)) for i in range(10)]
    b_rows = [row(project, at(TODAY, 12, i)) for i in range(7)] + shared[::-1]
    claimed, release = threading.Event(), threading.Event()
    real_claim = landing._claim

    def claim(cur, rows):  # A pauses inside its transaction, its keys claimed and uncommitted
        out = real_claim(cur, rows)
        if threading.current_thread().name == "A":
            claimed.set()
            assert release.wait(10)
        return out

    monkeypatch.setattr(landing, "_claim", claim)
    results: dict[str, landing.LandResult] = {}

    def land(name: str, rows: list[LandingRow]) -> None:
        with psycopg.connect(database_url, autocommit=True) as conn:
            results[name] = land_batch(conn, rows)

    a = threading.Thread(target=land, args=("A", a_rows), name="A")
    a.start()
    assert claimed.wait(10)
    b = threading.Thread(target=land, args=("B", b_rows), name="B")
    b.start()
    clock.sleep(0.5)
    assert b.is_alive()  # blocked on A's uncommitted keys
    release.set()
    a.join(10)
    b.join(10)
    assert (results["A"].landed, results["B"].landed, results["B"].duplicates) == (60, 7, 50)
    assert count(db, "SELECT count(*) FROM events WHERE project_id = %s", project) == 67
    assert count(db, "SELECT count(DISTINCT event_id) FROM events WHERE project_id = %s", project) == 67
    assert count(db, "SELECT count(*) FROM event_ids WHERE project_id = %s", project) == 67
    assert landed_day(db, project, TODAY) == (2, 67)


def test_landers_racing_in_threads_land_each_event_once(
    db: psycopg.Connection, database_url: str, project: uuid.UUID
) -> None:
    """Four landers, overlapping batches in different orders, no coordination but the ledger."""
    pool = [row(project, at(TODAY - timedelta(days=i % 2), 10, i % 60)) for i in range(400)]
    rnd = random.Random(7)  # noqa: S311 - a reproducible shuffle, not a secret
    batches = [rnd.sample(pool, 150) for _ in range(12)]
    errors: list[BaseException] = []

    def land(mine: list[list[LandingRow]]) -> None:
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for rows in mine:
                    land_batch(conn, rows)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(batches[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    expected = {r[2] for rows in batches for r in rows}
    stored = db.execute("SELECT event_id FROM events WHERE project_id = %s", (project,)).fetchall()
    assert len(stored) == len(expected) and {e for (e,) in stored} == expected
    assert count(db, "SELECT sum(events) FROM landed_days WHERE project_id = %s", project) == len(expected)


@pytest.mark.parametrize("step", ["events", "landed_days"])
def test_a_failure_between_statements_rolls_back_everything(
    db: psycopg.Connection, project: uuid.UUID, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    """The ledger claim is committed only with its events and its landed_days bump, or not at all."""
    rows = [row(project, at(TODAY, 10, i)) for i in range(5)]
    if step == "events":  # not JSON: the events COPY fails after the ledger COPY succeeded
        bad = [*rows[:4], (*rows[4][:7], "{not json")]
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            land_batch(db, bad)
    else:
        monkeypatch.setattr(landing, "_BUMP_DAYS", landing._BUMP_DAYS.replace("landed_days", "no_such_table"))
        with pytest.raises(psycopg.errors.UndefinedTable):
            land_batch(db, rows)
    for table in ("event_ids", "events", "landed_days"):
        assert count(db, f"SELECT count(*) FROM {table}") == 0, table
    monkeypatch.undo()
    assert land_batch(db, rows).landed == 5
    assert landed_day(db, project, TODAY) == (1, 5)
