"""Backpressure: bursts above capacity, `python -m benchmarks.backpressure --size …`.

One tenant whose key allows R events/s (bucket of one second) sends, open loop, batches with client-chosen
event ids: a steady phase at R/2, a burst at 3R, then R/4 (room to absorb the retried excess). The client honours every 429/503: it waits
`Retry-After` and resends the *same* body (same event ids); a transport error is retried after a second.

The burst is sized from the key's limit, and judged only if it was really offered: the rate of first sends
put on the wire during the burst (not merely scheduled: at most CONNECTIONS requests are on the wire) must
reach BURST_REACHED x 3R, and the same client against `/healthz` in the same run must be able to offer it.
We count 202/429/503 answers and check every 429/503 carried `Retry-After`; at the end every id a 202
acknowledged is checked against the landing ledger (`benchmarks.load.ledger_check`: missing, duplicated).
Recovery: from the burst's end to the last non-202 answer, from the data; with no non-202 answer it is not
measured, and with one in the run's last second it is "not recovered within the run".
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

from benchmarks import verdict
from benchmarks.harness import Services, free_port, scratch_database, services_env, tansu
from benchmarks.load import (
    Sample,
    client_ceiling,
    latency_p95_series,
    ledger_check,
    open_loop,
    pct,
    per_second,
    tenant,
    warm_up,
)
from benchmarks.report import scenario_cli
from pulseops.settings import Settings

CONNECTIONS = 128  # the client's requests in flight at most
BURST_REACHED = 0.9  # share of the planned burst rate the wire must carry for the burst to count as offered

SIZES = {
    "small": {"rate": 2_000, "batch": 50, "steady_s": 1, "burst_s": 2, "after_s": 6, "burst_x": 3},
    "medium": {"rate": 5_000, "batch": 100, "steady_s": 10, "burst_s": 10, "after_s": 30, "burst_x": 3},
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


def _body(batch: int) -> bytes:
    events = [
        {"event": "burst", "distinct_id": f"u-{j}", "event_id": str(uuid.uuid4())} for j in range(batch)
    ]
    return orjson.dumps({"batch": events})


async def _send(
    url: str, key: str, cfg: dict, origin: float, wire: list[float]
) -> tuple[list[Sample], list[str], int, int]:
    """Returns (every answer, acknowledged ids, events sent, requests started); `wire` gets the time each
    request's first send went on the wire (retries not included)."""
    answers: list[Sample] = []
    acked: list[str] = []
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
        on_wire = asyncio.Semaphore(CONNECTIONS)

        async def post(body: bytes, first: bool) -> httpx.Response:
            async with on_wire:
                if first:
                    wire.append(time.monotonic())
                return await client.post("/v1/batch", content=body)

        async def fire(_i: int, at: float) -> None:
            nonlocal sent
            sent += batch
            body = _body(batch)  # the same body (ids) is resent after a 429/503
            t = at
            first = True
            while True:
                try:
                    r = await post(body, first)
                    first = False
                except httpx.HTTPError:
                    first = False
                    answers.append(Sample(t, time.monotonic(), 0, batch))
                    await asyncio.sleep(1)
                    t = time.monotonic()
                    continue
                done = time.monotonic()
                retry = r.headers.get("retry-after")
                answers.append(Sample(t, done, r.status_code, batch, retry))
                if r.status_code == 202:
                    acked.extend(r.json()["event_ids"])
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


def run(size: str) -> dict:
    cfg = SIZES[size]
    settings = Settings()
    wire: list[float] = []
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
        key, project = tenant(db_url, "bp-org", "burst", rate=cfg["rate"], burst=cfg["rate"])
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:8]), free_port())
        try:
            svc.start_ingest(workers=2)
            svc.start_worker()
            warm_up(svc.url, db_url)
            ceiling = asyncio.run(client_ceiling(svc.url, 2, lambda: _body(cfg["batch"])))
            with Landed(db_url, project) as landed:
                origin = time.monotonic() + 0.5
                answers, acked, sent, requests = asyncio.run(_send(svc.url, key, cfg, origin, wire))
                ledger = ledger_check(db_url, [project], (uuid.UUID(e) for e in acked), wait_s=120)
        finally:
            svc.stop()
    burst_start = origin + cfg["steady_s"]
    burst_end = burst_start + cfg["burst_s"]
    run_end = burst_end + cfg["after_s"]
    statuses: dict[int, int] = {}
    for a in answers:
        statuses[a.status] = statuses.get(a.status, 0) + 1
    limited = [a for a in answers if a.status in (429, 503)]
    bad = [a.done for a in answers if a.status != 202]
    if not bad:
        recovery, recovery_note = None, "not measured: no answer other than 202"
    elif max(bad) > run_end - 1:
        recovery, recovery_note = (
            None,
            f"not recovered within the run (a non-202 at {max(bad) - burst_end:.1f} s)",
        )
    else:
        recovery, recovery_note = max(0.0, max(bad) - burst_end), None
    burst_offered = sum(1 for t in wire if burst_start <= t < burst_end) * cfg["batch"] / cfg["burst_s"]
    planned = cfg["rate"] * cfg["burst_x"]
    result = {
        "size": size,
        "config": cfg,
        "statuses": statuses,
        "requests_started": requests,
        "answers": len(answers),
        "retry_after_missing": sum(1 for a in limited if not a.retry_after),
        "limited": len(limited),
        "events_sent": sent,
        "acknowledged": len(acked),
        "ledger": ledger,
        "lost": sent - len(set(acked)),
        "burst_planned_events_per_s": planned,
        "burst_offered_events_per_s": burst_offered,
        "ceiling": {"rps": ceiling["rps"], "events_per_s": ceiling["rps"] * cfg["batch"]},
        "recovery_all_202_s": recovery,
        "recovery_note": recovery_note,
        "latency_p95_ms": pct((a.latency * 1000 for a in answers), 0.95),
        "series": {
            "answers/s:202": per_second(((a.done, 1) for a in answers if a.status == 202), origin, sum),
            "answers/s:429": per_second(((a.done, 1) for a in answers if a.status == 429), origin, sum),
            "answers/s:503": per_second(((a.done, 1) for a in answers if a.status == 503), origin, sum),
            "events/s:offered (first sends on the wire)": per_second(((t, cfg["batch"]) for t in wire), origin, sum),
            "events/s:acknowledged": per_second(
                ((a.done, a.events) for a in answers if a.status == 202), origin, sum
            ),
            "events/s:landed": _rate(landed.points, origin),
            "latency p95 (ms):all answers": latency_p95_series(answers, origin),
        },
    }  # fmt: skip
    unjudged = verdict.shortfall(
        BURST_REACHED * planned, burst_offered, ceiling=result["ceiling"]["events_per_s"]
    )
    limited_row = verdict.check(
        "backpressure: the burst above the key's limit is answered 429, each with Retry-After",
        "> 0 x 429, 0 without Retry-After",
        f"{statuses.get(429, 0):,} x 429, {statuses.get(503, 0):,} x 503, {result['retry_after_missing']} without "
        f"Retry-After; burst offered {burst_offered:,.0f} of {planned:,.0f} events/s planned "
        f"(limit {cfg['rate']:,})",
        statuses.get(429, 0) > 0 and result["retry_after_missing"] == 0,
        exercised=0 if unjudged else 1,
        headline="backpressure.limited",
    )
    if unjudged:
        limited_row["unjudged"] = unjudged
    result["targets"] = [
        limited_row,
        verdict.landed_check("backpressure: every acknowledged event landed", ledger, "backpressure.landed"),
        verdict.check(
            "backpressure: every event sent was acknowledged in the end (retries after 429/503)",
            "0 never acknowledged", f"sent {sent:,}, acknowledged {len(set(acked)):,}", result["lost"] == 0,
            exercised=sent,
        ),
        verdict.target(
            "backpressure: burst end -> answers all 202 again (from the data)", "recorded",
            verdict.fmt(recovery, "s") if recovery is not None else recovery_note, None,
            unjudged=recovery_note, headline="backpressure.recovery",
        ),
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
    c, lg = r["config"], r["ledger"]
    recovery = (
        f"{r['recovery_all_202_s']:.1f} s" if r["recovery_all_202_s"] is not None else r["recovery_note"]
    )
    return "\n".join(
        [
            f"key limit {c['rate']:,} events/s (bucket 1 s); batches of {c['batch']}; open loop: "
            f"{c['steady_s']} s at {c['rate'] // 2:,} events/s, {c['burst_s']} s burst at "
            f"{c['rate'] * c['burst_x']:,} events/s, {c['after_s']} s at {c['rate'] // 4:,} events/s; "
            f"client waits Retry-After and resends the same event ids; at most {CONNECTIONS} on the wire",
            f"generator ceiling (same client and body vs /healthz): {r['ceiling']['rps']:,.0f} req/s = "
            f"{r['ceiling']['events_per_s']:,.0f} events/s; burst offered on the wire "
            f"{r['burst_offered_events_per_s']:,.0f} of {r['burst_planned_events_per_s']:,.0f} events/s planned",
            f"answers {r['answers']:,} for {r['requests_started']:,} requests: statuses {r['statuses']}; "
            f"429/503 without Retry-After: {r['retry_after_missing']} of {r['limited']:,}",
            f"events sent {r['events_sent']:,}, acknowledged {r['acknowledged']:,} (never acknowledged "
            f"{r['lost']:,}); every acknowledged id: landed {lg['landed']:,}, missing {lg['missing']:,}, "
            f"duplicated {lg['duplicated']:,}, acknowledged twice {lg['acknowledged_twice']:,}",
            f"burst end -> all answers 202: {recovery}; p95 latency of all answers {r['latency_p95_ms']:.0f} ms",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    scenario_cli("backpressure", SIZES, run, render, argv, doc=__doc__)


if __name__ == "__main__":
    main()
