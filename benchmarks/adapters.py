"""Thin adapters from the older benchmarks' entry points to the suite's protocol (benchmarks/suite.py), and
the issues' targets read from results that carry none. The older modules keep their own CLIs unchanged."""

from __future__ import annotations

import re

from benchmarks import background_load, cold, ingest, orchestration, queries, verdict
from benchmarks.load import pct

LATE_TARGET_S = 10.0  # issue 16 (was 15 s, issue 4): late event -> aggregate value correct in GraphQL, p95
CACHED_P95_MS, UNCACHED_P95_MS, RAW_P95_MS = 3.0, 50.0, 500.0  # issue 5
LOCAL_HIT_P95_MS = 1.5  # issue "Orchestration and query speed": an in-process hit, apart from a Redis hit
COLD_SPEED_UP = 5.0  # issue 7: DuckDB over Parquet vs PostgreSQL, 90-day aggregate


def ingest_run(size: str) -> dict:
    r = ingest.run(size, profile=False)
    r.pop("machine", None)  # the suite records the machine once
    r["raw"] = {"wrk output": r["raw"]}
    r["targets"] = ingest.targets(r)
    return r


def ingest_render(r: dict) -> str:
    return ingest.render(r)


def queries_run(size: str) -> dict:
    m = queries.measure(size)
    p95 = {name: {k: pct(v, 0.95) for k, v in s.items()} for name, s in m["samples"].items()}
    local = max(p95.items(), key=lambda kv: kv[1]["cached"])
    redis = max(p95.items(), key=lambda kv: kv[1]["redis"])
    raw = "eventCounts DAY 7d plan=pro (raw)"
    utc_built = [n for n in p95 if "built days" in n and "," not in n.split("built days", 1)[1]]
    worst_utc = max(utc_built, key=lambda n: p95[n]["uncached"])

    floor = pct(m["floor"], 0.95)

    def row(what: str, target: str, name: str, mode: str, limit: float, digits: int = 1) -> dict:
        ms = p95[name][mode]
        # a hit is bounded by the client's own round trip; a computed answer by the SQL behind it
        ceiling = (
            f"same client GET /healthz p95 {floor:.2f} ms"
            if mode in ("cached", "redis")
            else f"same SQL direct p95 {p95[name]['sql']:.1f} ms"
        )
        return {"what": what, "target": target, "measured": f"{ms:.{digits}f} ms ({name})",
                "ceiling": ceiling, "met": ms <= limit}  # fmt: skip

    m["targets"] = [
        row("queries: in-process cache hit p95 (worst query)", f"<= {LOCAL_HIT_P95_MS} ms", local[0], "cached",
            LOCAL_HIT_P95_MS, 2),
        row("queries: Redis cache hit p95 (worst query)", f"<= {CACHED_P95_MS:.0f} ms", redis[0], "redis",
            CACHED_P95_MS, 2),
        row("queries: uncached aggregate-backed p95, UTC, built days (worst)", f"<= {UNCACHED_P95_MS:.0f} ms",
            worst_utc, "uncached", UNCACHED_P95_MS),
        *[
            row(f"queries: uncached aggregate-backed day series p95, {tz}, built days",
                f"<= {UNCACHED_P95_MS:.0f} ms", f"eventCounts DAY 28 built days, {tz}", "uncached", UNCACHED_P95_MS)
            for tz in queries.ZONES
        ],
        row("queries: property-filtered raw query over 7 days, uncached p95", f"<= {RAW_P95_MS:.0f} ms", raw,
            "uncached", RAW_P95_MS),
    ]  # fmt: skip
    m["p95_ms"] = p95
    return m


def queries_render(m: dict) -> str:
    return m["text"]


def late_run(size: str) -> dict:
    r = orchestration.run_late(size)
    b = r["burst"]
    r["targets"] = [*_late_load_targets(r),
        {"what": "late data over 35 days x 3 projects sent at once: every aggregate correct after the last 202",
         "target": "<= 60 s, a few runs",
         "measured": f"{b['seconds_after_last_202']:.1f} s, {b['runs']} runs ({b['events']:,} events)",
         "met": b["seconds_after_last_202"] <= 60 and b["runs"] <= 3},
    ]  # fmt: skip
    return r


def _late_load_targets(r: dict) -> list[dict]:
    """Late event -> corrected p95 judged over the samples that ran entirely under the background ingest load,
    and only when that load reached its rate (offered and accepted) and covered 90 % of the samples."""
    load, under = r["load"], r["under_load"]
    rate = r["config"]["load_rate"]
    unjudged = None
    if "error" in load or "accepted" not in load:
        unjudged = f"not measured: background load failed ({load.get('error', 'no result')[:200]})"
    else:
        unjudged = verdict.shortfall(rate, min(load["offered"], load["accepted"]))
    if unjudged is None and under["samples"] < 0.9 * len(r["delays_s"]):
        unjudged = f"not measured: only {under['samples']} of {len(r['delays_s'])} samples ran under the load"
    rows = [
        verdict.target(
            f"late data: late event 202 -> aggregate value in GraphQL correct, p95, while ingest runs at "
            f">= {rate:,} events/s",
            f"<= {LATE_TARGET_S:.0f} s",
            f"{verdict.fmt(under['p95_s'], 's')} (p50 {verdict.fmt(under['p50_s'], 's')}, {under['samples']} "
            f"samples under the load; all {len(r['delays_s'])}: p95 {r['p95_s']:.1f} s); load offered "
            f"{verdict.fmt(load.get('offered'))} / accepted {verdict.fmt(load.get('accepted'))} events/s",
            under["p95_s"] is not None and under["p95_s"] <= LATE_TARGET_S,
            unjudged=unjudged,
        )
    ]
    if "ledger" in load:
        rows.append(
            verdict.landed_check(
                "late data: every event the background load acknowledged landed", load["ledger"]
            )
        )
    return rows


def late_render(r: dict) -> str:
    load = r["load"]
    return (
        f"{r['config']['days']} days x {r['config']['per_day']:,} events built; late events over HTTP (broker, "
        f"landing) into random built days, through dagster-daemon and the late-data sensor (every "
        f"{r['sensor_interval_s']} s)\n"
        f"late event 202 -> aggregate value in GraphQL correct ({len(r['delays_s'])} samples): p50 {r['p50_s']:.1f}s, "
        f"p95 {r['p95_s']:.1f}s, max {r['max_s']:.1f}s; all: {', '.join(f'{d:.1f}' for d in r['delays_s'])}\n"
        f"background ingest (wrk, batches of 100, another tenant, paced {background_load.PACE_MARGIN - 1:.0%} above "
        f"the required {r['config']['load_rate']:,} events/s): "
        f"offered {verdict.fmt(load.get('offered'))}, achieved {verdict.fmt(load.get('achieved'))}, accepted "
        f"{verdict.fmt(load.get('accepted'))} events/s over {verdict.fmt(load.get('seconds'), 's')}, statuses "
        f"{load.get('statuses', load.get('error'))}; {r['under_load']['samples']} samples ran entirely under it\n"
        f"burst: {r['burst']['events']:,} late events over {r['burst']['days']} days x 3 projects sent at once: "
        f"every aggregate correct {r['burst']['seconds_after_last_202']:.1f}s after the last 202, "
        f"{r['burst']['runs']} Dagster runs"
    )


def cold_run(size: str) -> dict:
    text, raw = cold.run(size)
    speed = re.search(r"DuckDB/Parquet [\d.]+s = ([\d.]+)x faster", text)
    x = float(speed.group(1)) if speed else float("nan")
    return {
        "text": text,
        "raw": raw,
        "targets": [
            {"what": "cold tier: DuckDB over Parquet vs PostgreSQL, N-day aggregate", "target": f">= {COLD_SPEED_UP:.0f}x",
             "measured": f"{x:.1f}x", "met": x >= COLD_SPEED_UP},
            {"what": "cold tier: parity, identical results across engines", "target": "0 failed, identical",
             "kind": "check", "measured": "ok" if "days failed: 0" in text and "identical across engines: True" in text
             else "mismatch", "met": "days failed: 0" in text and "identical across engines: True" in text},
        ],
    }  # fmt: skip


def cold_render(r: dict) -> str:
    return r["text"]


def catchup_targets(r: dict) -> list[dict]:
    one, p = r["scaling"]["runs"][0], r["proof"]
    exact = (
        p["duplicated"] == 0
        and p["missing"] == 0
        and p["unexpected"] == 0
        and p["landed"] == p["acknowledged"] == p["sent"]
    )
    return [
        {"what": f"catch-up: one worker drains a backlog of {r['scaling']['acknowledged']:,} events",
         "target": "recorded (1 M at medium)", "met": None,
         "measured": f"{one['drain_s']:.1f} s = {one['rows_per_s']:,.0f} rows/s"},
        *(_workers_row(x, one, r["scaling"]) for x in r["scaling"]["runs"][1:]),
        {"what": "worker retry/offset proof: stop, ingest, restart, SIGKILL", "kind": "check",
         "target": "landed == acknowledged, 0 duplicated, 0 missing", "met": exact,
         "measured": f"sent {p['sent']:,}, acknowledged {p['acknowledged']:,}, landed {p['landed']:,}, "
                     f"duplicated {p['duplicated']}, missing {p['missing']}, unexpected {p['unexpected']}"},
    ]  # fmt: skip


def _workers_row(x: dict, one: dict, scaling: dict) -> dict:
    """A multi-worker drain's row; two workers are judged against ">= 1.6x one" by
    benchmarks/catchup_cpu.py `scaling_verdict` (not judged when one worker left no CPU to add)."""
    measured = f"{x['rows_per_s']:,.0f} rows/s = {x['rows_per_s'] / one['rows_per_s']:.2f}x one worker"
    verdict = scaling.get("two_vs_one_verdict") if x["workers"] == 2 else None
    if verdict is None:
        return {
            "what": f"catch-up: {x['workers']} workers",
            "target": "recorded",
            "met": None,
            "measured": measured,
        }
    row = {"what": "catch-up: 2 workers vs one", "target": ">= 1.6x one worker", "met": verdict["met"],
           "measured": f"{measured}; {verdict['text']}"}  # fmt: skip
    if verdict["met"] is None:  # "not judged on this machine" / "not measured", the reason in `measured`
        row["unjudged"] = verdict["text"].split(":", 1)[0]
    return row


def explain_targets(r: dict) -> list[dict]:
    results = r["results"]
    with_plan = sum(1 for q in results if q["plans"])
    return [
        {"what": "query plans: EXPLAIN ANALYZE captured for every dashboard query", "kind": "check",
         "target": f"{len(results)}/{len(results)}", "measured": f"{with_plan}/{len(results)}",
         "met": with_plan == len(results) > 0},
    ]  # fmt: skip


LANDING_VS_COPY = 0.5  # issue "Hot path at the machine's limit": one landing worker >= 0.5x binary COPY


def _copy_rate(result: dict | None) -> float | None:
    """Binary COPY rows/s a scenario measured, under the keys catch-up or ingest use (`copy.rows_per_s`)."""
    if not result:
        return None
    copy = result.get("copy") or (result.get("scaling") or {}).get("copy") or {}
    return copy.get("rows_per_s") if isinstance(copy, dict) else None


def landing_vs_copy(catchup: dict, ingest_result: dict | None) -> dict:
    """One catch-up worker's drain rate against binary COPY into the same table: catch-up's own COPY figure
    when benchmarks/catchup.py measures one (`copy: {"rows_per_s": …}`), else the ingest scenario's of the
    same suite run; neither -> not measured."""
    one = catchup["scaling"]["runs"][0]["rows_per_s"]
    copy, source = _copy_rate(catchup), "catch-up"
    if copy is None:
        copy, source = _copy_rate(ingest_result), "ingest scenario of this run"
    r = verdict.ratio(one, copy)
    return verdict.target(
        "landing: one worker draining the catch-up backlog vs binary COPY into events",
        f">= {LANDING_VS_COPY}x COPY",
        f"{one:,.0f} rows/s",
        None if r is None else r >= LANDING_VS_COPY,
        unjudged=None if copy is not None else "not measured: no COPY rate in this run (catch-up nor ingest)",
        ceiling=f"COPY {copy:,.0f} rows/s ({source})" if copy is not None else None,
        ratio_value=r,
        headline="landing.copy",
    )
