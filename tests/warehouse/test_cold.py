"""Cold tier against real PostgreSQL, Parquet files and DuckDB: export, parity, retention, tenant-scoped reads."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import psycopg
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from warehouse import cold
from warehouse.aggregates import rebuild_day
from warehouse.partitions import existing_partition_days

END = datetime(2026, 6, 8, tzinfo=UTC)


@pytest.fixture
def cold_settings(tmp_path: Path) -> ColdSettings:
    return ColdSettings(url=str(tmp_path / "cold"))


@pytest.fixture
def landed(db):
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    config = GeneratorConfig(
        seed=5, end=END, days=4, total_events=6_000, late_ratio=0.02, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 0.7, 300), TenantSpec("quiet", 0.3, 50)],
    )  # fmt: skip
    rows = landing_rows(generate(config), projects, received_at=END)
    assert land_rows(db, rows) == len(rows)
    days = sorted({r[1].date() for r in rows})
    for day in days:
        rebuild_day(db, day)
    yield rows, projects, days
    # tables of days retention dropped are gone; recreate nothing, but leave no detached leftovers behind
    for day in days:
        name = f"events_p{day:%Y%m%d}"
        if db.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()[0] and day not in (
            existing_partition_days(db)
        ):
            db.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(name)))


def _retention(db, cutoff: date, settings, days: list[date]) -> cold.Retention:
    """Retention, reported for this test's days only (earlier tests leave empty partitions of their days)."""
    r = cold.drop_exported_partitions_before(db, cutoff, settings)
    return cold.Retention(
        [d for d in r.dropped if d in days], {d: why for d, why in r.kept.items() if d in days}
    )


def _counts(rows, day):
    out: dict[uuid.UUID, int] = {}
    for r in rows:
        if r[1].date() == day:
            out[r[0]] = out.get(r[0], 0) + 1
    return out


def test_export_writes_one_zstd_file_per_project_and_day_and_verifies(
    db, database_url, landed, cold_settings
):
    rows, _projects, days = landed
    day = days[1]
    files = cold.export_day(db, database_url, day, cold_settings)
    events = {f.project_id: f for f in files if f.dataset == cold.EVENTS}
    assert {p: f.rows for p, f in events.items()} == _counts(rows, day)
    assert {f.dataset for f in files} == set(cold.DATASETS)
    for f in files:
        path = Path(cold_settings.url) / f.path
        assert path.stat().st_size == f.bytes
        meta = duckdb.sql(f"SELECT DISTINCT compression FROM parquet_metadata('{path}')").fetchall()
        assert meta == [("ZSTD",)]
    parity = cold.verify_day(db, day, cold_settings)
    assert parity.ok, [r.as_dict() for r in parity.results]
    assert {r.status for r in parity.results} == {"verified"}
    assert len(parity.results) == len(files)
    statuses = db.execute("SELECT DISTINCT status FROM cold_exports WHERE day = %s", (day,)).fetchall()
    assert statuses == [("verified",)]


def test_export_is_idempotent(db, database_url, landed, cold_settings):
    _rows, _projects, days = landed
    day = days[2]
    cold.export_day(db, database_url, day, cold_settings)
    first = db.execute(
        "SELECT dataset, project_id, rows, checksum, path FROM cold_exports ORDER BY 1, 2"
    ).fetchall()
    files = sorted(
        p.relative_to(cold_settings.url) for p in Path(cold_settings.url).rglob("*") if p.is_file()
    )
    cold.export_day(db, database_url, day, cold_settings)
    again = db.execute(
        "SELECT dataset, project_id, rows, checksum, path FROM cold_exports ORDER BY 1, 2"
    ).fetchall()
    assert again == first
    assert (
        sorted(p.relative_to(cold_settings.url) for p in Path(cold_settings.url).rglob("*") if p.is_file())
        == files
    )
    assert cold.verify_day(db, day, cold_settings).ok


def test_postgres_and_duckdb_checksums_agree_and_see_a_changed_value(db, database_url, landed, cold_settings):
    _rows, projects, days = landed
    day = days[1]
    _org, project_id = projects["hot"]
    cold.export_day(db, database_url, day, cold_settings, datasets=[cold.EVENTS])
    store = cold.ColdStore.from_settings(cold_settings)
    pg = cold.postgres_checksum(db, cold.EVENTS, day, project_id)
    assert pg == cold.parquet_checksum(store, cold.EVENTS, [cold.relative_path(cold.EVENTS, day, project_id)])
    # one property of one event changed in PostgreSQL: same count, another checksum
    db.execute(
        "UPDATE events SET properties = properties || '{\"x\": 1}' WHERE ctid = "
        "(SELECT ctid FROM events WHERE project_id = %s AND event_time >= %s LIMIT 1)",
        (project_id, datetime.combine(day, datetime.min.time(), UTC)),
    )
    changed = cold.postgres_checksum(db, cold.EVENTS, day, project_id)
    assert changed[0] == pg[0] and changed[1] != pg[1]


def test_retention_refuses_days_not_exported_failed_or_stale_and_drops_verified_ones(
    db, database_url, landed, cold_settings
):
    rows, projects, days = landed
    verified, unexported, corrupted, late = days[0], days[1], days[2], days[3]
    for day in (verified, corrupted, late):
        cold.export_day(db, database_url, day, cold_settings)
        assert cold.verify_day(db, day, cold_settings).ok
    # corrupted: the file of one project truncated after the check passed; the next check fails
    _org, hot = projects["hot"]
    path = Path(cold_settings.url) / cold.relative_path(cold.EVENTS, corrupted, hot)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    assert not cold.verify_day(db, corrupted, cold_settings).ok
    # late: an event landed after the verified export
    org, quiet = projects["quiet"]
    late_row = (quiet, datetime.combine(late, datetime.min.time(), UTC) + timedelta(hours=3), uuid.uuid4(), org,
                "late", "u-late", END, "{}")  # fmt: skip
    land_rows(db, [late_row])

    result = _retention(db, days[-1] + timedelta(days=1), cold_settings, days)
    assert result.dropped == [verified]
    assert set(result.kept) == {unexported, corrupted, late}
    assert "not exported" in result.kept[unexported]
    assert "failed" in result.kept[corrupted]
    assert "version" in result.kept[late]
    remaining = existing_partition_days(db)
    assert verified not in remaining and {unexported, corrupted, late} <= remaining
    assert db.execute("SELECT to_regclass(%s)", (f"events_p{verified:%Y%m%d}",)).fetchone()[0] is None
    start = datetime.combine(verified, datetime.min.time(), UTC)
    assert (
        db.execute(
            "SELECT count(*) FROM event_ids WHERE event_time >= %s AND event_time < %s",
            (start, start + timedelta(days=1)),
        ).fetchone()[0]
        == 0
    )
    n_late = sum(_counts(rows, late).values()) + 1
    assert (
        db.execute(
            "SELECT count(*) FROM events WHERE event_time >= %s AND event_time < %s",
            (
                datetime.combine(late, datetime.min.time(), UTC),
                datetime.combine(late, datetime.min.time(), UTC) + timedelta(days=1),
            ),
        ).fetchone()[0]
        == n_late
    )

    # exporting again repairs the corrupted and the late day; then retention drops them too
    for day in (corrupted, late):
        cold.export_day(db, database_url, day, cold_settings)
        assert cold.verify_day(db, day, cold_settings).ok
    again = _retention(db, days[-1] + timedelta(days=1), cold_settings, days)
    assert again.dropped == [corrupted, late]
    assert list(again.kept) == [unexported]


def test_retention_drops_a_partition_detached_by_the_old_retention_only_after_its_export(
    db, database_url, landed, cold_settings
):
    from tests.utils.partitions import detach_partitions_before, detached_partitions

    _rows, _projects, days = landed
    day = days[0]
    detach_partitions_before(db, day + timedelta(days=1))
    assert f"events_p{day:%Y%m%d}" in detached_partitions(db)
    kept = _retention(db, day + timedelta(days=1), cold_settings, days)
    assert kept.dropped == [] and day in kept.kept
    cold.export_day(db, database_url, day, cold_settings)  # reads the detached table
    assert cold.verify_day(db, day, cold_settings).ok
    assert _retention(db, day + timedelta(days=1), cold_settings, days).dropped == [day]
    assert f"events_p{day:%Y%m%d}" not in detached_partitions(db)


@pytest.mark.parametrize("damage", ["truncate", "flip_bytes", "delete", "swap_for_other_project"])
def test_parity_check_detects_a_damaged_parquet_file(db, database_url, landed, cold_settings, damage):
    _rows, projects, days = landed
    day = days[1]
    cold.export_day(db, database_url, day, cold_settings, datasets=[cold.EVENTS])
    assert cold.verify_day(db, day, cold_settings, datasets=[cold.EVENTS]).ok
    _org, hot = projects["hot"]
    _org2, quiet = projects["quiet"]
    path = Path(cold_settings.url) / cold.relative_path(cold.EVENTS, day, hot)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(bytes(data[: len(data) - 100]))
    elif damage == "flip_bytes":
        # inside the column data (past the 4-byte magic), where zstd frames or values live
        for i in range(len(data) // 3, len(data) // 3 + 64):
            data[i] ^= 0xFF
        path.write_bytes(bytes(data))
    elif damage == "delete":
        path.unlink()
    else:
        other = Path(cold_settings.url) / cold.relative_path(cold.EVENTS, day, quiet)
        path.write_bytes(other.read_bytes())
    parity = cold.verify_day(db, day, cold_settings, datasets=[cold.EVENTS])
    assert not parity.ok
    bad = [r for r in parity.results if not r.ok]
    assert [r.project_id for r in bad] == [hot]
    assert bad[0].status == "failed" and bad[0].detail
    assert db.execute(
        "SELECT status FROM cold_exports WHERE dataset = 'events' AND project_id = %s AND day = %s",
        (hot, day),
    ).fetchone() == ("failed",)


def test_cold_events_gives_one_projects_rows_with_the_postgres_columns(
    db, database_url, landed, cold_settings
):
    _rows, projects, days = landed
    for day in days:
        cold.export_day(db, database_url, day, cold_settings)
        assert cold.verify_day(db, day, cold_settings).ok
    _org, hot = projects["hot"]
    _org2, quiet = projects["quiet"]
    assert cold.cold_days(db, hot) == days
    assert cold.cold_days(db, hot, days[1], days[2]) == days[1:3]
    with cold.cold_events(db, hot, days[1:3], cold_settings) as scope:
        assert scope.days[cold.EVENTS] == days[1:3]
        described = scope.duck.execute("DESCRIBE events").fetchall()
        assert [(c[0], c[1]) for c in described] == [
            ("project_id", "UUID"), ("event_time", "TIMESTAMP WITH TIME ZONE"), ("event_id", "UUID"),
            ("org_id", "UUID"), ("event_name", "VARCHAR"), ("distinct_id", "VARCHAR"),
            ("received_at", "TIMESTAMP WITH TIME ZONE"), ("landed_at", "TIMESTAMP WITH TIME ZONE"),
            ("properties", "JSON"),
        ]  # fmt: skip
        got = scope.duck.execute(
            "SELECT event_id, event_time, properties::VARCHAR FROM events ORDER BY event_id"
        ).fetchall()
        start = datetime.combine(days[1], datetime.min.time(), UTC)
        want = db.execute(
            "SELECT event_id, event_time, properties::text FROM events WHERE project_id = %s "
            "AND event_time >= %s AND event_time < %s ORDER BY event_id",
            (hot, start, start + timedelta(days=2)),
        ).fetchall()
        assert len(got) == len(want) > 0
        assert [(g[0], g[1]) for g in got] == [(w[0], w[1]) for w in want]
        # JSON text: DuckDB prints compactly; the parsed values are the same
        assert [duckdb.execute("SELECT ?::JSON::VARCHAR", [w[2]]).fetchall()[0][0] for w in want[:20]] == [
            g[2] for g in got[:20]
        ]
        # the sealed connection cannot read another project's file, nor change that
        other = Path(cold_settings.url) / cold.relative_path(cold.EVENTS, days[1], quiet)
        with pytest.raises(duckdb.PermissionException):
            scope.duck.execute(f"SELECT count(*) FROM read_parquet('{other}')")
        with pytest.raises(duckdb.Error):
            scope.duck.execute("SET enable_external_access = true")


def test_cold_days_excludes_failed_and_stale_exports(db, database_url, landed, cold_settings):
    _rows, projects, days = landed
    org, quiet = projects["quiet"]
    for day in days[:2]:
        cold.export_day(db, database_url, day, cold_settings)
    assert cold.cold_days(db, quiet) == []  # exported, not yet verified
    for day in days[:2]:
        assert cold.verify_day(db, day, cold_settings).ok
    assert cold.cold_days(db, quiet) == days[:2]
    land_rows(db, [(quiet, datetime.combine(days[0], datetime.min.time(), UTC), uuid.uuid4(), org, "late", "u",
                    END, "{}")])  # fmt: skip
    assert cold.cold_days(db, quiet) == days[1:2]


CUSTOM = {
    # name: (event, filters, aggregation, property, dimensions)
    "purchases_by_plan": ("purchase", {}, "count", None, ["plan"]),
    "buyers": ("purchase", {}, "unique_users", None, []),
    "revenue_by_country": ("purchase", {}, "sum", "amount", ["country"]),
    "avg_basket": ("purchase", {}, "avg", "amount", []),
    "pro_page_views": ("page_view", {"plan": "pro"}, "count", None, ["device", "plan"]),
    "any_event_by_plan_and_odd": (None, {}, "count", None, ["plan", "odd/key~"]),
    # jsonb `@>` on the exact text: a nested object only at its own level, a number by its decimal value
    "meta_a1": (None, {"meta": {"a": 1}}, "count", None, []),
    "tenth": ("purchase", {"amount": 0.1}, "count", None, []),
}


def _aggregate_rows(conn: psycopg.Connection, day: date) -> tuple[list, list, dict]:
    start = datetime.combine(day, datetime.min.time(), UTC)
    rollups = conn.execute(
        "SELECT * FROM event_rollups WHERE bucket >= %s AND bucket < %s ORDER BY 1, 2, 3",
        (start, start + timedelta(days=1)),
    ).fetchall()
    users = conn.execute("SELECT * FROM user_activity WHERE day = %s ORDER BY 1, 2, 3", (day,)).fetchall()
    aggregates = {
        (p, m, dims): (org, value, events, total)
        for org, p, m, dims, value, events, total in conn.execute(
            "SELECT org_id, project_id, metric, dimensions::text, value, events, sum FROM daily_aggregates "
            "WHERE date = %s",
            (day,),
        )
    }
    return rollups, users, aggregates


def test_rebuilding_an_old_day_from_parquet_gives_the_postgres_aggregates(
    db, database_url, landed, cold_settings
):
    from warehouse.cold_rebuild import rebuild_day_from_cold

    rows, projects, days = landed
    org_id, project_id = projects["hot"]
    day = days[1]
    odd = [
        (project_id, datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=h), uuid.uuid4(), org_id,
         "purchase", f"odd-{h}", END, props)
        for h, props in enumerate([
            '{"amount": "not a number", "plan": {"nested": [1, 2]}, "country": "\u00e9\u00e9", "x": null}',
            '{"amount": 12.5, "plan": "pro", "country": null, "odd/key~": true}',
            '{"amount": 1e3, "plan": "pro", "device": "tv", "odd/key~": [1, "a"]}',
            # a numeric string is no number to sum; a JSON null dimension is a dimension (`properties ? k`)
            '{"amount": "12", "plan": null, "country": "fr", "meta": {"a": 1}}',
            '{"amount": 0.10000000000000001, "plan": null, "meta": {"b": {"a": 1}}}',
            '{"amount": 0.1, "meta": {"a": 1, "c": 2}}',
        ])
    ]  # fmt: skip
    land_rows(db, odd)
    for name, (event, filters, aggregation, prop, dims) in CUSTOM.items():
        db.execute(
            "INSERT INTO metric_definitions (org_id, project_id, name, event_name, filters, aggregation, property, "
            "dimensions) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (org_id, project_id, name, event, psycopg.types.json.Jsonb(filters), aggregation, prop, dims),
        )
    rebuild_day(db, day)
    from_postgres = _aggregate_rows(db, day)
    assert from_postgres[0] and from_postgres[1]
    slots_sql = "SELECT project_id, event_name, cum FROM event_day_slots WHERE day = %s ORDER BY 1, 2"
    slots_from_postgres = db.execute(slots_sql, (day,)).fetchall()
    assert slots_from_postgres
    assert sum(1 for m in {k[1] for k in from_postgres[2]} if m.startswith("custom:")) == len(CUSTOM)

    cold.export_day(db, database_url, day, cold_settings, datasets=[cold.EVENTS])
    assert cold.verify_day(db, day, cold_settings, datasets=[cold.EVENTS]).ok
    # raw retention drops the day from PostgreSQL; its aggregates are then deleted (as aggregate retention would)
    assert _retention(db, day + timedelta(days=1), cold_settings, days).dropped == [day]
    db.execute(
        "DELETE FROM event_rollups; DELETE FROM event_day_slots; DELETE FROM user_activity; "
        "DELETE FROM daily_aggregates"
    )
    build = rebuild_day_from_cold(db, day, cold_settings, run_id="cold-test")
    assert db.execute(slots_sql, (day,)).fetchall() == slots_from_postgres
    assert build.raw_events == sum(_counts(rows, day).values()) + len(odd)
    rollups, users, aggregates = _aggregate_rows(db, day)
    assert rollups == from_postgres[0]
    assert users == from_postgres[1]
    assert aggregates.keys() == from_postgres[2].keys()
    for key, (org, value, events, total) in from_postgres[2].items():
        got = aggregates[key]
        assert got[0] == org and got[2] == events, key
        assert got[1] == pytest.approx(value, rel=1e-12), key  # float sums may differ in the last bit
        assert (got[3] is None) == (total is None) and (
            total is None or got[3] == pytest.approx(total, rel=1e-12)
        )
    assert db.execute("SELECT DISTINCT run_id FROM aggregate_builds WHERE day = %s", (day,)).fetchall() == [
        ("cold-test",)
    ]


def test_rebuild_from_cold_refuses_a_day_with_a_project_not_in_the_cold_tier(
    db, database_url, landed, cold_settings
):
    from warehouse.cold_rebuild import rebuild_day_from_cold

    _rows, _projects, days = landed
    day = days[2]
    rebuild_day(db, day)
    before = _aggregate_rows(db, day)
    with pytest.raises(ValueError, match="no verified cold export"):
        rebuild_day_from_cold(db, day, cold_settings)
    assert _aggregate_rows(db, day) == before


def test_an_event_just_before_a_slot_boundary_counts_in_its_own_slot(db, database_url, cold_settings):
    """Both engines truncate to the 15-minute slot; PostgreSQL's rebuild once rounded 23:59:59.6 into a 97th
    slot, which a bit(96) map silently drops (the user then had no active slot that day)."""
    from warehouse.cold_rebuild import rebuild_day_from_cold

    t = make_tenant(db, "acme", "web")
    day = date(2026, 5, 3)
    start = datetime.combine(day, datetime.min.time(), UTC)
    times = [
        start + timedelta(minutes=15) - timedelta(milliseconds=400),
        start + timedelta(days=1, milliseconds=-400),
    ]
    land_rows(
        db,
        [
            (t["project_id"], ts, uuid.uuid4(), t["org_id"], "e", f"u{i}", ts, "{}")
            for i, ts in enumerate(times)
        ],
    )
    want = {"u0": "1" + "0" * 95, "u1": "0" * 95 + "1"}
    rebuild_day(db, day)
    got = dict(
        db.execute("SELECT distinct_id, slots::text FROM user_activity WHERE day = %s", (day,)).fetchall()
    )
    assert got == want
    cold.export_day(db, database_url, day, cold_settings, datasets=[cold.EVENTS])
    assert cold.verify_day(db, day, cold_settings, datasets=[cold.EVENTS]).ok
    db.execute("DELETE FROM user_activity")
    rebuild_day_from_cold(db, day, cold_settings)
    got = dict(
        db.execute("SELECT distinct_id, slots::text FROM user_activity WHERE day = %s", (day,)).fetchall()
    )
    assert got == want
    db.execute(psycopg.sql.SQL("DROP TABLE {}").format(psycopg.sql.Identifier(f"events_p{day:%Y%m%d}")))


def test_an_s3_url_selects_pyarrows_s3_filesystem_without_touching_the_network():
    """S3 itself cannot be tested here (no bucket, no network); this pins the configuration mapping."""
    import pyarrow.fs as pafs

    store = cold.ColdStore.from_settings(
        ColdSettings(
            url="s3://analytics-cold/pulseops/", s3_endpoint="http://127.0.0.1:9", s3_region="eu-west-1"
        )
    )
    assert isinstance(store.fs, pafs.S3FileSystem) and not store.local
    assert store.fs.region == "eu-west-1"
    assert store.full("events/x.parquet") == "analytics-cold/pulseops/events/x.parquet"
    local = cold.ColdStore.from_settings(ColdSettings(url="relative/cold"))
    assert local.local and local.root == str(Path("relative/cold").absolute())


def test_a_failed_export_is_retried_after_the_retry_window(db, database_url, landed, cold_settings):
    _rows, projects, days = landed
    day = days[0]
    cold.export_day(db, database_url, day, cold_settings)
    _org, hot = projects["hot"]
    path = Path(cold_settings.url) / cold.relative_path(cold.EVENTS, day, hot)
    path.write_bytes(path.read_bytes()[:100])
    assert not cold.verify_day(db, day, cold_settings).ok
    after = days[-1] + timedelta(days=1)
    waiting = cold.days_to_export(db, day, after, limit=100, retry_after=timedelta(hours=1))
    assert day not in [d.day for d in waiting]  # not hammered while it keeps failing
    due = {d.day: d for d in cold.days_to_export(db, day, after, limit=100, retry_after=timedelta(0))}
    assert due[day].failed
