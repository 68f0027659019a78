"""Exact reads equal the ground truth whether days are raw only, built, built with late data not yet
rebuilt, or half of them only in the cold tier (Parquet, read by DuckDB), in UTC and in zones with DST
(New York), half-hour offsets (Kolkata) and half-hour DST (Lord Howe)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import orjson
import pytest

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.utils.events import land_rows, landing_rows
from tests.utils.tenants import make_tenant
from tests.utils.truth import Truth, rows_of
from warehouse import cold
from warehouse.aggregates import rebuild_day
from warehouse.metric_defs import MetricSpec, create_metric
from warehouse.reads import explore, series
from warehouse.reads.exact import Scope, raw_days
from warehouse.reads.filters import FilterOp, PropertyFilter
from warehouse.reads.metrics import metric_series

END = datetime(2026, 11, 5, 12, tzinfo=UTC)  # 36 days back covers Lord Howe's Oct 4 and New York's Nov 1 DST
ZONES = ["UTC", "America/New_York", "Asia/Kolkata", "Australia/Lord_Howe"]
START, LAST = date(2026, 10, 2), date(2026, 11, 4)  # local dates fully inside the data in every zone
LATE_DAYS = {date(2026, 10, 10), date(2026, 10, 20), date(2026, 11, 1)}


@pytest.fixture(scope="module")
def generated():
    config = GeneratorConfig(
        seed=5, end=END, days=36, total_events=12_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 0.8, 300), TenantSpec("quiet", 0.2, 50)],
    )  # fmt: skip
    return list(generate(config))


@pytest.fixture(params=["raw_only", "built", "late_not_rebuilt", "half_cold"])
def warehouse_state(request, db, generated, database_url, tmp_path):
    tenants = {"hot": make_tenant(db, "acme", "web"), "quiet": make_tenant(db, "globex", "shop")}
    projects = {name: (t["org_id"], t["project_id"]) for name, t in tenants.items()}
    rows = landing_rows(generated, projects, received_at=END)
    late = [r for r in rows if r[1].date() in LATE_DAYS and r[2].int % 10 == 0]
    on_time = [r for r in rows if not (r[1].date() in LATE_DAYS and r[2].int % 10 == 0)]
    days = sorted({r[1].date() for r in rows})
    project = projects["hot"][1]
    if request.param == "raw_only":
        land_rows(db, rows)
        assert raw_days(db, project, days[0], days[-1]) == days
    else:
        land_rows(db, on_time)
        for day in days:
            rebuild_day(db, day)
        if request.param == "half_cold":
            # late data not rebuilt, then the older half (two late days included) exported and dropped:
            # every question reads those days' raw events from Parquet through DuckDB
            land_rows(db, late)
            cold_settings = ColdSettings(url=str(tmp_path / "cold"))
            half = days[: len(days) // 2]
            for day in half:
                cold.export_day(db, database_url, day, cold_settings, datasets=(cold.EVENTS,))
                assert cold.verify_day(db, day, cold_settings, datasets=(cold.EVENTS,)).ok
            dropped = cold.drop_exported_partitions_before(db, half[-1] + timedelta(days=1), cold_settings)
            assert set(half) <= set(dropped.dropped)
            return request.param, projects, rows_of(rows), cold_settings
        if request.param == "late_not_rebuilt":
            land_rows(db, late)
            assert raw_days(db, project, days[0], days[-1]) == sorted(LATE_DAYS)
        else:
            land_rows(db, late)
            for day in LATE_DAYS:
                rebuild_day(db, day)
            assert raw_days(db, project, days[0], days[-1]) == []
    return request.param, projects, rows_of(rows), None


@pytest.mark.parametrize("tz", ZONES)
def test_counts_users_and_top_events_equal_truth(db, warehouse_state, tz):
    _state, projects, rows, cold_settings = warehouse_state
    for _org, project_id in projects.values():
        truth = Truth(rows, project_id, tz, START, LAST)
        scope = Scope(project_id, START, LAST, tz)
        for g in ("hour", "day", "week", "month"):
            got = series.event_counts(db, scope, g, cold=cold_settings)
            assert {(p.local_start, p.utc_offset): p.value for p in got if p.value} == truth.counts(g), g
            assert len({(p.local_start, p.utc_offset) for p in got}) == len(got)
        assert series.total_events(db, scope, cold=cold_settings) == truth.total()
        assert series.top_events(db, scope, 5, cold=cold_settings) == truth.top(5)
        for window in (1, 7, 30):
            assert series.active_users(db, scope, window, cold=cold_settings) == truth.active(window), window


@pytest.mark.parametrize("tz", ["UTC", "America/New_York"])
def test_event_names_and_property_filters_equal_truth(db, warehouse_state, tz):
    _state, projects, rows, cold_settings = warehouse_state
    _org, project_id = projects["hot"]
    truth = Truth(rows, project_id, tz, START, LAST)
    scope = Scope(project_id, START, LAST, tz)
    names = ("page_view", "purchase")
    named = replace(scope, event_names=names)
    assert {
        (p.local_start, p.utc_offset): p.value
        for p in series.event_counts(db, named, "day", cold=cold_settings)
        if p.value
    } == (truth.counts("day", names=names))
    assert series.active_users(db, named, 7, cold=cold_settings) == truth.active(7, names=names)
    cases = [
        (PropertyFilter("plan", FilterOp.EQ, "pro"), lambda p: p.get("plan") == "pro"),
        (
            PropertyFilter("country", FilterOp.IN, values=("US", "DE")),
            lambda p: p.get("country") in ("US", "DE"),
        ),
        (PropertyFilter("country", FilterOp.NOT_IN, values=("US",)), lambda p: p.get("country") != "US"),
        (
            PropertyFilter("amount", FilterOp.GT, 20),
            lambda p: isinstance(p.get("amount"), float) and p["amount"] > 20,
        ),
        (PropertyFilter("amount", FilterOp.LTE, 20), lambda p: "amount" in p and p["amount"] <= 20),
        (PropertyFilter("amount", FilterOp.EXISTS), lambda p: "amount" in p),
        (PropertyFilter("amount", FilterOp.NOT_EXISTS), lambda p: "amount" not in p),
        (PropertyFilter("device", FilterOp.NEQ, "mobile"), lambda p: p.get("device") != "mobile"),
    ]
    for f, pred in cases:
        filtered = replace(scope, filters=(f,))
        got = {
            (p.local_start, p.utc_offset): p.value
            for p in series.event_counts(db, filtered, "day", cold=cold_settings)
            if p.value
        }
        assert got == truth.counts("day", where=pred), f
        assert series.total_events(db, filtered, cold=cold_settings) == truth.total(where=pred), f
    rows_, total = explore.breakdown(db, scope, "country", limit=50, cold=cold_settings)
    want = truth.breakdown("country")
    assert total == truth.total()
    assert {
        (r.value if r.value is None else orjson.dumps(r.value).decode()): (r.events, r.users) for r in rows_
    } == want


def test_custom_metrics_equal_truth_before_and_after_builds(db, warehouse_state):
    state, projects, rows, cold_settings = warehouse_state
    org_id, project_id = projects["hot"]
    purchases = create_metric(
        db, org_id, project_id,
        MetricSpec("revenue", "sum", event_name="purchase", property="amount", dimensions=("plan",)),
    )  # fmt: skip
    buyers = create_metric(
        db, org_id, project_id, MetricSpec("buyers", "unique_users", event_name="purchase")
    )
    pro_views = create_metric(
        db, org_id, project_id,
        MetricSpec("pro views", "count", event_name="page_view", filters={"plan": "pro"}, dimensions=("device",)),
    )  # fmt: skip
    if state not in ("raw_only", "half_cold"):  # a cold day's raw events are gone from PostgreSQL
        for day in sorted({r.ts.date() for r in rows}):
            rebuild_day(db, day)  # now the metrics' days are built (late days included)
    for tz in ("UTC", "Asia/Kolkata"):
        truth = Truth(rows, project_id, tz, START, LAST)
        scope = Scope(project_id, START, LAST, tz)
        revenue = metric_series(db, purchases, scope, "day", cold=cold_settings)
        want: dict = {}
        for r, loc in truth.select(names=("purchase",)):
            key = (loc.date(), r.props["plan"])
            want[key] = want.get(key, 0.0) + r.props["amount"]
        got = {(p.local_start.date(), p.dimensions["plan"]): p.value for p in revenue}
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) < 1e-6 for k in want)
        users = {
            p.local_start.date(): p.value for p in metric_series(db, buyers, scope, "day", cold=cold_settings)
        }
        want_users: dict = {}
        for r, loc in truth.select(names=("purchase",)):
            want_users.setdefault(loc.date(), set()).add(r.distinct_id)
        assert users == {d: len(u) for d, u in want_users.items()}
        views = {
            (p.local_start.date(), p.dimensions["device"]): p.value
            for p in metric_series(db, pro_views, scope, "day", cold=cold_settings)
        }
        want_views: dict = {}
        for r, loc in truth.select(names=("page_view",), where=lambda p: p.get("plan") == "pro"):
            want_views[(loc.date(), r.props["device"])] = (
                want_views.get((loc.date(), r.props["device"]), 0) + 1
            )
        assert views == want_views


@pytest.mark.parametrize("built", [False, True])
def test_an_event_in_the_last_half_second_of_a_slot_stays_in_its_slot(db, built):
    """23:59:59.7 rounded to the next slot would fall off the day's bitmap and lose the user."""
    import uuid

    t = make_tenant(db)
    when = datetime(2026, 11, 3, 23, 59, 59, 700_000, tzinfo=UTC)
    row = (t["project_id"], when, uuid.uuid4(), t["org_id"], "page_view", "night-owl", when, "{}")
    land_rows(db, [row])
    if built:
        rebuild_day(db, when.date())
    scope = Scope(t["project_id"], when.date(), when.date(), "UTC")
    assert series.active_users(db, scope, 1) == [(when.date(), 1)]
    kolkata = Scope(t["project_id"], date(2026, 11, 4), date(2026, 11, 4), "Asia/Kolkata")
    assert series.active_users(db, kolkata, 1) == [(date(2026, 11, 4), 1)]


@pytest.mark.parametrize("built", [False, True])
def test_a_local_midnight_that_occurs_twice_starts_the_day_at_its_first_reading(db, built):
    """Azores, 2025-10-26: local 00:00-01:00 happens at +00:00 and again at -01:00; 00:30Z is Oct 26 local."""
    import uuid

    t = make_tenant(db)
    when = datetime(2025, 10, 26, 0, 30, tzinfo=UTC)
    land_rows(db, [(t["project_id"], when, uuid.uuid4(), t["org_id"], "page_view", "early", when, "{}")])
    if built:
        rebuild_day(db, when.date())
    scope = Scope(t["project_id"], date(2025, 10, 25), date(2025, 10, 26), "Atlantic/Azores")
    assert series.active_users(db, scope, 1) == [(date(2025, 10, 25), 0), (date(2025, 10, 26), 1)]
    assert series.active_users(db, scope, 7) == [(date(2025, 10, 25), 0), (date(2025, 10, 26), 1)]
    daily = series.event_counts(db, scope, "day")
    assert [(p.local_start.date(), p.value) for p in daily] == [
        (date(2025, 10, 25), 0),
        (date(2025, 10, 26), 1),
    ]
