"""Aggregates built by the real Dagster asset equal the generator's ground truth in several time zones."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import orjson
import psycopg
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from orchestration.assets.aggregates import aggregates
from orchestration.resources import SettingsResource, WarehouseResource
from tests.utils.events import ZoneTruth, land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse.aggregates import rebuild_day
from warehouse.reads import series
from warehouse.reads.exact import Scope

END = datetime(2026, 11, 10, tzinfo=UTC)  # 40 days back covers Lord Howe's (Oct 4) and New York's (Nov 1) DST
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Lord_Howe"]


def materialize_range(database_url: str, first: date, last: date) -> dg.ExecuteInProcessResult:
    """One run over a partition range, as a single-run backfill does."""
    return dg.materialize(
        [aggregates],
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
    )


@pytest.fixture
def landed(db):
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=11, end=END, days=40, total_events=30_000, late_ratio=0.05, duplicate_ratio=0.01,
        tenants=[TenantSpec("hot", 0.8, 400), TenantSpec("quiet", 0.2, 60)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    assert land_rows(db, rows) == len(rows)
    days = sorted({r[1].date() for r in rows})
    return rows, projects, days


def test_aggregates_equal_ground_truth_in_every_zone(db, database_url, landed):
    rows, projects, days = landed
    result = materialize_range(database_url, days[0], days[-1])
    assert result.success
    mats = result.asset_materializations_for_node("aggregates")
    assert {m.asset_key.to_user_string() for m in mats} == {
        "event_rollups",
        "user_activity",
        "daily_aggregates",
    }
    for tz in ZONES:
        truth = ZoneTruth(rows, tz)
        for _org, project_id in projects.values():
            local_days = sorted(d for (p, d) in truth.daily if p == project_id)
            first, last = local_days[0], local_days[-1]
            scope = Scope(project_id, first, last, tz)
            daily = series.event_counts(db, scope, "day")
            assert {p.local_start.date(): p.value for p in daily if p.value} == {
                d: n for (p, d), n in truth.daily.items() if p == project_id
            }, tz
            hourly = series.event_counts(db, scope, "hour")
            assert {(p.local_start, p.utc_offset): p.value for p in hourly if p.value} == {
                (h, off): n for (p, h, off), n in truth.hourly.items() if p == project_id
            }, tz
            for window in (1, 7, 30):
                got = dict(series.active_users(db, scope, window))
                want = {d: truth.active(project_id, d, window) for d in got}
                assert got == want, (tz, window)


def test_dst_days_have_23_and_25_hours(db, database_url, landed):
    _rows, projects, days = landed
    assert materialize_range(database_url, days[0], days[-1]).success
    _org, project_id = projects["hot"]
    hourly = series.event_counts(
        db, Scope(project_id, date(2026, 11, 1), date(2026, 11, 1), "America/New_York"), "hour"
    )
    assert len(hourly) == 25  # dense: every hour of the fall-back day, the repeated one twice
    spring = Scope(project_id, date(2026, 3, 8), date(2026, 3, 8), "America/New_York")
    assert len(series.event_counts(db, spring, "hour")) == 23
    one_am = [p for p in hourly if p.local_start.hour == 1]
    assert sorted(p.utc_offset for p in one_am) == [timedelta(hours=-5), timedelta(hours=-4)]
    lord_howe = series.event_counts(
        db, Scope(project_id, date(2026, 10, 4), date(2026, 10, 4), "Australia/Lord_Howe"), "hour"
    )
    assert all(p.local_start.hour != 2 or p.local_start.minute == 0 for p in lord_howe)
    assert {p.utc_offset for p in lord_howe} == {timedelta(hours=10, minutes=30), timedelta(hours=11)}


def test_rebuilding_a_day_is_idempotent(db, database_url, landed):
    _rows, _projects, days = landed
    day = days[len(days) // 2]
    assert materialize_range(database_url, day, day).success
    snapshot = _day_rows(db, day)
    for _ in range(2):
        assert materialize_range(database_url, day, day).success
        assert _day_rows(db, day) == snapshot
    assert snapshot[0] and snapshot[1] and snapshot[2]


def test_a_rebuild_killed_midway_leaves_the_previous_version(db, database_url, landed):
    _rows, projects, days = landed
    day = days[len(days) // 2]
    rebuild_day(db, day)
    before = _day_rows(db, day)
    # Make the day big enough that its rebuild takes a while, then kill the rebuilding backend.
    _org, project_id = projects["hot"]
    db.execute(
        """
        INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at)
        SELECT %s, %s::timestamptz + (g %% 86400) * interval '1 second', gen_random_uuid(), %s, 'bulk', 'u' || g, now()
        FROM generate_series(1, 400000) g
        """,
        (project_id, datetime.combine(day, datetime.min.time(), UTC), _org),
    )
    killer = psycopg.connect(database_url, autocommit=True)
    victim = psycopg.connect(database_url, autocommit=True)
    pid = victim.info.backend_pid
    errors: list[BaseException] = []

    def run() -> None:
        try:
            rebuild_day(victim, day)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(0.3)
    killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    t.join()
    killer.close()
    assert errors, "the rebuild finished before it could be killed: the test proves nothing"
    assert _day_rows(db, day) == before


def test_a_day_without_data_materializes_empty(db, database_url):
    result = materialize_range(database_url, date(2026, 1, 5), date(2026, 1, 5))
    assert result.success
    assert _day_rows(db, date(2026, 1, 5)) == ([], [], [])


def _day_rows(conn: psycopg.Connection, day: date) -> tuple[list, list, list]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    end = start + timedelta(days=1)
    return (
        conn.execute(
            "SELECT * FROM event_rollups WHERE bucket >= %s AND bucket < %s ORDER BY 1, 2, 3", (start, end)
        ).fetchall(),
        conn.execute("SELECT * FROM user_activity WHERE day = %s ORDER BY 1, 2, 3", (day,)).fetchall(),
        conn.execute(
            "SELECT org_id, project_id, metric, date, dimensions::text, value, events, sum FROM daily_aggregates "
            "WHERE date = %s ORDER BY 2, 3, 5",
            (day,),
        ).fetchall(),
    )


def test_retention_detaches_old_raw_and_rebuilding_such_a_day_keeps_its_aggregates(db, database_url, landed):
    from tests.utils.partitions import detach_partitions_before, detached_partitions

    _rows, _projects, days = landed
    old = days[0]
    rebuild_day(db, old)
    before = _day_rows(db, old)
    assert before[2]
    detached = detach_partitions_before(db, old + timedelta(days=1))
    assert f"events_p{old:%Y%m%d}" in detached
    assert f"events_p{old:%Y%m%d}" in detached_partitions(db)
    assert (
        db.execute(
            "SELECT count(*) FROM events WHERE event_time < %s",
            (datetime.combine(old + timedelta(days=1), datetime.min.time(), UTC),),
        ).fetchone()[0]
        == 0
    )
    build = rebuild_day(db, old)
    assert build.skipped
    assert _day_rows(db, old) == before
    for name in detached:  # detached tables outlive TRUNCATE: drop them so later tests get fresh partitions
        db.execute(f'DROP TABLE "{name}"')


CUSTOM = {
    # name: (event filter, property filter, aggregation, property, dimensions)
    "purchases_by_plan": ("purchase", {}, "count", None, ["plan"]),
    "buyers": ("purchase", {}, "unique_users", None, []),
    "revenue_by_country": ("purchase", {}, "sum", "amount", ["country"]),
    "avg_basket": ("purchase", {}, "avg", "amount", []),
    "pro_page_views": ("page_view", {"plan": "pro"}, "count", None, []),
}


def _custom_truth(rows: list[tuple], project_id, definition) -> dict[tuple[date, str], float]:
    """The custom metric computed in Python from the landed rows."""
    event, filters, aggregation, prop, dims = definition
    groups: dict[tuple[date, str], list] = {}
    for r_project, ts, _eid, _org, name, distinct_id, _recv, props_text in rows:
        props = orjson.loads(props_text)
        if r_project != project_id or name != event or any(props.get(k) != v for k, v in filters.items()):
            continue
        number = props.get(prop) if prop else None
        if prop and (isinstance(number, bool) or not isinstance(number, int | float)):
            continue
        key = (ts.date(), orjson.dumps({k: props[k] for k in sorted(dims) if k in props}).decode())
        groups.setdefault(key, []).append(number if prop else distinct_id)
    if aggregation == "count":
        return {k: len(v) for k, v in groups.items()}
    if aggregation == "unique_users":
        return {k: len(set(v)) for k, v in groups.items()}
    if aggregation == "sum":
        return {k: sum(v) for k, v in groups.items()}
    return {k: sum(v) / len(v) for k, v in groups.items()}


def test_custom_metrics_match_raw_events_and_odd_properties_do_not_break_a_run(db, database_url, landed):
    rows, projects, days = landed
    org_id, project_id = projects["hot"]
    odd = (project_id, datetime.combine(days[3], datetime.min.time(), UTC) + timedelta(hours=1), uuid.uuid4(),
           org_id, "purchase", "odd-user", datetime.now(UTC),
           '{"amount": "not a number", "plan": {"nested": [1, 2]}, "country": "\u00e9\u00e9", "x": null}')  # fmt: skip
    land_rows(db, [odd])
    rows = [*rows, odd]
    ids = {}
    for name, (event, filters, aggregation, prop, dims) in CUSTOM.items():
        ids[name] = db.execute(
            "INSERT INTO metric_definitions (org_id, project_id, name, event_name, filters, aggregation, property, "
            "dimensions) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (org_id, project_id, name, event, orjson.dumps(filters).decode(), aggregation, prop, dims),
        ).fetchone()[0]
    assert materialize_range(database_url, days[0], days[-1]).success
    for name, definition in CUSTOM.items():
        got = {
            (d, orjson.dumps(dims, option=orjson.OPT_SORT_KEYS).decode()): v
            for d, dims, v in db.execute(
                "SELECT date, dimensions, value FROM daily_aggregates WHERE metric = %s",
                (f"custom:{ids[name]}",),
            ).fetchall()
        }
        want = _custom_truth(rows, project_id, definition)
        assert want, f"{name}: the generator produced no matching events; the test would prove nothing"
        assert got.keys() == want.keys(), name
        for key, value in want.items():
            assert got[key] == pytest.approx(value), (name, key)


def test_a_misconfigured_database_fails_the_run_once_with_a_clear_error():
    result = dg.materialize(
        [aggregates],
        resources={
            "warehouse": WarehouseResource(database_url="postgresql://nobody@127.0.0.1:1/nowhere"),
            "pulseops": SettingsResource(),
        },
        instance=dg.DagsterInstance.ephemeral(),
        partition_key="2026-01-05",
        raise_on_error=False,
    )
    assert not result.success
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert len(failures) == 1
    message = str(failures[0].event_specific_data.error)
    assert "Cannot connect to the warehouse database" in message


def test_a_range_run_rebuilds_days_on_two_connections_and_a_failed_day_fails_it(
    db, database_url, landed, monkeypatch
):
    """Range runs rebuild REBUILD_CONNECTIONS days at once (orchestration/assets/aggregates.py), each day still
    in its own transaction; a day that fails fails the run, and the days done stay committed."""
    import orchestration.assets.aggregates as asset_module

    _rows, _projects, days = landed
    first, last = days[1], days[8]
    backends, lock = set(), threading.Lock()
    real = asset_module.rebuild_day

    def spy(conn, day, run_id=None):
        with lock:
            backends.add(conn.info.backend_pid)
        if day == days[5]:
            raise RuntimeError("boom")
        return real(conn, day, run_id=run_id)

    monkeypatch.setattr(asset_module, "rebuild_day", spy)
    db.execute("DELETE FROM aggregate_builds")
    result = dg.materialize(
        [aggregates],
        resources={"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()},
        instance=dg.DagsterInstance.ephemeral(),
        tags={
            "dagster/asset_partition_range_start": str(first),
            "dagster/asset_partition_range_end": str(last),
        },
        raise_on_error=False,
    )
    assert not result.success
    assert len(backends) == asset_module.REBUILD_CONNECTIONS == 2
    built = {r[0] for r in db.execute("SELECT DISTINCT day FROM aggregate_builds").fetchall()}
    assert days[5] not in built and built <= set(days[1:9]) and built

    monkeypatch.setattr(asset_module, "rebuild_day", real)
    assert materialize_range(database_url, first, last).success
    built = {r[0] for r in db.execute("SELECT DISTINCT day FROM aggregate_builds").fetchall()}
    assert built == set(days[1:9])
