"""Hot-tenant skew: `python -m benchmarks.skew --size …`.

Two tenants (projects of two orgs, each with its own ingest key) share one ingest API (2 processes) and one
landing worker. The *quiet* tenant sends a fixed, modest open-loop rate (batches with client event ids); we
measure its HTTP latency (scheduled send -> answer) and its freshness (202 -> row visible in the landing
ledger), first alone (baseline) and then while a *hot* tenant, in its own process, offers traffic near the
machine's capacity. "Capacity" is a per-size figure for what ingest + landing sustain on this 2-core box; the
hot key is limited to 60 % of it (its rate limit is the protection being tested) and offers 90 %, so it
holds 60 % of the capacity and gets 429s for the rest.

Target (issue 8): the hot tenant raises neither the quiet tenant's p95 latency nor its p95 freshness by
more than 20 %.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import httpx
import orjson

from benchmarks.harness import Services, free_port, scratch_database, services_env, tansu
from benchmarks.load import (
    Sample,
    Visibility,
    accepted_series,
    change,
    latency_p95_series,
    open_loop,
    pct,
    per_second,
    tenant,
)
from benchmarks.report import scenario_cli
from pulseops.settings import Settings

SIZES = {
    "small": {"seconds": 5, "quiet_rps": 20, "quiet_batch": 10, "capacity": 10_000, "hot_batch": 100},
    "medium": {"seconds": 45, "quiet_rps": 20, "quiet_batch": 10, "capacity": 25_000, "hot_batch": 100},
    "large": {"seconds": 120, "quiet_rps": 20, "quiet_batch": 10, "capacity": 25_000, "hot_batch": 100},
}
HOT_SHARE, HOT_OFFERED = 0.6, 0.9
TARGET_PCT = 20.0
HOT_CONNECTIONS = 64  # the hot tenant's client: at most this many requests in flight


def _limits() -> httpx.Limits:
    return httpx.Limits(max_connections=256, max_keepalive_connections=256)


async def _quiet(url: str, key: str, rps: float, batch: int, seconds: float, vis: Visibility) -> list[Sample]:
    samples: list[Sample] = []
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=30, limits=_limits()
    ) as client:

        async def fire(i: int, at: float) -> None:
            events = [
                {"event": "view", "distinct_id": f"q-{(i * batch + j) % 500}", "event_id": str(uuid.uuid4())}
                for j in range(batch)
            ]
            r = await client.post("/v1/batch", content=orjson.dumps({"batch": events}))
            done = time.monotonic()
            samples.append(Sample(at, done, r.status_code, batch, r.headers.get("retry-after")))
            if r.status_code == 202:
                vis.watch(events[0]["event_id"], done)

        await open_loop(rps, seconds, fire)
    return samples


def hot_sender(url: str, key: str, rps: float, batch: int, seconds: float) -> list[tuple]:
    """Runs in its own process, so its client CPU never delays the quiet tenant's event loop."""

    async def go() -> list[tuple]:
        body = orjson.dumps(
            {
                "batch": [
                    {"event": "hot", "distinct_id": f"h-{j}", "properties": {"n": j}} for j in range(batch)
                ]
            }
        )
        out: list[tuple] = []
        async with httpx.AsyncClient(
            base_url=url, headers={"X-API-Key": key}, timeout=30, limits=_limits()
        ) as client:
            in_flight = asyncio.Semaphore(HOT_CONNECTIONS)

            async def fire(_i: int, at: float) -> None:
                if in_flight.locked():
                    # Every connection busy: the request is not sent (status -1) rather than queued, which
                    # would grow without bound (and httpx's pool wait list costs quadratic CPU: a medium run
                    # once spun for 14 minutes).
                    out.append((at, time.monotonic(), -1, batch, None))
                    return
                async with in_flight:
                    try:
                        r = await client.post("/v1/batch", content=body)
                        status, retry = r.status_code, r.headers.get("retry-after")
                    except httpx.HTTPError:
                        status, retry = 0, None
                out.append((at, time.monotonic(), status, batch, retry))

            await open_loop(rps, seconds, fire)
        return out

    return asyncio.run(go())


def _summary(samples: list[Sample], fresh: list[tuple[float, float]], seconds: float) -> dict:
    ok = [s for s in samples if s.status == 202]
    statuses: dict[int, int] = {}
    for s in samples:
        statuses[s.status] = statuses.get(s.status, 0) + 1
    return {
        "requests": len(samples),
        "statuses": statuses,
        "accepted_events_per_s": sum(s.events for s in ok) / seconds,
        "p50_ms": pct((s.latency * 1000 for s in samples), 0.5),
        "p95_ms": pct((s.latency * 1000 for s in samples), 0.95),
        "fresh_samples": len(fresh),
        "fresh_p50_ms": pct((d * 1000 for _, d in fresh), 0.5),
        "fresh_p95_ms": pct((d * 1000 for _, d in fresh), 0.95),
    }


def run(size: str) -> dict:
    cfg = SIZES[size]
    settings = Settings()
    seconds = cfg["seconds"]
    hot_limit = HOT_SHARE * cfg["capacity"]
    hot_rps = HOT_OFFERED * cfg["capacity"] / cfg["hot_batch"]
    ctx = multiprocessing.get_context("spawn")
    with (
        scratch_database(settings.db.url) as db_url,
        tansu() as bootstrap,
        ProcessPoolExecutor(1, mp_context=ctx) as pool,
    ):
        pool_ready = pool.submit(time.sleep, 0)  # the hot sender's process starts while we set up
        quiet_key, quiet_project = tenant(db_url, "quiet-org", "quiet")
        hot_key, _ = tenant(db_url, "hot-org", "hot", rate=hot_limit, burst=hot_limit)
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:8]), free_port())
        try:
            svc.start_ingest(workers=2)
            svc.start_worker()
            with Visibility(db_url, quiet_project) as vis:
                # warm-up: consumer group joined, partitions created, first rows landed
                asyncio.run(_quiet(svc.url, quiet_key, 10, 10, 2, vis))
                if vis.drain(60):
                    raise RuntimeError("warm-up events never landed")
                vis.take()
                origin = time.monotonic()
                base = asyncio.run(
                    _quiet(svc.url, quiet_key, cfg["quiet_rps"], cfg["quiet_batch"], seconds, vis)
                )
                base_unseen = vis.drain(30)
                base_fresh = vis.take()
                pool_ready.result()
                time.sleep(1)
                hot_future = pool.submit(hot_sender, svc.url, hot_key, hot_rps, cfg["hot_batch"], seconds + 2)
                time.sleep(1)  # the hot tenant is already at full rate when the quiet one starts
                skewed = asyncio.run(
                    _quiet(svc.url, quiet_key, cfg["quiet_rps"], cfg["quiet_batch"], seconds, vis)
                )
                hot = [Sample(*row) for row in hot_future.result()]
                skew_unseen = vis.drain(60)
                skew_fresh = vis.take()
        finally:
            svc.stop()
    b, s = _summary(base, base_fresh, seconds), _summary(skewed, skew_fresh, seconds)
    h = _summary(hot, [], seconds + 2)
    quiet_all = base + skewed
    fresh_all = base_fresh + skew_fresh
    result = {
        "size": size,
        "config": {
            **cfg,
            "hot_limit_events_per_s": hot_limit,
            "hot_offered_events_per_s": hot_rps * cfg["hot_batch"],
        },
        "baseline": {**b, "unseen": base_unseen},
        "skewed": {**s, "unseen": skew_unseen},
        "hot": {
            **h,
            "retry_after_missing": sum(1 for x in hot if x.status in (429, 503) and not x.retry_after),
        },
        "p95_latency_change_pct": change(b["p95_ms"], s["p95_ms"]),
        "p95_freshness_change_pct": change(b["fresh_p95_ms"], s["fresh_p95_ms"]),
        "series": {
            "latency p95 (ms):quiet": latency_p95_series(quiet_all, origin),
            "latency p95 (ms):hot": latency_p95_series([x for x in hot if x.status != -1], origin),
            "accepted events/s:quiet": accepted_series(quiet_all, origin),
            "accepted events/s:hot": accepted_series(hot, origin),
            "freshness p95 (ms):quiet": per_second(
                ((t, d * 1000) for t, d in fresh_all), origin, lambda v: pct(v, 0.95)
            ),
        },
    }
    result["targets"] = [
        {"what": "skew: quiet tenant p95 latency change with a hot tenant at 60 %", "target": f"<= +{TARGET_PCT:.0f} %",
         "measured": f"{result['p95_latency_change_pct']:+.1f} % ({b['p95_ms']:.1f} -> {s['p95_ms']:.1f} ms)",
         "met": result["p95_latency_change_pct"] <= TARGET_PCT},
        {"what": "skew: quiet tenant p95 freshness change with a hot tenant at 60 %", "target": f"<= +{TARGET_PCT:.0f} %",
         "measured": f"{result['p95_freshness_change_pct']:+.1f} % ({b['fresh_p95_ms']:.0f} -> {s['fresh_p95_ms']:.0f} ms)",
         "met": result["p95_freshness_change_pct"] <= TARGET_PCT},
        {"what": "skew: every quiet event acknowledged and visible", "target": "0 unseen, 0 non-202", "kind": "check",
         "measured": f"unseen {base_unseen + skew_unseen}, statuses {b['statuses']} / {s['statuses']}",
         "met": base_unseen + skew_unseen == 0 and set(b["statuses"]) | set(s["statuses"]) == {202}},
    ]  # fmt: skip
    return result


def render(r: dict) -> str:
    c = r["config"]
    lines = [
        f"quiet tenant: {c['quiet_rps']} req/s x {c['quiet_batch']} events, open loop, {c['seconds']} s per phase; "
        f"hot tenant (own process): offers {c['hot_offered_events_per_s']:,.0f} events/s in batches of "
        f"{c['hot_batch']}, key limited to {c['hot_limit_events_per_s']:,.0f} events/s "
        f"({HOT_SHARE:.0%} of a {c['capacity']:,} events/s capacity)",
        f"{'phase':22} {'req':>6} {'events/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'fresh p50':>10} "
        f"{'fresh p95':>10} {'unseen':>7}  statuses",
    ]
    for label, k in (("quiet alone", "baseline"), ("quiet with hot tenant", "skewed"), ("hot tenant", "hot")):
        x = r[k]
        lines.append(
            f"{label:22} {x['requests']:6d} {x['accepted_events_per_s']:9,.0f} {x['p50_ms']:8.1f} {x['p95_ms']:8.1f} "
            f"{_ms(x['fresh_p50_ms']):>10} {_ms(x['fresh_p95_ms']):>10} {x.get('unseen', 0):7d}  {x['statuses']}"
        )
    lines += [
        f"quiet p95 latency change: {r['p95_latency_change_pct']:+.1f} %, p95 freshness change: "
        f"{r['p95_freshness_change_pct']:+.1f} % (target <= +{TARGET_PCT:.0f} % each)",
        f"hot 429/503 without Retry-After: {r['hot']['retry_after_missing']}",
    ]
    return "\n".join(lines)


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.0f}"


def main(argv: list[str] | None = None) -> None:
    scenario_cli("skew", SIZES, run, render, argv, doc=__doc__)


if __name__ == "__main__":
    main()
