"""Builders for raw data: land generator output straight into the warehouse, and ground truth in any zone."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson
import psycopg

from benchmarks.generator import GeneratedEvent
from warehouse.landing import PartitionCache, land_batch


def landing_rows(
    events: Iterable[GeneratedEvent], projects: dict[str, tuple[uuid.UUID, uuid.UUID]], received_at: datetime
) -> list[tuple]:
    """Distinct events as landing rows; `projects` maps tenant -> (org_id, project_id)."""
    rows: dict[tuple, tuple] = {}
    for ev in events:
        p = ev.payload
        org_id, project_id = projects[ev.tenant]
        ts = datetime.fromisoformat(p["timestamp"]).astimezone(UTC)
        received = received_at if ev.is_late else ts + timedelta(seconds=1)
        key = (project_id, p["event_id"])
        rows.setdefault(
            key,
            (project_id, ts, uuid.UUID(p["event_id"]), org_id, p["event"], p["distinct_id"], received,
             orjson.dumps(p.get("properties") or {}).decode()),
        )  # fmt: skip
    return list(rows.values())


def land_rows(conn: psycopg.Connection, rows: list[tuple], chunk: int = 20_000) -> int:
    cache = PartitionCache()
    landed = 0
    for i in range(0, len(rows), chunk):
        landed += land_batch(conn, rows[i : i + chunk], partitions=cache).landed
    return landed


class ZoneTruth:
    """Exact counts of landing rows in one IANA zone, computed in Python with zoneinfo."""

    def __init__(self, rows: Iterable[tuple], tz: str) -> None:
        zone = ZoneInfo(tz)
        self.daily: Counter = Counter()
        self.hourly: Counter = Counter()
        self.users: dict[tuple[uuid.UUID, date], set[str]] = defaultdict(set)
        for project_id, ts, _eid, _org, _name, distinct_id, _recv, _props in rows:
            local = ts.astimezone(zone)
            self.daily[(project_id, local.date())] += 1
            hour = local.replace(minute=0, second=0, microsecond=0)
            self.hourly[(project_id, hour.replace(tzinfo=None), local.utcoffset())] += 1
            self.users[(project_id, local.date())].add(distinct_id)

    def active(self, project_id: uuid.UUID, day: date, window: int) -> int:
        seen: set[str] = set()
        for i in range(window):
            seen |= self.users.get((project_id, day - timedelta(days=i)), set())
        return len(seen)
