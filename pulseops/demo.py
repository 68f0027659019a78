"""The demo of `pulseops up --demo` / `pulseops demo`: three tenants, a month of history, and live traffic.

History is loaded as history: the generated events are landed straight into the warehouse (the landing
worker's own `land_batch`) with the time they would have arrived, a second or so after they happened, and the
generator's late share (delayed mobile uploads) hours later. Sent over HTTP they all arrived *now*, so the
pipeline page counted every historic event as a late arrival (100 % late on each demo day).

Live traffic: `python -m pulseops.demo live` (a service of `pulseops up --demo`) sends a few events per second
with the current time through the public ingest API, so the overview's live counters move and the whole
path (ingest -> broker -> landing -> aggregates) is exercised while the demo runs.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import signal
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import orjson
import psycopg

from pulseops.generator import GeneratedEvent, GeneratorConfig, TenantSpec, generate
from pulseops.settings import Settings, get_settings

log = logging.getLogger("pulseops.demo")

DEMO_TENANTS = (("acme", "web", "hot"), ("acme", "mobile", "medium"), ("globex", "shop", "quiet"))
TIERS = [TenantSpec("hot", 0.6, 2000), TenantSpec("medium", 0.3, 800), TenantSpec("quiet", 0.1, 150)]
LATE_RATIO = 0.02  # delayed uploads: late, but far below the pipeline page's 10 % warning
LIVE_KEY_NAME = "demo live"


@dataclass(frozen=True)
class DemoProject:
    tier: str
    org_slug: str
    project_slug: str
    org_id: uuid.UUID
    project_id: uuid.UUID


def ensure_projects(conn: psycopg.Connection) -> dict[str, DemoProject]:
    """The demo orgs and projects by tier (created if missing; the same ones on every run)."""
    from warehouse.tenants import ensure_org, ensure_project

    out = {}
    for org_slug, project_slug, tier in DEMO_TENANTS:
        org_id = ensure_org(conn, org_slug)
        out[tier] = DemoProject(
            tier, org_slug, project_slug, org_id, ensure_project(conn, org_id, project_slug)
        )
    return out


def history_rows(
    events: Iterable[GeneratedEvent], projects: dict[str, DemoProject], now: datetime, seed: int = 0
) -> list[tuple]:
    """Landing rows (warehouse.landing.LandingRow) of distinct events, each received when it would have been:
    0.2-5 s after it happened, or for LATE_RATIO of them (delayed uploads) 1.5-30 h after, never after `now`.
    Which ones are late is drawn here, on every day alike: the generator's own late events all fall in the
    last few days before its end (its model is a replay sent now), which made those days 20 % late."""
    rng = random.Random(seed)  # noqa: S311 - reproducible synthetic arrival delays, never a secret
    rows: dict[tuple, tuple] = {}
    for ev in events:
        p = ev.payload
        project = projects[ev.tenant]
        key = (project.project_id, p["event_id"])
        if key in rows:  # the generator's exact re-sends: the ledger would keep the first anyway
            continue
        ts = datetime.fromisoformat(p["timestamp"]).astimezone(UTC)
        late = rng.random() < LATE_RATIO
        delay = rng.uniform(1.5 * 3600, 30 * 3600) if late else rng.uniform(0.2, 5.0)
        received = min(now, ts + timedelta(seconds=delay))
        rows[key] = (
            project.project_id, ts, uuid.UUID(p["event_id"]), project.org_id, p["event"], p["distinct_id"],
            received, orjson.dumps(p.get("properties") or {}).decode(),
        )  # fmt: skip
    return list(rows.values())


def load_history(
    conn: psycopg.Connection, projects: dict[str, DemoProject], events: int, days: int, seed: int
) -> tuple[int, int]:
    """Generate `events` over `days` up to now and land them as history; returns (generated, landed)."""
    from warehouse.landing import PartitionCache, land_batch

    now = datetime.now(UTC)
    config = GeneratorConfig(
        seed=seed, end=now, total_events=events, days=days, tenants=TIERS, late_ratio=0.0
    )
    stream = list(generate(config))
    rows = history_rows(stream, projects, now, seed)
    cache = PartitionCache()
    landed = 0
    for i in range(0, len(rows), 20_000):
        landed += land_batch(conn, rows[i : i + 20_000], partitions=cache).landed
    return len(stream), landed


def demo_seed(day: date | None = None) -> int:
    return int((day or date.today()).strftime("%Y%m%d"))


# -- live traffic ------------------------------------------------------------------------------------------
class LiveTraffic:
    """Sends about `rate` events per second, split over the demo tiers by weight, with the current time.

    Payloads come from the generator (its event names, users and properties), re-stamped with a fresh
    event_id and now, so live events look like the history."""

    def __init__(self, url: str, keys: dict[str, str], rate: float, seed: int) -> None:
        self.url = url.rstrip("/")
        self.keys = keys
        self.rate = rate
        self.rng = random.Random(seed)  # noqa: S311 - synthetic traffic, never a secret
        pool = GeneratorConfig(
            seed=seed, days=1, total_events=5_000, tenants=TIERS, late_ratio=0.0, duplicate_ratio=0.0
        )
        self.pool: dict[str, list[dict]] = {}
        for ev in generate(pool):
            self.pool.setdefault(ev.tenant, []).append(ev.payload)
        self.sent = 0
        self.failures = 0

    def batch(self, tier: str, n: int) -> list[dict]:
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        out = []
        for _ in range(n):
            p = dict(self.rng.choice(self.pool[tier]))
            p["event_id"] = str(uuid.uuid4())
            p["timestamp"] = now
            out.append(p)
        return out

    def tick(self, client) -> None:
        """One second's worth: a Poisson-like count per tier (so the counters move unevenly, as real ones)."""
        for spec in TIERS:
            mean = self.rate * spec.weight / sum(t.weight for t in TIERS)
            trials = max(1, math.ceil(mean * 4))  # binomial with mean `mean`
            n = sum(self.rng.random() < mean / trials for _ in range(trials))
            if n == 0:
                continue
            try:
                r = client.post(
                    f"{self.url}/v1/batch", json={"batch": self.batch(spec.name, n)},
                    headers={"X-API-Key": self.keys[spec.name]},
                )  # fmt: skip
                if r.status_code == 202:
                    self.sent += n
                    self.failures = 0
                    continue
                problem = f"HTTP {r.status_code}: {r.text[:200]}"
            except Exception as exc:  # ingest restarting: try again next second
                problem = str(exc)
            self.failures += 1
            if self.failures in (5, 60) or self.failures % 600 == 0:  # not one line per second
                log.warning("live demo events not accepted %d times in a row (%s)", self.failures, problem)


def live_keys(conn: psycopg.Connection, projects: dict[str, DemoProject]) -> dict[str, str]:
    """A fresh ingest key per demo project for the live sender; the previous run's are revoked."""
    from warehouse.tenants import create_api_key, list_api_keys, revoke_api_key

    for org_id in {p.org_id for p in projects.values()}:
        for k in list_api_keys(conn, org_id):
            if k.name == LIVE_KEY_NAME and k.revoked_at is None:
                revoke_api_key(conn, k.id)
    return {
        tier: create_api_key(
            conn, org_id=p.org_id, project_id=p.project_id, kind="ingest", name=LIVE_KEY_NAME
        )[1]
        for tier, p in projects.items()
    }


def run_live(settings: Settings, rate: float, url: str | None, stop: threading.Event) -> None:
    import httpx

    from warehouse.db import connect

    url = url or f"http://{settings.ingest.host}:{settings.ingest.port}"
    with connect(settings.db.url, autocommit=True) as conn:
        keys = live_keys(conn, ensure_projects(conn))
    traffic = LiveTraffic(url, keys, rate, seed=int(time.time()))
    with httpx.Client(timeout=2) as client:  # started with the API: wait for it quietly
        while not stop.is_set():
            try:
                if client.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            stop.wait(1.0)
    log.info("sending ~%g live demo events/s to %s", rate, url)
    reported = time.monotonic()
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            started = time.monotonic()
            traffic.tick(client)
            if started - reported >= 600:
                log.info("%d live demo events sent", traffic.sent)
                reported = started
            stop.wait(max(0.0, 1.0 - (time.monotonic() - started)))


def main(argv: list[str] | None = None) -> None:
    from pulseops.logs import configure

    parser = argparse.ArgumentParser(prog="python -m pulseops.demo", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    live = sub.add_parser("live", help="send a trickle of live events to the demo projects until stopped")
    live.add_argument("--rate", type=float, default=3.0, help="events per second over all demo projects")
    live.add_argument("--url", help="ingest base URL (default from settings)")
    args = parser.parse_args(argv)
    settings = get_settings()
    configure("demo-live", settings.log)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    run_live(settings, args.rate, args.url, stop)


if __name__ == "__main__":
    main()
