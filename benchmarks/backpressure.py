"""Backpressure: bursts above capacity, `python -m benchmarks.backpressure --size …`.

One tenant whose key allows R events/s (bucket of one second) sends, open loop, batches with client-chosen
event ids: a steady phase at R/2, a burst at 3R, then R/4 (room to absorb the retried excess). The client honours every 429/503: it waits
`Retry-After` and resends the *same* body (same event ids); a transport error is retried after a second.
We count 202/429/503 answers and check every 429/503 carried `Retry-After`; at the end every event
acknowledged by a 202 must be in `events` exactly once (acknowledged == landed, duplicated == 0), and
nothing sent may be lost. Recovery: from the burst's end to the last non-202 answer (the retried backlog is
absorbed) and to landing having caught up with everything acknowledged by then.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid

import httpx
import orjson
import psycopg

from benchmarks.harness import Services, free_port, scratch_database, services_env, tansu
from benchmarks.load import Sample, latency_p95_series, open_loop, pct, per_second, tenant, warm_up
from benchmarks.report import scenario_cli
from pulseops.settings import Settings

CONNECTIONS = 128  # the client's requests in flight at most

SIZES = {
    "small": {"rate": 2_000, "batch": 50, "steady_s": 1, "burst_s": 2, "after_s": 6, "burst_x": 3},
    "medium": {"rate": 5_000, "batch": 50, "steady_s": 10, "burst_s": 10, "after_s": 30, "burst_x": 3},
    "large": {"rate": 10_000, "batch": 100, "steady_s": 20, "burst_s": 30, "after_s": 90, "burst_x": 3},
}


class Landed:
    """Samples the tenant's landed row count every 100 ms (a line of the throughput plot)."""

    def __init__(self, db_url: str, project_id: uuid.UUID) -> None:
        self.db_url, self.project_id = db_url, project_id
        self.points: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Landed:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        with psycopg.connect(self.db_url, autocommit=True) as conn:
            while not self._stop.is_set():
                n = conn.execute(
                    "SELECT count(*) FROM event_ids WHERE project_id = %s", (self.project_id,)
                ).fetchone()[0]
                self.points.append((time.monotonic(), n))
                time.sleep(0.1)


async def _send(url: str, key: str, cfg: dict, origin: float) -> tuple[list[Sample], set[str], int, int]:
    """Returns (every answer, acknowledged ids, events sent, requests started)."""
    answers: list[Sample] = []
    acked: set[str] = set()
    batch = cfg["batch"]
    sent = 0
    async with httpx.AsyncClient(
        base_url=url,
        headers={"X-API-Key": key},
        timeout=30,
        limits=httpx.Limits(max_connections=256, max_keepalive_connections=256),
    ) as client:
        # At most CONNECTIONS requests on the wire; the others wait here, not in httpx's pool, whose wait
        # list costs quadratic CPU (thousands of retrying requests once stalled a medium run for minutes).
        wire = asyncio.Semaphore(CONNECTIONS)

        async def post(body: bytes) -> httpx.Response:
            async with wire:
                return await client.post("/v1/batch", content=body)

        async def fire(_i: int, at: float) -> None:
            nonlocal sent
            events = [
                {"event": "burst", "distinct_id": f"u-{j}", "event_id": str(uuid.uuid4())}
                for j in range(batch)
            ]
            sent += batch
            body = orjson.dumps({"batch": events})
            t = at
            while True:
                try:
                    r = await post(body)
                except httpx.HTTPError:
                    answers.append(Sample(t, time.monotonic(), 0, batch))
                    await asyncio.sleep(1)
                    t = time.monotonic()
                    continue
                done = time.monotonic()
                retry = r.headers.get("retry-after")
                answers.append(Sample(t, done, r.status_code, batch, retry))
                if r.status_code == 202:
                    acked.update(r.json()["event_ids"])
                    return
                if r.status_code not in (429, 503):
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text[:300]}")
                # Retry-After, plus up to 50 % jitter as well-behaved clients add, so retries do not return
                # as one herd
                await asyncio.sleep(float(retry or 1) * (1 + 0.5 * random.random()))
                t = time.monotonic()

        rps = cfg["rate"] / batch
        phases = [
            (rps / 2, cfg["steady_s"]),
            (rps * cfg["burst_x"], cfg["burst_s"]),
            (rps / 4, cfg["after_s"]),
        ]
        start, started, pending = origin, 0, []
        for rate, seconds in phases:
            # each phase is its own open loop; earlier phases' retries keep running meanwhile
            pending.append(asyncio.create_task(open_loop(rate, seconds, fire, start=start)))
            start += seconds
            await asyncio.sleep(max(0.0, start - time.monotonic()))
        for n in await asyncio.gather(*pending):
            started += n.requests
    return answers, acked, sent, started


def _rows(db_url: str, project_id: uuid.UUID) -> tuple[int, int]:
    with psycopg.connect(db_url) as conn:
        return conn.execute(
            "SELECT count(*), count(DISTINCT event_id) FROM events WHERE project_id = %s", (project_id,)
        ).fetchone()


def run(size: str) -> dict:
    cfg = SIZES[size]
    settings = Settings()
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
        key, project = tenant(db_url, "bp-org", "burst", rate=cfg["rate"], burst=cfg["rate"])
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:8]), free_port())
        try:
            svc.start_ingest(workers=2)
            svc.start_worker()
            warm_up(svc.url, db_url)
            with Landed(db_url, project) as landed:
                origin = time.monotonic() + 0.5
                answers, acked, sent, requests = asyncio.run(_send(svc.url, key, cfg, origin))
                # landing catches up with everything acknowledged
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline and (
                    not landed.points or landed.points[-1][1] < len(acked)
                ):
                    time.sleep(0.1)
                time.sleep(0.3)
            rows, distinct = _rows(db_url, project)
        finally:
            svc.stop()
    burst_end = origin + cfg["steady_s"] + cfg["burst_s"]
    statuses: dict[int, int] = {}
    for a in answers:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    limited = [a for a in answers if a.status in (429, 503)]
    last_bad = max((a.done for a in answers if a.status != 202), default=burst_end)
    recovered_202 = max(0.0, last_bad - burst_end)
    # landing caught up: the first sample after the last non-202 answer where every event acked by then landed
    acked_by = sum(a.events for a in answers if a.status == 202 and a.done <= max(last_bad, burst_end))
    caught = next((t for t, n in landed.points if t >= max(last_bad, burst_end) and n >= acked_by), None)
    recovered_landed = caught - burst_end if caught is not None else float("nan")
    result = {
        "size": size,
        "config": cfg,
        "statuses": statuses,
        "requests_started": requests,
        "answers": len(answers),
        "retry_after_missing": sum(1 for a in limited if not a.retry_after),
        "events_sent": sent,
        "acknowledged": len(acked),
        "landed_rows": rows,
        "landed_distinct": distinct,
        "duplicated": rows - distinct,
        "lost": sent - len(acked),
        "recovery_all_202_s": recovered_202,
        "recovery_landed_s": recovered_landed,
        "latency_p95_ms": pct((a.latency * 1000 for a in answers), 0.95),
        "series": {
            "answers/s:202": per_second(((a.done, 1) for a in answers if a.status == 202), origin, sum),
            "answers/s:429": per_second(((a.done, 1) for a in answers if a.status == 429), origin, sum),
            "answers/s:503": per_second(((a.done, 1) for a in answers if a.status == 503), origin, sum),
            "events/s:acknowledged": per_second(
                ((a.done, a.events) for a in answers if a.status == 202), origin, sum
            ),
            "events/s:landed": _rate(landed.points, origin),
            "latency p95 (ms):all answers": latency_p95_series(answers, origin),
        },
    }
    ok = rows == len(acked) == distinct and result["lost"] == 0
    result["targets"] = [
        {"what": "backpressure: every 429/503 carries Retry-After", "target": "0 missing", "kind": "check",
         "measured": f"{result['retry_after_missing']} missing of {len(limited)}",
         "met": result["retry_after_missing"] == 0},
        {"what": "backpressure: no loss, no duplicate", "target": "sent == acknowledged == landed, 0 duplicated",
         "kind": "check", "met": ok,
         "measured": f"sent {sent:,}, acknowledged {len(acked):,}, landed {rows:,}, duplicated {rows - distinct}"},
        {"what": "backpressure: burst is limited (429s seen)", "target": "> 0 429", "kind": "check",
         "measured": f"{statuses.get(429, 0)} x 429", "met": statuses.get(429, 0) > 0},
        {"what": "backpressure: recovery after the burst (all-202 / landed)", "target": "recorded",
         "measured": f"{recovered_202:.1f} s / {recovered_landed:.1f} s", "met": None},
    ]  # fmt: skip
    return result


def _rate(points: list[tuple[float, int]], origin: float) -> list[tuple[float, float]]:
    """Landed rows per second from the sampled cumulative counts."""
    out, prev = [], None
    for second, last in per_second(points, origin, lambda v: v[-1]):
        if prev is not None:
            out.append((second, last - prev))
        prev = last
    return out


def render(r: dict) -> str:
    c = r["config"]
    return "\n".join(
        [
            f"key limit {c['rate']:,} events/s (bucket 1 s); batches of {c['batch']}; open loop: "
            f"{c['steady_s']} s at {c['rate'] // 2:,} events/s, {c['burst_s']} s burst at "
            f"{c['rate'] * c['burst_x']:,} events/s, {c['after_s']} s at {c['rate'] // 4:,} events/s; "
            f"client waits Retry-After and resends the same event ids",
            f"answers {r['answers']:,} for {r['requests_started']:,} requests: statuses {r['statuses']}; "
            f"429/503 without Retry-After: {r['retry_after_missing']}",
            f"events sent {r['events_sent']:,}, acknowledged {r['acknowledged']:,}, landed {r['landed_rows']:,} "
            f"(distinct {r['landed_distinct']:,}), duplicated {r['duplicated']}, lost {r['lost']}",
            f"acknowledged == landed: {r['acknowledged'] == r['landed_rows']}",
            f"recovery from the burst's end: all-202 after {r['recovery_all_202_s']:.1f} s, landing caught up "
            f"after {r['recovery_landed_s']:.1f} s; p95 latency of all answers {r['latency_p95_ms']:.0f} ms",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    scenario_cli("backpressure", SIZES, run, render, argv, doc=__doc__)


if __name__ == "__main__":
    main()
