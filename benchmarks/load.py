"""Load-generation helpers shared by the suite's HTTP scenarios (skew, backpressure, freshness).

Open loop: requests are started on a fixed schedule whether or not earlier ones have answered, and latency
is measured from the *scheduled* start, so a slow server shows up as latency instead of silently lowering
the offered rate (coordinated omission).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx
import psycopg

from warehouse.tenants import create_api_key, ensure_org, ensure_project


@dataclass(slots=True)
class Sample:
    """One HTTP answer. `t` and `done` are time.monotonic() values (one clock for every process)."""

    t: float
    done: float
    status: int
    events: int
    retry_after: str | None = None

    @property
    def latency(self) -> float:
        return self.done - self.t


def pct(values: Iterable[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def change(before: float, after: float) -> float:
    """Relative change in percent (positive = worse for latencies)."""
    return (after - before) / before * 100 if before else float("nan")


async def open_loop(
    rate: float, seconds: float, fire: Callable[[int, float], Awaitable[None]], start: float | None = None
) -> int:
    """Call `fire(i, scheduled_time)` `rate` times a second for `seconds`, never waiting for an answer.

    Returns the number of requests started; waits for all of them before returning."""
    start = time.monotonic() if start is None else start
    interval = 1 / rate
    tasks: set[asyncio.Task] = set()
    i = 0
    while True:
        at = start + i * interval
        if at - start >= seconds:
            break
        delay = at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(fire(i, at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    while tasks:
        await asyncio.gather(*tasks)
    return i


def per_second(
    points: Iterable[tuple[float, float]], origin: float, fn: Callable[[list[float]], float]
) -> list[tuple[float, float]]:
    """Group (time, value) points into whole seconds since `origin`; one (second, fn(values)) per second."""
    buckets: dict[int, list[float]] = defaultdict(list)
    for t, v in points:
        buckets[int(t - origin)].append(v)
    return [(float(s), fn(vs)) for s, vs in sorted(buckets.items())]


def latency_p95_series(samples: list[Sample], origin: float) -> list[tuple[float, float]]:
    return per_second(((s.t, s.latency * 1000) for s in samples), origin, lambda v: pct(v, 0.95))


def accepted_series(samples: list[Sample], origin: float) -> list[tuple[float, float]]:
    """Events acknowledged (202) per second, by answer time."""
    return per_second(((s.done, s.events) for s in samples if s.status == 202), origin, sum)


def tenant(
    db_url: str, org: str, project: str, kind: str = "ingest", rate: float = 1e9, burst: float | None = None
) -> tuple[str, uuid.UUID]:
    """(key, project id) for a fresh org/project; rate and burst are the key's own limit (events or requests/s)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        org_id = ensure_org(conn, org)
        project_id = ensure_project(conn, org_id, project)
        _, key = create_api_key(
            conn, org_id=org_id, project_id=project_id, kind=kind, rate_per_s=rate, burst=burst or rate
        )
    return key, project_id


def warm_up(url: str, db_url: str, timeout: float = 60) -> None:
    """Send one batch for a throwaway tenant and wait until it landed: the worker has joined its consumer
    group and created its partitions, so what follows measures landing, not start-up."""
    key, project = tenant(db_url, "warm-up", "warm-up")
    events = [{"event": "warm_up", "distinct_id": f"w-{i}"} for i in range(10)]
    deadline = time.monotonic() + timeout
    while (
        httpx.post(f"{url}/v1/batch", json={"batch": events}, headers={"X-API-Key": key}).status_code != 202
    ):
        if time.monotonic() > deadline:
            raise TimeoutError("ingest never answered 202 during warm-up")
        time.sleep(0.5)
    with psycopg.connect(db_url, autocommit=True) as conn:
        while not conn.execute(
            "SELECT 1 FROM event_ids WHERE project_id = %s LIMIT 1", (project,)
        ).fetchone():
            if time.monotonic() > deadline:
                raise TimeoutError("warm-up events never landed")
            time.sleep(0.1)


class Visibility:
    """Polls `event_ids` (the landing ledger, written in the landing transaction) for watched event ids.

    `watch(id, acked_at)` after the 202; `delays` collects (acked_at, seconds until the row was visible)."""

    def __init__(self, db_url: str, project_id: uuid.UUID, interval: float = 0.01) -> None:
        self.db_url, self.project_id, self.interval = db_url, project_id, interval
        self.pending: dict[uuid.UUID, float] = {}
        self.delays: list[tuple[float, float]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Visibility:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def watch(self, event_id: str | uuid.UUID, acked_at: float) -> None:
        with self._lock:
            self.pending[uuid.UUID(str(event_id))] = acked_at

    def drain(self, timeout: float = 30) -> int:
        """Wait until every watched id is visible (or timeout); returns how many stayed unseen."""
        deadline = time.monotonic() + timeout
        while self.pending and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.pending)

    def take(self) -> list[tuple[float, float]]:
        """The delays collected so far, and start a fresh list (phases of one run)."""
        with self._lock:
            out, self.delays = self.delays, []
        return out

    def _poll(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self._stop.is_set():
                with self._lock:
                    ids = list(self.pending)
                if ids:
                    seen = conn.execute(
                        "SELECT event_id FROM event_ids WHERE project_id = %s AND event_id = ANY(%s)",
                        (self.project_id, ids),
                    ).fetchall()
                    now = time.monotonic()
                    with self._lock:
                        for (eid,) in seen:
                            acked = self.pending.pop(eid)
                            self.delays.append((acked, now - acked))
                time.sleep(self.interval)
