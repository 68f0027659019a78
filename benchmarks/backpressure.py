"""Backpressure: bursts above capacity, `python -m benchmarks.backpressure --size …`.

One tenant whose key allows R events/s (bucket of one second) is sent batches with client-chosen event ids by
wrk (benchmarks/wrk.py: C, paced from a monotonic clock, every request written and every answer logged): a
steady phase at R/2, a burst at 3R, then R/4, each paced PACE_MARGIN above its plan. Why wrk: the Python
open-loop client put only 11,070 of the 15,000 events/s planned on the wire at medium, so the burst could not
be judged (docs/benchmarks/2026-12-06-suite-medium-b.md).

The client honours every 429/503, in two steps: a Lua `response()` is not told which request it answers, so
wrk can neither wait per request nor resend the refused body itself. wrk sends first sends only; afterwards
Python rebuilds every body no 202 acknowledged (refused, or unanswered when wrk stopped) with the *same* event
ids (`wrk.batch_body`), waits until every refusal's `Retry-After` has passed, and resends them at RESEND_SHARE
x R, again waiting `Retry-After` (plus up to 50 % jitter) after each 429/503; a transport error is retried
after 1 s.

The burst is judged only if it was really offered: the events wrk wrote during the burst must reach 3R, and
wrk against `/healthz` in the same run must be able to offer it. Per phase: offered (written) and achieved
(answered) events/s and the 202/429/503 counts. Every 429/503, wrk's and the resends', is checked for
`Retry-After`; at the end every id a 202 acknowledged (all of them, not a sample) is checked against the
landing ledger (`benchmarks.load.ledger_check`: missing, duplicated). Recovery: from the burst's end to the
last non-202 answer to wrk's load, from the data (the resends come later and are reported on their own); with
no non-202 answer it is not measured, and with one in the schedule's last second it is "not recovered within
the run".
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
import uuid
from collections.abc import Iterable

import httpx
import psycopg

from benchmarks import verdict, wrk
from benchmarks.harness import Services, free_port, scratch_database, services_env, tansu
from benchmarks.load import Sample, latency_p95_series, ledger_check, limits, pct, per_second, tenant, warm_up
from benchmarks.report import scenario_cli
from pulseops.settings import Settings

CONNECTIONS = 128  # wrk's connections: paced, so only as many are busy as the answers' latency needs
# wrk is paced a little above each phase's plan: its timer rounding otherwise leaves the offer a hair under it
PACE_MARGIN = 1.03
BURST_REACHED = 1.0  # share of the planned burst (3R) wrk must have written for the burst to count as offered
RESEND_SHARE = 0.9  # resends are paced at this share of the key's limit
RESEND_IN_FLIGHT = 64  # resends on the wire at most
TAIL_S = 3  # wrk runs this long past its schedule, for the answers still in flight

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


def _phases(cfg: dict) -> list[tuple[str, float, float]]:
    """wrk's schedule: (phase, planned events/s, seconds)."""
    r = cfg["rate"]
    return [("steady", r / 2, cfg["steady_s"]), ("burst", r * cfg["burst_x"], cfg["burst_s"]),
            ("after", r / 4, cfg["after_s"])]  # fmt: skip


def _offer(url: str, key: str, cfg: dict, raw: list[str]) -> tuple[dict, float]:
    """wrk's paced schedule; returns its result (`sends` and `answers` logged) and the schedule's start."""
    origin = time.monotonic() + 1.0  # wrk has connected by then
    schedule = [(rate * PACE_MARGIN / cfg["batch"], seconds) for _, rate, seconds in _phases(cfg)]
    seconds = 1.0 + sum(s for _, s in schedule) + TAIL_S
    load = wrk.run(url, "/v1/batch", seconds, events=cfg["batch"], keys=[key], connections=CONNECTIONS,
                   schedule=schedule, origin=origin, log=True, raw=raw)  # fmt: skip
    # wrk's script check calls request() once when wrk starts (~1 s before the schedule) and never sends it
    load["sends"] = [(t, first) for t, first in load["sends"] if t >= origin - 0.1]
    return load, origin


def _refused(load: dict) -> tuple[list[int], float]:
    """First ids of the bodies no 202 acknowledged, and when the last refusal's Retry-After ends (which body a
    refusal answered is not known, so no body is resent before every refusal's wait has passed)."""
    acked = {first for first, _ in load["acked"]}
    firsts = [first for _, first in load["sends"] if first not in acked]
    refusals = [t + float(ra) for t, status, ra in load["answers"] if status in (429, 503) and ra]
    return firsts, max(refusals, default=0.0)


async def _resend(
    url: str, key: str, batch: int, rate: float, firsts: list[int], not_before: float
) -> tuple[list[Sample], list[str]]:
    """Resends the bodies with these first ids (same event ids) at `rate` events/s, each until a 202, waiting
    `Retry-After` after a 429/503. Returns every answer and the acknowledged ids."""
    answers: list[Sample] = []
    acked: list[str] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=30, limits=limits(RESEND_IN_FLIGHT)
    ) as client:
        on_wire = asyncio.Semaphore(RESEND_IN_FLIGHT)

        async def resend(first: int) -> None:
            body = wrk.batch_body(first, batch)
            while True:
                async with on_wire:
                    t = time.monotonic()
                    try:
                        r = await client.post("/v1/batch", content=body)
                    except httpx.HTTPError:
                        r = None
                if r is None:
                    answers.append(Sample(t, time.monotonic(), 0, batch))
                    await asyncio.sleep(1)
                    continue
                retry = r.headers.get("retry-after")
                answers.append(Sample(t, time.monotonic(), r.status_code, batch, retry))
                if r.status_code == 202:
                    acked.extend(r.json()["event_ids"])
                    return
                if r.status_code not in (429, 503):
                    raise RuntimeError(f"unexpected {r.status_code}: {r.text[:300]}")
                # plus up to 50 % jitter, as well-behaved clients add, so retries do not return as one herd
                await asyncio.sleep(float(retry or 1) * (1 + 0.5 * random.random()))

        await asyncio.sleep(max(0.0, not_before - time.monotonic()))
        start, tasks = time.monotonic(), []
        for i, first in enumerate(firsts):
            await asyncio.sleep(max(0.0, start + i * batch / rate - time.monotonic()))
            tasks.append(asyncio.create_task(resend(first)))
        await asyncio.gather(*tasks)
    return answers, acked


def run(size: str) -> dict:
    cfg = SIZES[size]
    if not wrk.available():
        raise RuntimeError("wrk is required (apt-get install wrk)")
    settings = Settings()
    raw: list[str] = []
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
        key, project = tenant(db_url, "bp-org", "burst", rate=cfg["rate"], burst=cfg["rate"])
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:8]), free_port())
        try:
            svc.start_ingest(workers=2)
            svc.start_worker()
            warm_up(svc.url, db_url)
            ceiling = wrk.run(svc.url, "/healthz", 2, method="GET", events=cfg["batch"], collect_acks=False,
                              connections=CONNECTIONS, raw=raw)  # fmt: skip
            with Landed(db_url, project) as landed:
                load, origin = _offer(svc.url, key, cfg, raw)
                firsts, not_before = _refused(load)
                resend_rate = RESEND_SHARE * cfg["rate"]
                resent, resent_ids = asyncio.run(
                    _resend(svc.url, key, cfg["batch"], resend_rate, firsts, not_before)
                )
                acked = list(wrk.acked_ids([load])) + [uuid.UUID(e) for e in resent_ids]
                ledger = ledger_check(db_url, [project], acked, wait_s=120)
        finally:
            svc.stop()
    result = _result(size, cfg, origin, load, resent, acked, ledger)
    result.update(
        ceiling={"rps": ceiling["rps"], "events_per_s": ceiling["rps"] * cfg["batch"]},
        resend={"bodies": len(firsts), "rate_events_per_s": resend_rate, "answers": len(resent),
                "not_before_s": not_before - origin if not_before else None,
                "first_s": min(a.t for a in resent) - origin if resent else None,
                "statuses": _count(a.status for a in resent)},
        raw={"wrk": "\n".join(raw)},
    )  # fmt: skip
    result["series"]["events/s:landed"] = _rate(landed.points, origin)
    result["targets"] = _targets(result)
    return result


def _count(statuses: Iterable[int]) -> dict[int, int]:
    out: dict[int, int] = {}
    for s in statuses:
        out[s] = out.get(s, 0) + 1
    return out


def _per_phase(cfg: dict, origin: float, load: dict) -> list[dict]:
    """Offered (written by wrk) and achieved (answered) events/s and statuses per phase; the last row holds the
    answers that came after the schedule's end (in flight then)."""
    rows, start, batch = [], origin, cfg["batch"]
    for name, planned, seconds in [*_phases(cfg), ("answers after the schedule", 0.0, TAIL_S)]:
        end = start + seconds if planned else float("inf")
        sends = sum(1 for t, _ in load["sends"] if start <= t < end)
        statuses = _count(s for t, s, _ in load["answers"] if start <= t < end)
        rows.append({"phase": name, "seconds": seconds, "planned_events_per_s": planned,
                     "offered_events_per_s": sends * batch / seconds,
                     "achieved_events_per_s": sum(statuses.values()) * batch / seconds,
                     "statuses": statuses})  # fmt: skip
        start = end
    return rows


def _recovery(cfg: dict, origin: float, load: dict) -> tuple[float | None, str | None]:
    """Burst end -> last non-202 answer to wrk's load (None and why, when that cannot be measured)."""
    burst_end = origin + cfg["steady_s"] + cfg["burst_s"]
    bad = [t for t, status, _ in load["answers"] if status != 202]
    if not bad:
        return None, "not measured: no answer other than 202"
    if max(bad) > burst_end + cfg["after_s"] - 1:
        return None, f"not recovered within the run (a non-202 at {max(bad) - burst_end:.1f} s)"
    return max(0.0, max(bad) - burst_end), None


def _result(
    size: str,
    cfg: dict,
    origin: float,
    load: dict,
    resent: list[Sample],
    acked: list[uuid.UUID],
    ledger: dict,
) -> dict:
    batch = cfg["batch"]
    answers = [(t, s, ra) for t, s, ra in load["answers"]] + [
        (a.done, a.status, a.retry_after) for a in resent
    ]
    limited = [ra for _, s, ra in answers if s in (429, 503)]
    phases = _per_phase(cfg, origin, load)
    recovery, note = _recovery(cfg, origin, load)
    sent = len(load["sends"]) * batch
    return {
        "size": size,
        "config": cfg,
        "phases": phases,
        "statuses": _count(s for _, s, _ in answers),
        "wrk": {"written": len(load["sends"])} | {k: load[k] for k in (
            "requests", "connect_errors", "read_errors", "write_errors", "timeouts", "p50_ms", "p99_ms")},
        "answers": len(answers),
        "limited": len(limited),
        "retry_after_missing": sum(1 for ra in limited if not ra),
        "events_sent": sent,
        "acknowledged": len(acked),
        "ledger": ledger,
        "lost": len({first + k for _, first in load["sends"] for k in range(batch)} - {u.int for u in acked}),
        "burst_planned_events_per_s": phases[1]["planned_events_per_s"],
        "burst_offered_events_per_s": phases[1]["offered_events_per_s"],
        "recovery_all_202_s": recovery,
        "recovery_note": note,
        "resend_latency_p95_ms": pct((a.latency * 1000 for a in resent), 0.95),
        "series": {
            **{f"answers/s:{code}": per_second(((t, 1) for t, s, _ in answers if s == code), origin, sum)
               for code in (202, 429, 503)},
            "events/s:offered (wrk, first sends written)": per_second(
                ((t, batch) for t, _ in load["sends"]), origin, sum),
            "events/s:resent (Python, after Retry-After)": per_second(((a.t, batch) for a in resent), origin, sum),
            "events/s:acknowledged": per_second(((t, batch) for t, s, _ in answers if s == 202), origin, sum),
            "latency p95 (ms):resends": latency_p95_series(resent, origin),
        },
    }  # fmt: skip


def _targets(r: dict) -> list[dict]:
    statuses, planned, offered = (
        r["statuses"],
        r["burst_planned_events_per_s"],
        r["burst_offered_events_per_s"],
    )
    unjudged = verdict.shortfall(BURST_REACHED * planned, offered, ceiling=r["ceiling"]["events_per_s"])
    limited = verdict.check(
        "backpressure: the burst above the key's limit is answered 429, each with Retry-After",
        "> 0 x 429, 0 without Retry-After",
        f"{statuses.get(429, 0):,} x 429, {statuses.get(503, 0):,} x 503, {r['retry_after_missing']} without "
        f"Retry-After; burst offered (written by wrk) {offered:,.0f} of {planned:,.0f} events/s planned "
        f"(limit {r['config']['rate']:,})",
        statuses.get(429, 0) > 0 and r["retry_after_missing"] == 0,
        exercised=0 if unjudged else 1,
        headline="backpressure.limited",
    )
    if unjudged:
        limited["unjudged"] = unjudged
    recovery, note = r["recovery_all_202_s"], r["recovery_note"]
    return [
        limited,
        verdict.landed_check("backpressure: every acknowledged event landed", r["ledger"], "backpressure.landed"),
        verdict.check(
            "backpressure: every event sent was acknowledged in the end (resent after 429/503)",
            "0 never acknowledged", f"sent {r['events_sent']:,}, acknowledged {r['events_sent'] - r['lost']:,}",
            r["lost"] == 0, exercised=r["events_sent"],
        ),
        verdict.target(
            "backpressure: burst end -> answers all 202 again (from the data)", "recorded",
            verdict.fmt(recovery, "s") if recovery is not None else note, None,
            unjudged=note, headline="backpressure.recovery",
        ),
    ]  # fmt: skip


def _rate(points: list[tuple[float, int]], origin: float) -> list[tuple[float, float]]:
    """Landed rows per second from the sampled cumulative counts."""
    out, prev = [], None
    for second, last in per_second(points, origin, lambda v: v[-1]):
        if prev is not None:
            out.append((second, last - prev))
        prev = last
    return out


def render(r: dict) -> str:
    c, lg, w, rs = r["config"], r["ledger"], r["wrk"], r["resend"]
    recovery = (
        f"{r['recovery_all_202_s']:.1f} s" if r["recovery_all_202_s"] is not None else r["recovery_note"]
    )
    phases = "; ".join(
        f"{p['phase']}: planned {p['planned_events_per_s']:,.0f}, offered {p['offered_events_per_s']:,.0f}, "
        f"achieved {p['achieved_events_per_s']:,.0f} events/s, statuses {p['statuses']}"
        if p["planned_events_per_s"]
        else f"{p['phase']}: statuses {p['statuses']}"
        for p in r["phases"]
    )
    resend_from = (
        "nothing to resend"
        if rs["first_s"] is None
        else f"the first at {rs['first_s']:.1f} s after the schedule's start (the last refusal's Retry-After "
        f"ended at {verdict.fmt(rs['not_before_s'], 's')})"
    )
    return "\n".join(
        [
            f"key limit {c['rate']:,} events/s (bucket 1 s); batches of {c['batch']}; wrk ({CONNECTIONS} "
            f"connections) paced {PACE_MARGIN:.2f}x each plan: {c['steady_s']} s at {c['rate'] // 2:,} events/s, "
            f"{c['burst_s']} s burst at {c['rate'] * c['burst_x']:,} events/s, {c['after_s']} s at "
            f"{c['rate'] // 4:,} events/s; then Python resends every unacknowledged body (same event ids) once "
            f"every refusal's Retry-After has passed, at {rs['rate_events_per_s']:,.0f} events/s, honouring "
            "Retry-After",
            f"generator ceiling (wrk, same body, vs /healthz): {r['ceiling']['rps']:,.0f} req/s = "
            f"{r['ceiling']['events_per_s']:,.0f} events/s; burst offered (written by wrk) "
            f"{r['burst_offered_events_per_s']:,.0f} of {r['burst_planned_events_per_s']:,.0f} events/s planned",
            f"per phase (from the schedule's start): {phases}",
            f"wrk: {w['written']:,} requests written, {w['requests']:,} answered, errors connect {w['connect_errors']} "
            f"read {w['read_errors']} write {w['write_errors']} timeout {w['timeouts']}; p50 {w['p50_ms']:.1f} ms, "
            f"p99 {w['p99_ms']:.1f} ms",
            f"resent {rs['bodies']:,} bodies, {resend_from}: {rs['answers']:,} "
            f"answers {rs['statuses']}, p95 {r['resend_latency_p95_ms']:.0f} ms",
            f"answers {r['answers']:,} (wrk and resends): statuses {r['statuses']}; 429/503 without Retry-After: "
            f"{r['retry_after_missing']} of {r['limited']:,}",
            f"events sent {r['events_sent']:,}, acknowledged {r['acknowledged']:,} (never acknowledged "
            f"{r['lost']:,}); every acknowledged id: landed {lg['landed']:,}, missing {lg['missing']:,}, "
            f"duplicated {lg['duplicated']:,}, acknowledged twice {lg['acknowledged_twice']:,}",
            f"burst end -> all answers to wrk's load 202: {recovery}",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    scenario_cli("backpressure", SIZES, run, render, argv, doc=__doc__)


if __name__ == "__main__":
    main()
