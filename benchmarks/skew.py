"""Hot-tenant skew: `python -m benchmarks.skew --size …`.

Two tenants (projects of two orgs, each with its own ingest key) share one ingest API (2 processes, spool on)
and one landing worker. The *quiet* tenant sends a fixed, modest open-loop rate (httpx, batches with client
event ids); we measure its HTTP latency (scheduled send -> answer) and its freshness (202 -> row visible in
the landing ledger), first alone and then beside a *hot* tenant whose key has a known limit (the product's
default at medium and large) and which offers 3x that limit. The hot tenant is wrk with a paced Lua script
(benchmarks/wrk.py), a C generator that can offer it on two shared cores; its own ceiling (the same script
and body against `/healthz`) is measured in the same run, and its offered rate is what wrk really wrote.

Reported per tenant: offered / achieved (answered) / accepted events/s, 429s and Retry-After on each, latency
and freshness; every event a 202 acknowledged, of both tenants, is checked against the ledger.
Targets (issue "Hot path at the machine's limit"): quiet p95 latency and p95 freshness beside the hot tenant
at most 1.5x alone, judged only when the hot tenant really offered 3x its limit.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
import uuid

import httpx
import orjson

from benchmarks import verdict, wrk
from benchmarks.harness import Services, free_port, scratch_database, services_env, tansu
from benchmarks.load import (
    Offer,
    Sample,
    Visibility,
    accepted_series,
    client_ceiling,
    latency_p95_series,
    ledger_check,
    ledger_text,
    limits,
    open_loop,
    pct,
    per_second,
    tenant,
)
from benchmarks.report import scenario_cli
from pulseops.settings import Settings

SIZES = {
    "small": {"seconds": 4, "quiet_rps": 20, "quiet_batch": 10, "hot_limit": 2_000, "hot_batch": 100},
    "medium": {"seconds": 30, "quiet_rps": 20, "quiet_batch": 10, "hot_limit": None, "hot_batch": 100},
    "large": {"seconds": 90, "quiet_rps": 20, "quiet_batch": 10, "hot_limit": None, "hot_batch": 100},
}  # hot_limit None: the product's default rate (PULSEOPS_INGEST__RATE_PER_S)
HOT_FACTOR = 3.0  # the hot tenant offers this multiple of its key's limit
PACE_MARGIN = 1.05  # wrk is paced a little above it, so the measured offer clears 3x despite timer rounding
MAX_RATIO = 1.5  # quiet p95 beside the hot tenant / alone
HOT_CONNECTIONS = 64


def _quiet_body(batch: int, i: int) -> tuple[bytes, list[str]]:
    ids = [str(uuid.uuid4()) for _ in range(batch)]
    events = [
        {"event": "view", "distinct_id": f"q-{(i * batch + j) % 500}", "event_id": e}
        for j, e in enumerate(ids)
    ]
    return orjson.dumps({"batch": events}), ids


async def _quiet(
    url: str, key: str, rps: float, batch: int, seconds: float, vis: Visibility, acked: list[str]
) -> tuple[list[Sample], Offer]:
    """Open loop; every acknowledged id goes to `acked`, the first of each batch to the freshness probe."""
    samples: list[Sample] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=30, limits=limits()
    ) as client:

        async def fire(i: int, at: float) -> None:
            body, ids = _quiet_body(batch, i)
            try:
                r = await client.post("/v1/batch", content=body)
                status, retry = r.status_code, r.headers.get("retry-after")
            except httpx.HTTPError:
                status, retry = 0, None
            done = time.monotonic()
            samples.append(Sample(at, done, status, batch, retry))
            if status == 202:
                acked.extend(ids)
                vis.watch(ids[0], done)

        offer = await open_loop(rps, seconds, fire)
    return samples, offer


def _quiet_summary(samples: list[Sample], offer: Offer, fresh: list[tuple[float, float]], batch: int) -> dict:
    answered = [s for s in samples if s.status > 0]
    statuses: dict[int, int] = {}
    for s in samples:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    return {
        "requests": len(samples),
        "statuses": statuses,
        "offered_events_per_s": offer.rps * batch,
        "behind_s": offer.behind_s,
        "achieved_events_per_s": len(answered) * batch / offer.seconds,
        "accepted_events_per_s": statuses.get(202, 0) * batch / offer.seconds,
        "p50_ms": pct((s.latency * 1000 for s in answered), 0.5),
        "p95_ms": pct((s.latency * 1000 for s in answered), 0.95),
        "fresh_samples": len(fresh),
        "fresh_p50_ms": pct((d * 1000 for _, d in fresh), 0.5),
        "fresh_p95_ms": pct((d * 1000 for _, d in fresh), 0.95),
    }


def run(size: str) -> dict:
    """The quiet tenant alone, then beside the hot one at 3x its limit; every acknowledged event checked."""
    cfg = SIZES[size]
    settings = Settings()
    hot_limit = cfg["hot_limit"] or settings.ingest.rate_per_s
    hot_rps = HOT_FACTOR * PACE_MARGIN * hot_limit / cfg["hot_batch"]
    quiet_acked: list[str] = []
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
        quiet_key, quiet_project = tenant(db_url, "quiet-org", "quiet")
        # burst = limit: one second of the limit in the bucket, so 3x the limit is mostly refused
        hot_key, hot_project = tenant(db_url, "hot-org", "hot", rate=hot_limit, burst=hot_limit)
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:8]), free_port())
        try:
            svc.start_ingest(workers=2)
            svc.start_worker()
            with Visibility(db_url, quiet_project) as vis:
                m = _warm_up_and_ceilings(svc, vis, cfg, quiet_key, quiet_acked)
                m["origin"] = time.monotonic()
                m["base"], m["base_offer"] = _quiet_phase(svc, vis, cfg, quiet_key, quiet_acked)
                vis.drain(30)
                m["base_fresh"] = vis.take()
                m.update(_beside_hot(svc, vis, cfg, quiet_key, hot_key, hot_rps, quiet_acked))
            hot_ids = list(wrk.acked_ids([m["hot"]]))
            ledger = ledger_check(
                db_url,
                [quiet_project, hot_project],
                (uuid.UUID(e) for e in quiet_acked + [str(i) for i in hot_ids]),
                wait_s=120,
            )
        finally:
            svc.stop()
    result = _result(size, cfg, hot_limit, hot_rps, m, ledger)
    result["targets"] = targets(result)
    return result


def _warm_up_and_ceilings(
    svc: Services, vis: Visibility, cfg: dict, quiet_key: str, acked: list[str]
) -> dict:
    """Warm up (consumer group joined, partitions created, first rows landed), then each generator's ceiling
    against /healthz: what a shortfall of offered load is judged against."""
    asyncio.run(_quiet(svc.url, quiet_key, 10, 10, 2, vis, acked))
    if vis.drain(60):
        raise RuntimeError("warm-up events never landed")
    vis.take()
    quiet_ceiling = asyncio.run(client_ceiling(svc.url, 2, lambda: _quiet_body(cfg["quiet_batch"], 0)[0]))
    hot_ceiling = wrk.run(svc.url, "/healthz", 2, method="GET", events=cfg["hot_batch"], collect_acks=False,
                          connections=HOT_CONNECTIONS)  # fmt: skip
    return {"quiet_ceiling": quiet_ceiling, "hot_ceiling": hot_ceiling}


def _quiet_phase(
    svc: Services, vis: Visibility, cfg: dict, quiet_key: str, acked: list[str]
) -> tuple[list[Sample], Offer]:
    """One phase of the quiet tenant's open loop at its configured rate."""
    return asyncio.run(
        _quiet(svc.url, quiet_key, cfg["quiet_rps"], cfg["quiet_batch"], cfg["seconds"], vis, acked)
    )


def _beside_hot(
    svc: Services, vis: Visibility, cfg: dict, quiet_key: str, hot_key: str, hot_rps: float, acked: list[str]
) -> dict:
    """The quiet tenant's phase again while wrk offers the hot tenant's paced load (started 1 s earlier)."""
    seconds = cfg["seconds"]
    hot: dict = {}
    hot_thread = threading.Thread(
        target=lambda: hot.update(
            wrk.run(
                svc.url,
                "/v1/batch",
                seconds + 2,
                events=cfg["hot_batch"],
                keys=[hot_key],
                rate=hot_rps,
                connections=HOT_CONNECTIONS,
            )
        )
    )
    hot_started = time.monotonic()
    hot_thread.start()
    time.sleep(1)  # the hot tenant is at full rate when the quiet one starts
    skewed, skew_offer = _quiet_phase(svc, vis, cfg, quiet_key, acked)
    hot_thread.join()
    vis.drain(60)
    return {"skewed": skewed, "skew_offer": skew_offer, "skew_fresh": vis.take(), "hot": hot,
            "hot_started": hot_started}  # fmt: skip


def _result(size: str, cfg: dict, hot_limit: float, hot_rps: float, m: dict, ledger: dict) -> dict:
    """Both phases' summaries, the hot tenant's figures, the ratios and the series for the plots."""
    seconds, batch = cfg["seconds"], cfg["hot_batch"]
    hot, hot_ceiling, quiet_ceiling = m["hot"], m["hot_ceiling"], m["quiet_ceiling"]
    base, skewed, base_fresh, skew_fresh = m["base"], m["skewed"], m["base_fresh"], m["skew_fresh"]
    origin, hot_started = m["origin"], m["hot_started"]
    b = _quiet_summary(base, m["base_offer"], base_fresh, cfg["quiet_batch"])
    s = _quiet_summary(skewed, m["skew_offer"], skew_fresh, cfg["quiet_batch"])
    h = {
        "offered_events_per_s": hot["sent_rps"] * batch,
        "achieved_events_per_s": hot["rps"] * batch,
        "accepted_events_per_s": wrk.accepted_events(hot) / hot["seconds"],
        "statuses": hot["statuses"],
        "limited": hot["statuses"].get(429, 0) + hot["statuses"].get(503, 0),
        "retry_after_missing": hot["retry_after_missing"],
        "unanswered": hot["sent"] - hot["requests"],
        "p50_ms": hot["p50_ms"],
        "p99_ms": hot["p99_ms"],
        "ceiling_events_per_s": hot_ceiling["rps"] * batch,
    }
    result = {
        "size": size,
        "config": {**cfg, "hot_limit_events_per_s": hot_limit, "hot_paced_events_per_s": hot_rps * batch},
        "quiet_ceiling": {"rps": quiet_ceiling["rps"], "events_per_s": quiet_ceiling["rps"] * cfg["quiet_batch"]},
        "baseline": b,
        "skewed": s,
        "hot": h,
        "ledger": ledger,
        "latency_ratio": verdict.ratio(s["p95_ms"], b["p95_ms"]),
        "freshness_ratio": verdict.ratio(s["fresh_p95_ms"], b["fresh_p95_ms"]),
        "series": {
            "quiet latency p95 (ms):quiet": latency_p95_series(base + skewed, origin),
            "accepted events/s:quiet": accepted_series(base + skewed, origin),
            "hot tenant running (1 = yes):hot": [(hot_started - origin, 0.0), (hot_started - origin, 1.0),
                                                 (hot_started - origin + seconds + 2, 1.0),
                                                 (hot_started - origin + seconds + 2, 0.0)],
            "freshness p95 (ms):quiet": per_second(
                ((t, d * 1000) for t, d in base_fresh + skew_fresh), origin, lambda v: pct(v, 0.95)
            ),
        },
    }  # fmt: skip
    return result


def targets(r: dict) -> list[dict]:
    b, s, h, c = r["baseline"], r["skewed"], r["hot"], r["config"]
    required = HOT_FACTOR * c["hot_limit_events_per_s"]
    quiet_needed = c["quiet_rps"] * c["quiet_batch"] * 0.95
    unjudged = verdict.shortfall(required, h["offered_events_per_s"], ceiling=h["ceiling_events_per_s"]) or (
        verdict.shortfall(
            quiet_needed,
            min(b["offered_events_per_s"], s["offered_events_per_s"]),
            ceiling=r["quiet_ceiling"]["events_per_s"],
        )
    )
    hot_line = (
        f"hot offered {h['offered_events_per_s']:,.0f} / achieved {h['achieved_events_per_s']:,.0f} / accepted "
        f"{h['accepted_events_per_s']:,.0f} events/s at a {c['hot_limit_events_per_s']:,.0f} events/s limit"
    )
    return [
        verdict.target(
            "skew: quiet tenant p95 ingest latency beside a hot tenant at 3x its limit / alone",
            f"<= {MAX_RATIO}x", f"{b['p95_ms']:.1f} -> {s['p95_ms']:.1f} ms ({hot_line})",
            None if r["latency_ratio"] is None else r["latency_ratio"] <= MAX_RATIO, unjudged=unjudged,
            ceiling=f"hot generator vs /healthz {h['ceiling_events_per_s']:,.0f} events/s",
            ratio_value=r["latency_ratio"], headline="skew.latency",
        ),
        verdict.target(
            "skew: quiet tenant p95 202 -> row visible beside a hot tenant at 3x its limit / alone",
            f"<= {MAX_RATIO}x", f"{_ms(b['fresh_p95_ms'])} -> {_ms(s['fresh_p95_ms'])} ms",
            None if r["freshness_ratio"] is None else r["freshness_ratio"] <= MAX_RATIO, unjudged=unjudged,
            ceiling=f"quiet generator vs /healthz {r['quiet_ceiling']['events_per_s']:,.0f} events/s",
            ratio_value=r["freshness_ratio"], headline="skew.freshness",
        ),
        verdict.check(
            "skew: every 429/503 to the hot tenant carries Retry-After", "0 missing",
            f"{h['retry_after_missing']} missing of {h['limited']:,} (429: {h['statuses'].get(429, 0):,})",
            h["retry_after_missing"] == 0, exercised=h["limited"],
        ),
        verdict.check(
            "skew: the quiet tenant is never refused", "every quiet answer 202",
            f"alone {b['statuses']}, beside {s['statuses']}",
            set(b["statuses"]) | set(s["statuses"]) == {202}, exercised=b["requests"] + s["requests"],
        ),
        verdict.landed_check("skew: every acknowledged event of both tenants landed", r["ledger"], "skew.landed"),
    ]  # fmt: skip


def render(r: dict) -> str:
    c, h = r["config"], r["hot"]
    lines = [
        f"quiet tenant: {c['quiet_rps']} req/s x {c['quiet_batch']} events, open loop (httpx), {c['seconds']} s per "
        f"phase; its generator's ceiling vs /healthz {r['quiet_ceiling']['rps']:,.0f} req/s",
        f"hot tenant: wrk paced at {c['hot_paced_events_per_s']:,.0f} events/s in batches of {c['hot_batch']} "
        f"against a key limited to {c['hot_limit_events_per_s']:,.0f} events/s (burst 1 s); its generator's "
        f"ceiling vs /healthz {h['ceiling_events_per_s']:,.0f} events/s",
        f"{'tenant / phase':22} {'offered':>9} {'achieved':>9} {'accepted':>9} {'p50 ms':>8} {'p95 ms':>8} "
        f"{'fresh p50':>10} {'fresh p95':>10}  statuses",
    ]
    for label, k in (("quiet alone", "baseline"), ("quiet beside hot", "skewed")):
        x = r[k]
        lines.append(
            f"{label:22} {x['offered_events_per_s']:9,.0f} {x['achieved_events_per_s']:9,.0f} "
            f"{x['accepted_events_per_s']:9,.0f} {x['p50_ms']:8.1f} {x['p95_ms']:8.1f} {_ms(x['fresh_p50_ms']):>10} "
            f"{_ms(x['fresh_p95_ms']):>10}  {x['statuses']}"
        )
    lines += [
        f"{'hot (events/s)':22} {h['offered_events_per_s']:9,.0f} {h['achieved_events_per_s']:9,.0f} "
        f"{h['accepted_events_per_s']:9,.0f} {h['p50_ms']:8.1f} {'p99 ' + format(h['p99_ms'], '.1f'):>8} "
        f"{'-':>10} {'-':>10}  {h['statuses']}; unanswered when wrk stopped {h['unanswered']}",
        f"quiet p95 latency beside/alone: {_ratio(r['latency_ratio'])}, p95 freshness beside/alone: "
        f"{_ratio(r['freshness_ratio'])} (target <= {MAX_RATIO}x each)",
        f"hot 429/503 without Retry-After: {h['retry_after_missing']} of {h['limited']:,}",
        "every acknowledged id (both tenants): " + ledger_text(r["ledger"]),
    ]
    return "\n".join(lines)


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.0f}"


def _ratio(v: float | None) -> str:
    return "not measured" if v is None else f"{v:.2f}x"


def main(argv: list[str] | None = None) -> None:
    scenario_cli("skew", SIZES, run, render, argv, doc=__doc__)


if __name__ == "__main__":
    main()
