"""The demo looks like a live product: history is history (hardly any late arrivals), live events keep coming."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx

from pulseops import demo
from tests.fixtures.system import wait_until
from warehouse.health import project_health


def test_demo_history_lands_as_history_with_a_small_late_share(db):
    projects = demo.ensure_projects(db)
    generated, landed = demo.load_history(db, projects, events=6_000, days=10, seed=7)
    assert generated == 6_000 and 5_800 < landed < generated  # the generator's exact re-sends land once
    assert demo.load_history(db, projects, events=6_000, days=10, seed=7)[1] == 0  # the same history: no-op
    late = events = 0
    for p in projects.values():
        health = project_health(db, p.project_id, datetime.now(UTC), days=11, late_lag_s=3600)
        for day in health.late_by_day:
            if day.events >= 50:
                assert day.late / day.events < 0.10, (p.tier, day)
            late, events = late + day.late, events + day.events
    assert events == landed
    assert 0.005 < late / events < 0.05  # the generator's delayed uploads are there, as late arrivals


def test_live_traffic_goes_through_ingest_and_lands_now(system_factory, db):
    system = system_factory()
    system.start_ingest()
    system.start_worker()
    projects = demo.ensure_projects(db)
    keys = demo.live_keys(db, projects)
    assert demo.live_keys(db, projects) != keys  # a new run replaces the keys; the old ones are revoked
    assert (
        httpx.post(
            f"{system.url}/v1/batch", json={"batch": []}, headers={"X-API-Key": keys["hot"]}
        ).status_code
        == 401
    )
    keys = demo.live_keys(db, projects)
    traffic = demo.LiveTraffic(system.url, keys, rate=40, seed=3)
    with httpx.Client(timeout=10) as client:
        for _ in range(3):
            traffic.tick(client)
    assert traffic.sent > 0 and traffic.failures == 0

    def landed() -> int:
        return db.execute(
            "SELECT count(*) FROM events WHERE received_at > now() - interval '5 minutes'"
        ).fetchone()[0]

    wait_until(lambda: landed() == traffic.sent, 60, "live demo events landed")
    lag = db.execute("SELECT max(received_at - event_time) FROM events").fetchone()[0]
    assert lag.total_seconds() < 5  # stamped now: live, not late
