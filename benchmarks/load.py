"""Load-generation helpers shared by the suite's HTTP scenarios (skew, backpressure, freshness).

Open loop: requests are started on a fixed schedule whether or not earlier ones have answered, and latency
is measured from the *scheduled* start, so a slow server shows up as latency instead of silently lowering
the offered rate (coordinated omission). A slow *generator* shows up too: `open_loop` reports the rate it
really started requests at (`Offer`), and `client_ceiling` measures what the same client does against
`/healthz` in the same run, so a scenario can say its generator could not offer what a target needs.

`ledger_check` checks every acknowledged event id against the landing ledger (not a sample of probes).
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class Offer:
    """What an open loop really offered: `requests` started over `seconds` (at least the planned duration,
    longer when the generator fell behind its schedule), `behind_s` the worst lateness of a start."""

    requests: int
    seconds: float
    behind_s: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("nan")


async def open_loop(
    rate: float, seconds: float, fire: Callable[[int, float], Awaitable[None]], start: float | None = None
) -> Offer:
    """Call `fire(i, scheduled_time)` `rate` times a second for `seconds`, never waiting for an answer.

    Returns what was offered (a generator that cannot keep its schedule offers less than `rate`); waits for
    every fired call before returning."""
    start = time.monotonic() if start is None else start
    interval = 1 / rate
    tasks: set[asyncio.Task] = set()
    i = 0
    behind = 0.0
    last = start
    while True:
        at = start + i * interval
        if at - start >= seconds:
            break
        now = time.monotonic()
        if at > now:
            await asyncio.sleep(at - now)
        else:
            behind = max(behind, now - at)
        last = time.monotonic()
        task = asyncio.create_task(fire(i, at))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    while tasks:
        await asyncio.gather(*tasks)
    return Offer(i, max(seconds, last - start), behind)


def limits(connections: int = 256) -> httpx.Limits:
    return httpx.Limits(max_connections=connections, max_keepalive_connections=connections)


async def client_ceiling(
    url: str,
    seconds: float,
    body: Callable[[], bytes] | None = None,
    connections: int = 8,
    headers: dict[str, str] | None = None,
) -> dict:
    """The generator's own ceiling: the scenario's client (httpx), building the same body per request
    (`body`), `connections` requests in flight, against `GET /healthz` of the same API processes.

    An open-loop generator cannot offer more requests/s than this on this machine right now. 8 in flight is
    httpx's best case here: with 64 in flight its pool managed about a tenth of it (measured against
    /healthz on this machine), so an open loop with many requests outstanding offers less still, which its
    `Offer` shows."""
    done = 0
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(
        base_url=url, headers=headers or {}, timeout=30, limits=limits(connections)
    ) as client:
        stop = time.monotonic() + seconds

        async def worker() -> None:
            nonlocal done
            while time.monotonic() < stop:
                content = body() if body is not None else None
                r = await client.request("GET", "/healthz", content=content)
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                done += 1

        started = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(connections)))
        took = time.monotonic() - started
    return {
        "rps": done / took,
        "requests": done,
        "seconds": took,
        "statuses": statuses,
        "connections": connections,
    }


def ceiling_in_process(url: str, seconds: float, body: Callable[[], bytes] | None = None) -> dict:
    """`client_ceiling` on a fresh event loop (for a generator process)."""
    return asyncio.run(client_ceiling(url, seconds, body))


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
    db_url: str,
    org: str,
    project: str,
    kind: str = "ingest",
    rate: float | None = 1e9,
    burst: float | None = None,
) -> tuple[str, uuid.UUID]:
    """(key, project id) for a fresh org/project; rate and burst are the key's own limit (events or requests/s),
    None = the product's defaults (`PULSEOPS_INGEST__RATE_PER_S` / `__BURST`)."""
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


def wait_landed(db_url: str, project_ids: list[uuid.UUID], count: int, timeout: float) -> float | None:
    """Seconds until the ledger holds `count` rows for these projects, or None at the timeout."""
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn:
        while True:
            n = conn.execute(
                "SELECT count(*) FROM event_ids WHERE project_id = ANY(%s)", (project_ids,)
            ).fetchone()[0]
            if n >= count:
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                return None
            time.sleep(0.2)


def ledger_check(
    db_url: str, project_ids: list[uuid.UUID], ids: Iterable[uuid.UUID], wait_s: float = 0.0
) -> dict[str, Any]:
    """Every acknowledged id (all of them, not a sample) against the landing ledger, set-based: the ids are
    COPYed into a temp table and anti-joined with `event_ids`, again every 0.5 s until none is missing or
    `wait_s` passed (a row count cannot tell: requests in flight when a generator stopped land too, with no
    202 seen). duplicated = (project, event_id) pairs with more than one row in `events`; unacknowledged =
    ledger rows of these projects no 202 vouched for."""
    started = time.monotonic()
    with psycopg.connect(db_url, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE acked (event_id uuid NOT NULL)")
        with conn.transaction(), cur.copy("COPY acked (event_id) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["uuid"])
            for event_id in ids:
                copy.write_row((event_id,))
        cur.execute("CREATE TEMP TABLE acked_distinct AS SELECT DISTINCT event_id FROM acked")
        cur.execute("ANALYZE acked_distinct")
        acknowledged = cur.execute("SELECT count(*) FROM acked").fetchone()[0]
        distinct = cur.execute("SELECT count(*) FROM acked_distinct").fetchone()[0]
        while True:
            missing = cur.execute(
                "SELECT count(*) FROM acked_distinct a WHERE NOT EXISTS "
                "(SELECT 1 FROM event_ids e WHERE e.project_id = ANY(%s) AND e.event_id = a.event_id)",
                (project_ids,),
            ).fetchone()[0]
            if missing == 0 or time.monotonic() - started >= wait_s:
                break
            time.sleep(0.5)
        waited = time.monotonic() - started
        sample = [
            str(r[0])
            for r in cur.execute(
                "SELECT event_id FROM acked_distinct a WHERE NOT EXISTS (SELECT 1 FROM event_ids e "
                "WHERE e.project_id = ANY(%s) AND e.event_id = a.event_id) ORDER BY event_id LIMIT 10",
                (project_ids,),
            )
        ]
        ledger = cur.execute(
            "SELECT count(*) FROM event_ids WHERE project_id = ANY(%s)", (project_ids,)
        ).fetchone()[0]
        duplicated = cur.execute(
            "SELECT count(*) FROM (SELECT 1 FROM events WHERE project_id = ANY(%s) "
            "GROUP BY project_id, event_id HAVING count(*) > 1) d",
            (project_ids,),
        ).fetchone()[0]
        # a missing event may have been set aside rather than lost: say which
        dead, reasons = cur.execute(
            "SELECT count(*), coalesce(string_agg(DISTINCT reason, ', '), '') FROM dead_letters "
            "WHERE project_id = ANY(%s) OR project_id IS NULL",
            (project_ids,),
        ).fetchone()
    return {
        "acknowledged": acknowledged,
        "acknowledged_twice": acknowledged - distinct,
        "landed": distinct - missing,
        "missing": missing,
        "duplicated": duplicated,
        "unacknowledged": ledger - (distinct - missing),
        "missing_sample": sample,
        "dead_letter_messages": dead,
        "dead_letter_reasons": reasons,
        "waited_s": round(waited, 1),
    }


def ledger_text(ledger: dict[str, Any]) -> str:
    """'acknowledged N, acknowledged_twice 0, landed N, missing 0, duplicated 0, …' plus what explains a loss."""
    text = ", ".join(f"{k} {v:,}" for k, v in ledger.items() if isinstance(v, int | float))
    if ledger.get("dead_letter_messages"):
        text += f"; dead letters: {ledger['dead_letter_reasons']}"
    if ledger.get("missing"):
        text += f"; missing ids sampled: {', '.join(ledger['missing_sample'])}"
    return text


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
