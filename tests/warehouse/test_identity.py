"""Identity: links recorded by the landing transaction, persons as connected components, people-based unique
users exact against a union-find ground truth (in the test, from the link events themselves) in UTC, New York
and Kolkata: raw only, built, with a late link after the build, rebuilt, and with half the days cold."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

import orjson
import psycopg
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from benchmarks.generator import GeneratorConfig, TenantSpec, generate
from pulseops.settings import ColdSettings
from tests.utils.events import land_rows, landing_rows
from tests.utils.identity import active_people, as_people, identity_data, people_of
from tests.utils.tenants import make_tenant
from tests.utils.truth import Truth, rows_of
from warehouse import cold, identity
from warehouse.aggregates import rebuild_day
from warehouse.landing import land_batch
from warehouse.metric_defs import MetricSpec, create_metric
from warehouse.reads import explore, series
from warehouse.reads.exact import Scope, raw_days
from warehouse.reads.filters import FilterOp, PropertyFilter
from warehouse.reads.metrics import metric_series

END = datetime(2026, 11, 5, 12, tzinfo=UTC)
DAYS = 20
START, LAST = (END - timedelta(days=DAYS - 1)).date(), END.date() - timedelta(days=1)
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]


def _dataset(db):
    a, b = make_tenant(db, "acme", "web"), make_tenant(db, "globex", "shop")
    ident = identity_data(a["project_id"], a["org_id"], END, DAYS, people=60, seed=11)
    # project B: the same ids, the same sessions, but no link at all: nothing in A may merge them here
    twin = identity_data(b["project_id"], b["org_id"], END, DAYS, people=60, seed=11)
    twin_rows = [r for r in twin.rows if r[4] not in ("$identify", "$create_alias")]
    config = GeneratorConfig(
        seed=4, end=END, days=DAYS, total_events=2_000, late_ratio=0.0, duplicate_ratio=0.0,
        tenants=[TenantSpec("hot", 1.0, 80)],
    )  # fmt: skip
    noise = landing_rows(generate(config), {"hot": (a["org_id"], a["project_id"])}, received_at=END)
    return a, b, ident, ident.rows + noise + twin_rows


def _check_people(db, landed: list[tuple], project_id: uuid.UUID, cold_settings=None) -> None:
    truth_rows = as_people(rows_of(landed), links_from=landed)
    plain = rows_of(landed)
    for tz in ZONES:
        scope = Scope(project_id, START, LAST, tz)
        for window in (1, 7, 30):
            want = active_people(truth_rows, project_id, tz, START, LAST, window)
            got = series.active_users(db, scope, window, cold=cold_settings, unique_by="person")
            assert got == want, (tz, window)
            # per distinct id, as before
            by_id = series.active_users(db, scope, window, cold=cold_settings)
            assert by_id == Truth(plain, project_id, tz, START, LAST).active(window), (tz, window)
        # with event names and a property filter every day is read raw, then mapped the same way
        views = [r for r in truth_rows if r.name == "page_view" and r.props.get("plan") == "pro"]
        named = replace(
            scope, event_names=("page_view",), filters=(PropertyFilter("plan", FilterOp.EQ, "pro"),)
        )
        got = series.active_users(db, named, 7, cold=cold_settings, unique_by="person")
        assert got == active_people(views, project_id, tz, START, LAST, 7), tz
        truth = Truth(truth_rows, project_id, tz, START, LAST)
        groups, total = explore.breakdown(db, scope, "plan", 50, cold=cold_settings, unique_by="person")
        assert total == truth.total()
        assert {
            (g.value if g.value is None else orjson.dumps(g.value).decode()): (g.events, g.users)
            for g in groups
        } == truth.breakdown("plan")


@pytest.fixture(params=["raw_only", "built", "late_link_after_build", "late_link_rebuilt", "half_cold"])
def state(request, db, database_url, tmp_path):
    a, b, ident, rows = _dataset(db)
    days = sorted({r[1].date() for r in rows + ident.late_links})
    land_rows(db, rows)
    landed = list(rows)
    cold_settings = None
    if request.param != "raw_only":
        for day in days:
            rebuild_day(db, day)
        assert raw_days(db, a["project_id"], days[0], days[-1]) == []
    if request.param != "raw_only":
        land_rows(db, ident.late_links)
        landed += ident.late_links
        late_days = sorted({r[1].date() for r in ident.late_links})
        assert raw_days(db, a["project_id"], days[0], days[-1]) == late_days
        if request.param == "late_link_rebuilt":
            for day in late_days:
                rebuild_day(db, day)
        if request.param == "half_cold":
            cold_settings = ColdSettings(url=str(tmp_path / "cold"))
            half = days[: len(days) // 2]
            for day in half:
                cold.export_day(db, database_url, day, cold_settings, datasets=(cold.EVENTS,))
                assert cold.verify_day(db, day, cold_settings, datasets=(cold.EVENTS,)).ok
            dropped = cold.drop_exported_partitions_before(db, half[-1] + timedelta(days=1), cold_settings)
            assert set(half) <= set(dropped.dropped)
    return request.param, a, b, ident, landed, cold_settings


def test_people_based_unique_users_equal_truth(db, state):
    name, a, b, ident, landed, cold_settings = state
    _check_people(db, landed, a["project_id"], cold_settings)
    _check_people(db, landed, b["project_id"], cold_settings)
    # the data set links something inside the range (else the test could not fail)
    scope = Scope(a["project_id"], START, LAST, "UTC")
    people = series.active_users(db, scope, 30, cold=cold_settings, unique_by="person")
    ids = series.active_users(db, scope, 30, cold=cold_settings)
    assert people[-1][1] < ids[-1][1] - 30
    # tenant isolation: B has the same ids and no links, so its person counts are its id counts
    scope_b = Scope(b["project_id"], START, LAST, "UTC")
    assert series.active_users(
        db, scope_b, 30, cold=cold_settings, unique_by="person"
    ) == series.active_users(db, scope_b, 30, cold=cold_settings)
    assert identity.persons(db, b["project_id"]) == {}
    if name != "raw_only":
        # every link landed: the warehouse's persons are the generator's
        mapping = identity.persons(db, a["project_id"])
        for did, person in ident.people.items():
            assert mapping.get(did, did) == min(k for k, v in ident.people.items() if v == person), did


def test_a_late_link_changes_earlier_days_at_once(db):
    """Events from before the link count for the joined person as soon as the link lands, built or not."""
    t = make_tenant(db)
    p, o = t["project_id"], t["org_id"]
    d1, d2, d3 = date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)

    def ev(day: date, who: str, name: str = "page_view", props: dict | None = None) -> tuple:
        ts = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=12)
        return (p, ts, uuid.uuid4(), o, name, who, ts, orjson.dumps(props or {}).decode())

    land_rows(db, [ev(d1, "phone"), ev(d1, "laptop"), ev(d2, "phone"), ev(d2, "laptop"), ev(d3, "user")])
    for d in (d1, d2, d3):
        rebuild_day(db, d)
    scope = Scope(p, d1, d3, "UTC")
    assert series.active_users(db, scope, 1, unique_by="person") == [(d1, 2), (d2, 2), (d3, 1)]
    land_rows(db, [ev(d3, "user", "$identify", {"$anon_distinct_id": "phone"})])
    assert series.active_users(db, scope, 1, unique_by="person") == [(d1, 2), (d2, 2), (d3, 1)]
    assert series.active_users(db, scope, 7, unique_by="person") == [(d1, 2), (d2, 2), (d3, 2)]
    # a late alias arrives with an event time on the first day: it joins the laptop to the same person
    land_rows(db, [ev(d1, "laptop", "$create_alias", {"alias": "user"})])
    assert series.active_users(db, scope, 1, unique_by="person") == [(d1, 1), (d2, 1), (d3, 1)]
    assert series.active_users(db, scope, 7, unique_by="person") == [(d1, 1), (d2, 1), (d3, 1)]
    assert series.active_users(db, scope, 1) == [(d1, 2), (d2, 2), (d3, 1)]  # per id: unchanged
    assert identity.persons(db, p) == {"laptop": "laptop", "phone": "laptop", "user": "laptop"}


def _link_rows(t: dict, pairs: list[tuple[str, str]], day: date = date(2026, 11, 2)) -> list[tuple]:
    ts = datetime.combine(day, datetime.min.time(), UTC)
    return [
        (t["project_id"], ts + timedelta(seconds=i), uuid.uuid4(), t["org_id"], "$identify", a, ts,
         orjson.dumps({"$anon_distinct_id": b}).decode())
        for i, (a, b) in enumerate(pairs)
    ]  # fmt: skip


def test_links_are_idempotent_and_independent_of_arrival_order(db):
    pairs = [(f"u{i % 7}", f"a{i}") for i in range(40)] + [("u1", "u2"), ("u5", "a3"), ("a9", "a10")]
    forward = make_tenant(db, "o1", "forward")
    backward = make_tenant(db, "o2", "backward")
    rows = _link_rows(forward, pairs)
    for i in range(0, len(rows), 5):
        land_rows(db, rows[i : i + 5])
    reverse = _link_rows(backward, pairs)[::-1]
    for i in range(0, len(reverse), 3):
        land_rows(db, reverse[i : i + 3])
    mapping = identity.persons(db, forward["project_id"])
    assert mapping == identity.persons(db, backward["project_id"])
    truth = people_of(rows)
    groups: dict = {}
    for (_p, did), rep in truth.items():
        groups.setdefault(rep, set()).add(did)
    assert {did: min(groups[rep]) for (_p, did), rep in truth.items()} == mapping
    links = db.execute("SELECT count(*) FROM identity_links").fetchone()[0]
    versions = db.execute("SELECT project_id, links FROM identity_versions ORDER BY 1").fetchall()
    # the same link events again (a replayed batch), and the same link in a new event, reversed
    assert land_rows(db, rows) == 0
    land_rows(db, _link_rows(forward, [("a0", "u0")]))
    assert db.execute("SELECT count(*) FROM identity_links").fetchone()[0] == links
    assert identity.persons(db, forward["project_id"]) == mapping
    after = dict(db.execute("SELECT project_id, links FROM identity_versions").fetchall())
    assert after[backward["project_id"]] == dict(versions)[backward["project_id"]]  # replay moved nothing


def test_placeholder_ids_and_self_links_link_nothing(db):
    t = make_tenant(db)
    land_rows(db, _link_rows(t, [("u1", "undefined"), ("u2", "null"), ("u3", "u3"), ("u4", " Anonymous ")]))
    land_rows(db, _link_rows(t, [("undefined", "u5")]))
    assert identity.persons(db, t["project_id"]) == {}
    assert db.execute("SELECT count(*) FROM identity_links").fetchone()[0] == 0
    row = _link_rows(t, [("u1", "a1")])[0]
    row = (*row[:7], orjson.dumps({"$anon_distinct_id": "a1", "$set": {"plan": "pro"}}).decode())
    first = land_batch(db, [row])
    assert (first.links, first.person_properties) == (1, 1)
    assert (land_batch(db, [row]).links, identity.persons(db, t["project_id"])) == (
        0,
        {"a1": "a1", "u1": "a1"},
    )


def test_concurrent_landers_merge_to_one_person(database_url, db):
    """Two transactions linking overlapping ids at once: the per-project lock serialises them, nothing lost."""
    t = make_tenant(db)
    chains = [[(f"c{j}-{i}", f"c{j}-{i + 1}") for i in range(30)] for j in range(2)]
    chains[1].append(("c0-0", "c1-0"))  # joins the two chains
    errors: list[BaseException] = []

    def land(pairs):
        try:
            with psycopg.connect(database_url, autocommit=True) as conn:
                for i in range(0, len(pairs), 4):
                    land_rows(conn, _link_rows(t, pairs[i : i + 4]))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=land, args=(c,)) for c in chains]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    mapping = identity.persons(db, t["project_id"])
    assert set(identity.inconsistencies(db, t["project_id"]).values()) == {0}
    assert len(mapping) == 62
    assert set(mapping.values()) == {"c0-0"}


def test_person_properties_last_set_wins_by_event_time(db):
    t = make_tenant(db)
    p, o = t["project_id"], t["org_id"]
    base = datetime(2026, 11, 2, tzinfo=UTC)

    def ev(hour: int, who: str, name: str, props: dict) -> tuple:
        ts = base + timedelta(hours=hour)
        return (p, ts, uuid.uuid4(), o, name, who, ts, orjson.dumps(props).decode())

    # landed newest first: event time decides, not arrival
    land_rows(db, [ev(9, "user", "$set", {"$set": {"plan": "enterprise"}, "$set_once": {"source": "late"}})])
    big = '{"$set": {"plan": "pro", "country": "DE", "big": 123456789012345678901234567890, "x": 1.10}}'
    land_rows(db, [(*ev(5, "anon", "page_view", {})[:7], big)])  # values kept as sent, not via a float
    land_rows(
        db,
        [
            ev(1, "user", "$identify", {"$anon_distinct_id": "anon", "$set": {"plan": "free"},
                                         "$set_once": {"source": "ad"}}),
        ],
    )  # fmt: skip
    other = make_tenant(db, "globex", "shop")
    land_rows(db, [(other["project_id"], base, uuid.uuid4(), other["org_id"], "$set", "user", base,
                    orjson.dumps({"$set": {"plan": "other-tenant"}}).decode())])  # fmt: skip
    person = identity.person(db, p, "anon")
    assert person.distinct_ids == ["anon", "user"]
    assert person.person_id == "anon"
    assert person.properties == {
        "plan": "enterprise",
        "country": "DE",
        "source": "ad",
        "big": 123456789012345678901234567890,
        "x": 1.1,
    }
    assert identity.person(db, p, "user").properties == person.properties
    lonely = identity.person(db, p, "nobody")
    assert (lonely.distinct_ids, lonely.properties) == (["nobody"], {})
    assert identity.person(db, other["project_id"], "user").properties == {"plan": "other-tenant"}
    assert identity.person(db, other["project_id"], "anon").distinct_ids == ["anon"]


def test_unique_user_metric_counts_people(db):
    t = make_tenant(db)
    p, o = t["project_id"], t["org_id"]
    ident = identity_data(p, o, END, DAYS, people=40, seed=3)
    land_rows(db, ident.rows + ident.late_links)
    for day in sorted({r[1].date() for r in ident.rows}):
        rebuild_day(db, day)
    views = create_metric(db, o, p, MetricSpec("viewers", "unique_users", event_name="page_view"))
    rows = as_people(rows_of(ident.rows + ident.late_links), links_from=ident.rows + ident.late_links)
    for tz in ZONES:
        truth = Truth(rows, p, tz, START, LAST)
        want: dict = {}
        for r, loc in truth.select(names=("page_view",)):
            want.setdefault(loc.date(), set()).add(r.distinct_id)
        scope = Scope(p, START, LAST, tz)
        got = {
            x.local_start.date(): x.value for x in metric_series(db, views, scope, "day", unique_by="person")
        }
        assert got == {d: len(u) for d, u in want.items()}, tz
        by_id = {x.local_start.date(): x.value for x in metric_series(db, views, replace(scope), "day")}
        assert sum(by_id.values()) > sum(got.values())


_ids = st.sampled_from([f"id-{i}" for i in range(12)] + ["Z", "a", "é", "0"])


@hyp_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pairs=st.lists(st.tuples(_ids, _ids), min_size=1, max_size=25), chunk=st.integers(1, 6), data=st.data()
)
def test_any_links_in_any_order_and_batches_give_the_components(db, pairs, chunk, data):
    """Persons = connected components labelled by their smallest id, whatever the order and batching."""
    t = make_tenant(db, "prop", f"p-{uuid.uuid4().hex[:12]}")
    rows = data.draw(st.permutations(_link_rows(t, pairs)))
    for i in range(0, len(rows), chunk):
        land_rows(db, rows[i : i + chunk])
    # "0" is a placeholder id: links through it are ignored, in the truth as in the warehouse
    kept = [r for r in rows if "0" not in (r[5], orjson.loads(r[7])["$anon_distinct_id"])]
    groups: dict = {}
    for (_p, did), rep in people_of(kept).items():
        groups.setdefault(rep, set()).add(did)
    want = {did: min(members) for members in groups.values() for did in members if len(members) > 1}
    assert identity.persons(db, t["project_id"]) == want
    assert identity.inconsistencies(db, t["project_id"]) == {
        "split_links": 0,
        "bad_labels": 0,
        "unlinked_ids": 0,
    }


def test_inconsistencies_are_found(db):
    """The check itself can fail: each kind of damage is counted."""
    t = make_tenant(db)
    p = t["project_id"]
    land_rows(db, _link_rows(t, [("u1", "a1"), ("u2", "a2")]))
    assert set(identity.inconsistencies(db, p).values()) == {0}
    db.execute(
        "UPDATE identity_persons SET person_id = 'u2' WHERE project_id = %s AND distinct_id = 'u2'", (p,)
    )
    db.execute(
        "UPDATE identity_persons SET person_id = 'u1' WHERE project_id = %s AND person_id = 'a1'", (p,)
    )
    db.execute("INSERT INTO identity_persons VALUES (%s, 'stray', 'nobody')", (p,))
    assert identity.inconsistencies(db, p) == {"split_links": 1, "bad_labels": 2, "unlinked_ids": 1}
