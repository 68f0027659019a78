"""Ground truth for read queries, computed in Python (zoneinfo, plain loops) from landing rows."""

from __future__ import annotations

import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson


@dataclass(frozen=True)
class Row:
    project_id: uuid.UUID
    ts: datetime
    event_id: uuid.UUID
    name: str
    distinct_id: str
    props: dict


def rows_of(landing_rows: Iterable[tuple]) -> list[Row]:
    return [Row(r[0], r[1], r[2], r[4], r[5], orjson.loads(r[7])) for r in landing_rows]


class Truth:
    def __init__(self, rows: list[Row], project_id: uuid.UUID, tz: str, start: date, end: date) -> None:
        zone = ZoneInfo(tz)
        self.zone = zone
        self.start, self.end = start, end
        self.local = [(r, r.ts.astimezone(zone)) for r in rows if r.project_id == project_id]
        self.in_range = [(r, loc) for r, loc in self.local if start <= loc.date() <= end]

    def select(self, names: tuple[str, ...] | None = None, where: Callable[[dict], bool] | None = None):
        return [
            (r, loc)
            for r, loc in self.in_range
            if (names is None or r.name in names) and (where is None or where(r.props))
        ]

    def counts(self, granularity: str, **kw) -> dict[tuple[datetime, timedelta], int]:
        out: Counter = Counter()
        for _r, loc in self.select(**kw):
            if granularity == "hour":
                key = (loc.replace(minute=0, second=0, microsecond=0, tzinfo=None), loc.utcoffset())
            else:
                day = datetime.combine(loc.date(), datetime.min.time())
                if granularity == "week":
                    day -= timedelta(days=day.weekday())
                elif granularity == "month":
                    day = day.replace(day=1)
                key = (day, day.replace(tzinfo=self.zone).utcoffset())
            out[key] += 1
        return dict(out)

    def total(self, **kw) -> int:
        return len(self.select(**kw))

    def top(self, limit: int) -> list[tuple[str, int]]:
        c = Counter(r.name for r, _ in self.in_range)
        return sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]

    def active(self, window: int, names: tuple[str, ...] | None = None) -> list[tuple[date, int]]:
        users: dict[date, set[str]] = defaultdict(set)
        for r, loc in self.local:
            if names is None or r.name in names:
                users[loc.date()].add(r.distinct_id)
        out = []
        day = self.start
        while day <= self.end:
            seen: set[str] = set()
            for i in range(window):
                seen |= users.get(day - timedelta(days=i), set())
            out.append((day, len(seen)))
            day += timedelta(days=1)
        return out

    def breakdown(self, key: str, **kw) -> dict[str | None, tuple[int, int]]:
        events: Counter = Counter()
        users: dict = defaultdict(set)
        for r, _ in self.select(**kw):
            v = orjson.dumps(r.props[key]).decode() if key in r.props else None
            events[v] += 1
            users[v].add(r.distinct_id)
        return {v: (n, len(users[v])) for v, n in events.items()}
