"""Ingest and landing benchmark: `python -m benchmarks.ingest --size small|medium|large`.

Runs in the shipped configuration (`pulseops up`, pulseops/cli.py): the embedded broker under its keeper
(`python -m pulseops.broker`, which recycles Tansu and pauses ingest while landing lags; started as
benchmarks/sustained.py does, with its Sampler restarting a worker that a recycle replaced, as supervisord does),
2 API processes with the ingest spool on, one landing worker running throughout, and Dagster's daemon (`harness.dagster_daemon`, ticking its sensors
about 8 s after start here; the report says whether it ran). Load is spread over
KEYS ingest keys with the product's default rate limit (20,000 events/s each), as many tenants would send it.

Figures, all from one run on this machine, with wrk (benchmarks/wrk.py: C, 2 threads, 64 connections,
fresh client-chosen event ids per request):
  1. Rounds alternating `/healthz` and ingest (single events, batches of 100 and of 1,000), so drift on a
     shared machine shows: req/s, events/s, p50/p95/p99, answers per status, requests never answered. `/healthz`
     is the same script with the same body bytes against the same API processes: the ceiling of generator +
     HTTP layer, in the same minutes.
  2. Landing: the API processes stop, the worker drains what is left; rows/s.
  3. PostgreSQL's own COPY rate (binary COPY, 50k rows per COPY+commit) into the same `events` table.
  4. Every event a 202 acknowledged, checked against the landing ledger (`benchmarks.load.ledger_check`).
Writes a dated Markdown report with raw output to docs/benchmarks/ unless --no-report.
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import pstats
import re
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import psycopg

from benchmarks import verdict, wrk
from benchmarks.catchup_instruments import scrape
from benchmarks.harness import (
    OVERFLOW_PORT_OFFSET,
    Services,
    dagster_daemon,
    free_port,
    machine_notes,
    scratch_database,
    services_env,
)
from benchmarks.load import ledger_check, tenant, warm_up
from benchmarks.report import write_report
from benchmarks.sustained import Sampler, keeper, phase_mean
from pulseops.settings import Settings
from warehouse.partitions import ensure_window
from warehouse.tenants import create_api_key, ensure_org, ensure_project

SIZES = {
    "small": {"wrk_s": 1, "rounds": 2, "landing_window_s": 30, "copy_rows": 100_000, "dagster": True},
    "medium": {"wrk_s": 5, "rounds": 3, "landing_window_s": 120, "copy_rows": 1_000_000, "dagster": True},
    "large": {"wrk_s": 15, "rounds": 3, "landing_window_s": 300, "copy_rows": 2_000_000, "dagster": True},
}
KEYS = 16  # x the default 20,000 events/s: room for the 250,000 events/s target
SINGLE_VS_HEALTHZ, BATCH100_EVENTS_S, BATCH1000_EVENTS_S = (
    0.5,
    150_000,
    250_000,
)  # issue "Hot path at the machine's limit"
CASES = (  # (case, path, body, events per request)
    ("1 event/request", "/v1/events", "event", 1),
    ("100 events/request", "/v1/batch", "batch", 100),
    ("1,000 events/request", "/v1/batch", "batch", 1000),
    # the SDK-compatible paths (docs/sdks.md), same events and keys: measured beside the native ones, no target
    ("PostHog /batch/, 100 events/request", "/batch/", "posthog", 100),
    ("Segment /v1/batch, 100 events/request", "/v1/batch", "segment", 100),
)
# Sampler columns (benchmarks/sustained.py), means over a run's 1 s samples: % of a core, landed rows/s
CPU_COLUMNS = ("api_cpu_pct", "broker_cpu_pct", "worker_cpu_pct", "machine_busy_pct", "landed_per_s")
SDK_CASES = ("PostHog /batch/, 100 events/request", "Segment /v1/batch, 100 events/request")

WRK_DONE = """
done = function(summary, latency, requests)
  io.write(string.format(
    "WRKJSON {\\"requests\\":%d,\\"duration_us\\":%d,\\"status_errors\\":%d,\\"connect_errors\\":%d," ..
    "\\"timeouts\\":%d,\\"p50_ms\\":%.3f,\\"p95_ms\\":%.3f,\\"p99_ms\\":%.3f}\\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000, latency:percentile(99) / 1000))
end
"""


def _lua_post(key: str, body: bytes) -> str:
    return (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["X-API-Key"] = "{key}"\n'
        f"wrk.body = [==[{body.decode()}]==]\n" + WRK_DONE
    )


def run_wrk(url: str, script: str, seconds: int, connections: int = 64, raw: list[str] | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    cmd = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s", f.name, url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    Path(f.name).unlink()
    if raw is not None:
        raw.append("$ " + " ".join(cmd) + "\n" + out)
    m = re.search(r"WRKJSON (\{.*\})", out)
    result = json.loads(m.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    return result


def _event(i: int) -> dict:
    return {
        "event": "page_view",
        "distinct_id": f"u-{i % 5000}",
        "properties": {"path": "/pricing", "plan": "pro"},
    }


def http_rounds(svc: Services, keys: list[str], cfg: dict, raw: list[str], smp: Sampler) -> list[dict]:
    """`rounds` x, per case, (/healthz with the case's body, then the case): each figure has its ceiling
    measured in the minute next to it, and drift across rounds shows. Each run is a phase of `smp`, so its
    CPU (API, broker, landing worker, whole machine) and landed rows/s show beside it: what a later round
    shares the machine with (the landing of earlier rounds' batches)."""
    runs = []
    for i in range(cfg["rounds"]):
        for case, path, body, n in CASES:
            smp.phase(name := f"round {i + 1}: GET /healthz, {case} body")
            h = wrk.run(svc.url, "/healthz", cfg["wrk_s"], method="GET", body=body, events=n,
                        collect_acks=False, raw=raw)  # fmt: skip
            runs.append({"round": i + 1, "case": f"GET /healthz, {case} body", "ceiling_of": case, **h,
                         "phase": name})  # fmt: skip
            smp.phase(name := f"round {i + 1}: {case}")
            r = wrk.run(svc.url, path, cfg["wrk_s"], body=body, events=n, keys=keys, raw=raw)
            runs.append({"round": i + 1, "case": case, **r, "phase": name})
        print(
            f"round {i + 1}: " + ", ".join(f"{r['case']} {r['rps']:,.0f} req/s" for r in runs[-6:]),
            flush=True,
        )
    return runs


def landed(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM event_ids").fetchone()[0]


def drain(metrics_port: int, window_s: float, idle_s: float = 3.0) -> dict:
    """With the API processes stopped, the running worker lands what is left: rows/s from now until the
    last growth of its landed-rows counter (idle for `idle_s`: drained) or the window's end.

    Progress is read from the worker's Prometheus counter, as the catch-up scenario does
    (benchmarks/catchup_instruments.py `scrape`): a count(*) over millions of ledger rows ten times a second
    would compete with the landing it measures. With an overflow topic, the worker's overflow lander
    (streams/__main__.py) counts too: hot projects' rows are landed there."""

    def landed() -> int:
        return scrape(metrics_port) + scrape(metrics_port + OVERFLOW_PORT_OFFSET)

    t0 = time.monotonic()
    n0 = landed()
    t_last, n_last = t0, n0
    while time.monotonic() - t0 < window_s and time.monotonic() - t_last < idle_s:
        time.sleep(0.1)
        n = landed()
        if n > n_last:
            t_last, n_last = time.monotonic(), n
    rows = n_last - n0
    return {"rows": rows, "seconds": t_last - t0, "rows_per_s": rows / (t_last - t0) if rows else float("nan"),
            "drained": time.monotonic() - t_last >= idle_s}  # fmt: skip


def copy_baseline(db_url: str, rows: int, org_id, project_id) -> dict:
    """PostgreSQL's own limit for this table: binary COPY straight into `events`, 50k rows per commit."""
    now = datetime.now(UTC)
    props = orjson.dumps({"path": "/pricing", "plan": "pro"}).decode()
    chunk = 50_000
    started = time.perf_counter()
    with psycopg.connect(db_url, autocommit=True) as conn:
        ensure_window(conn, now.date(), back_days=2, ahead_days=0)
        done = 0
        while done < rows:
            n = min(chunk, rows - done)
            with (
                conn.transaction(),
                conn.cursor() as cur,
                cur.copy(
                    "COPY events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at,"
                    " properties) FROM STDIN (FORMAT BINARY)"
                ) as copy,
            ):
                copy.set_types(
                    ["uuid", "timestamptz", "uuid", "uuid", "text", "text", "timestamptz", "jsonb"]
                )
                for i in range(done, done + n):
                    copy.write_row(
                        (project_id, now - timedelta(seconds=i % 86400), uuid.uuid4(), org_id, "page_view",
                         f"u-{i % 5000}", now, props)
                    )  # fmt: skip
            done += n
    took = time.perf_counter() - started
    return {"rows": rows, "seconds": took, "rows_per_s": rows / took}


def _tenant(db_url: str, slug: str) -> tuple[str, object, object]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        org_id = ensure_org(conn, "bench")
        project_id = ensure_project(conn, org_id, slug)
        _, key = create_api_key(
            conn, org_id=org_id, project_id=project_id, kind="ingest", rate_per_s=1e9, burst=1e9
        )
    return key, org_id, project_id


def _profile_summary(path: Path, top: int = 25) -> str:
    if not path.exists():
        return "(no profile written)"
    buf = io.StringIO()
    pstats.Stats(str(path), stream=buf).sort_stats("tottime").print_stats(top)
    return buf.getvalue()


@contextmanager
def kept_broker(
    db_url: str, redis_url: str, suffix: str, metrics_port: int
) -> Iterator[tuple[dict, subprocess.Popen]]:
    """The services' environment and the embedded broker as `pulseops up` runs it: Tansu as the child of its
    keeper (benchmarks/sustained.py `keeper`), which recycles it and pauses ingest while landing lags. A bare
    Tansu would measure a broker that no installation runs."""
    port = free_port()
    env = services_env(db_url, f"127.0.0.1:{port}", redis_url, suffix, metrics_port)
    with keeper(env, port) as proc:
        yield env, proc


def recycles(smp: Sampler, start: float = 0.0, end: float = float("inf")) -> int:
    """Recycles by the keeper between `start` and `end` (seconds on the Sampler's clock): Tansu's pid changes."""
    pids = [s["broker_pid"] for s in smp.samples if start <= s["t"] <= end and s["broker_pid"]]
    return sum(1 for a, b in itertools.pairwise(pids) if a != b)


def run(size: str, profile: bool) -> dict:
    if not wrk.available():
        raise SystemExit("wrk is required (apt-get install wrk)")
    cfg = SIZES[size]
    settings = Settings()
    raw: list[str] = []
    out: dict = {"size": size, "config": {**cfg, "keys": KEYS, "key_rate_per_s": settings.ingest.rate_per_s,
                                          "key_burst": settings.ingest.burst}, "machine": machine_notes()}  # fmt: skip
    with scratch_database(settings.db.url) as db_url, ExitStack() as stack:
        tenants = [tenant(db_url, "bench", f"load-{i}", rate=None) for i in range(KEYS)]
        keys, projects = [k for k, _ in tenants], [p for _, p in tenants]
        suffix = uuid.uuid4().hex[:6]
        metrics_port = free_port()  # the worker's counters: the drain is read there, not by count(*)
        env, kp = stack.enter_context(kept_broker(db_url, settings.redis.url, suffix, metrics_port))
        svc = Services(env, free_port())
        stack.callback(svc.stop)
        out["dagster"] = _dagster(stack, db_url, cfg["dagster"])
        svc.start_ingest(workers=2)
        prof = Path(tempfile.gettempdir()) / f"pulseops-worker-{suffix}.prof" if profile else None
        worker = svc.start_worker(profile_to=prof)
        api = svc.procs[0]
        warm_up(svc.url, db_url)
        out["spool"] = "on" if settings.spool.enabled else "off"
        with Sampler(kp.pid, svc, worker, api.pid, f"http://127.0.0.1:{metrics_port}/metrics") as smp:
            smp.phase("rounds")
            out["runs"] = http_rounds(svc, keys, cfg, raw, smp)
            smp.phase("landing drain")
            for r, name in ((r, r.pop("phase")) for r in out["runs"]):
                r["cpu"] = {k: phase_mean(smp, name, k) for k in CPU_COLUMNS}
            rounds_end = smp.phases[-1][0]
            acked = [r for r in out["runs"] if r["acked"]]
            acknowledged = sum(wrk.accepted_events(r) for r in acked)
            api.terminate()  # the worker goes on alone: what is left of the backlog measures landing
            api.wait(30)
            svc.procs.remove(api)
            out["landing"] = drain(metrics_port, cfg["landing_window_s"])
            # None: still running; a crash would explain events not landing
            out["worker_exit"] = smp.worker.poll()
            out["ledger"] = ledger_check(
                db_url, projects, wrk.acked_ids(acked), max(60.0, acknowledged / 5_000)
            )
        out["broker"] = {"recycles_in_rounds": recycles(smp, smp.phases[0][0], rounds_end),
                         "recycles": recycles(smp), "worker_restarts": len(smp.restarts),
                         "rss_max": max((s["broker_rss"] for s in smp.samples), default=0)}  # fmt: skip
        svc.stop()
        if prof is not None:
            out["landing_profile"] = _profile_summary(prof)
        _, copy_org, copy_project = _tenant(db_url, "copy")
        out["copy"] = copy_baseline(db_url, cfg["copy_rows"], copy_org, copy_project)
    out["landing_vs_copy"] = out["landing"]["rows_per_s"] / out["copy"]["rows_per_s"]
    out["missing_by_run"] = _missing_by_run(out["runs"], out["ledger"]["missing_sample"])
    for r in out["runs"]:
        r["acked"] = len(r["acked"])  # counted: the ids themselves were checked above
    out["raw"] = "\n".join(raw)
    out["summary"] = summarize(out)
    return out


def _missing_by_run(runs: list[dict], sample: list[str]) -> dict[str, int]:
    """Which wrk runs (case, round) the sampled missing ids came from: a run's ids share a prefix per thread."""
    prefixes = {}
    for r in runs:
        for first, _ in r["acked"]:
            prefixes[str(uuid.UUID(int=first))[:23]] = f"{r['case']}, round {r['round']}"
    out: dict[str, int] = {}
    for event_id in sample:
        where = prefixes.get(event_id[:23], "unknown")
        out[where] = out.get(where, 0) + 1
    return out


def _dagster(stack: ExitStack, db_url: str, wanted: bool) -> str:
    if not wanted:
        return "not started at this size"
    try:
        took = stack.enter_context(dagster_daemon(db_url))
    except TimeoutError as exc:
        return f"not running: {exc}"
    return f"running (late-data sensor ticked {took:.0f} s after start)"


def summarize(r: dict) -> dict:
    """Per case over all rounds: answered and accepted rates, latency percentiles (worst round), and the
    /healthz rounds beside them; ratios of totals, so every round counts for its duration."""
    by_case: dict[str, list[dict]] = {}
    for x in r["runs"]:
        by_case.setdefault(x["case"], []).append(x)
    out = {}
    for case, xs in by_case.items():
        seconds = sum(x["seconds"] for x in xs)
        n = xs[0]["events_per_request"] if "ceiling_of" not in xs[0] else 0
        ok = sum(x["statuses"].get(202, 0) + (x["statuses"].get(200, 0) if n else 0) for x in xs)
        out[case] = {
            "rounds": len(xs),
            "sent_rps": sum(x["sent"] for x in xs) / seconds,
            "rps": sum(x["requests"] for x in xs) / seconds,
            "accepted_rps": ok / seconds if n else sum(x["statuses"].get(200, 0) for x in xs) / seconds,
            "accepted_events_per_s": ok * n / seconds,
            "offered_events_per_s": sum(x["sent"] for x in xs) * n / seconds,
            "p50_ms": max(x["p50_ms"] for x in xs),
            "p95_ms": max(x["p95_ms"] for x in xs),
            "p99_ms": max(x["p99_ms"] for x in xs),
            "per_round_rps": [round(x["rps"]) for x in xs],
            "never_answered": sum(x["sent"] - x["requests"] for x in xs),
            "socket_errors": sum(x[k] for x in xs for k in ("connect_errors", "read_errors", "write_errors", "timeouts")),
            "statuses": _sum_statuses(xs),
        }  # fmt: skip
        if "ceiling_of" in xs[0]:
            out[case]["events_per_s"] = out[case]["accepted_rps"] * xs[0]["events_per_request"]
    return out


def _sum_statuses(xs: list[dict]) -> dict[int, int]:
    total: dict[int, int] = {}
    for x in xs:
        for k, v in x["statuses"].items():
            total[k] = total.get(k, 0) + v
    return total


def targets(r: dict) -> list[dict]:
    """The issue's ingest figures, judged only when the generator could offer what they need."""
    s = r["summary"]
    ceil = {case: s[f"GET /healthz, {case} body"] for case, *_ in CASES}
    health, single = ceil["1 event/request"], s["1 event/request"]
    ratio = verdict.ratio(single["accepted_rps"], health["accepted_rps"])
    rows = [
        verdict.target(
            "ingest: single events (202/s) vs /healthz of the same API processes, alternating rounds",
            f">= {SINGLE_VS_HEALTHZ}x /healthz",
            f"{single['accepted_rps']:,.0f} req/s accepted, p99 {single['p99_ms']:.1f} ms (rounds {single['per_round_rps']})",
            None if ratio is None else ratio >= SINGLE_VS_HEALTHZ,
            ceiling=f"/healthz {health['accepted_rps']:,.0f} req/s, p99 {health['p99_ms']:.1f} ms (rounds {health['per_round_rps']})",
            ratio_value=ratio, headline="ingest.single",
        )
    ]  # fmt: skip
    for case, required, hid in (("100 events/request", BATCH100_EVENTS_S, "ingest.batch100"),
                                ("1,000 events/request", BATCH1000_EVENTS_S, "ingest.batch1000")):  # fmt: skip
        x, c = s[case], ceil[case]
        rows.append(verdict.target(
            f"ingest: batches of {case.split()[0]} (accepted events/s)", f">= {required:,} events/s",
            f"{x['accepted_events_per_s']:,.0f} events/s accepted, p99 {x['p99_ms']:.0f} ms, "
            f"statuses {x['statuses']} (rounds {x['per_round_rps']} req/s)",
            x["accepted_events_per_s"] >= required,
            # wrk is closed loop (64 connections): it offers as fast as the server answers, so what it *could*
            # offer is its ceiling with the same body against /healthz in the same round, not its sent/s
            unjudged=verdict.shortfall(required, c["events_per_s"], ceiling=c["events_per_s"]),
            ceiling=f"/healthz, same body: {c['accepted_rps']:,.0f} req/s = {c['events_per_s']:,.0f} events/s",
            ratio_value=verdict.ratio(x["accepted_events_per_s"], c["events_per_s"]), headline=hid,
        ))  # fmt: skip
    native = s["100 events/request"]
    for case in SDK_CASES:  # measured next to the native batch of the same size, in the same rounds
        x, c = s[case], ceil[case]
        rows.append(verdict.target(
            f"ingest: {case} (accepted events/s, p95) beside native /v1/batch",
            "measured, no target",
            f"{x['accepted_events_per_s']:,.0f} events/s accepted, p95 {x['p95_ms']:.1f} ms, statuses "
            f"{x['statuses']}; native 100/request {native['accepted_events_per_s']:,.0f} events/s, p95 "
            f"{native['p95_ms']:.1f} ms",
            None,
            ceiling=f"/healthz, same body: {c['accepted_rps']:,.0f} req/s = {c['events_per_s']:,.0f} events/s",
            ratio_value=verdict.ratio(x["accepted_events_per_s"], native["accepted_events_per_s"]),
        ))  # fmt: skip
    la = r["landing"]
    rows += [
        verdict.target(
            "ingest: the running worker draining the backlog after the API stops vs binary COPY",
            f">= {SINGLE_VS_HEALTHZ}x COPY", f"{la['rows_per_s']:,.0f} rows/s over {la['rows']:,} rows",
            r["landing_vs_copy"] >= SINGLE_VS_HEALTHZ,
            unjudged=None if la["rows"] else "not measured: nothing was left to drain",
            ceiling=f"COPY {r['copy']['rows_per_s']:,.0f} rows/s", ratio_value=r["landing_vs_copy"],
        ),
        verdict.target("ingest: Dagster daemon during the run", "running (shipped configuration)", r["dagster"],
                       None),
        verdict.target("ingest: broker recycles by its keeper during the rounds", "measured, no target",
                       f"{r['broker']['recycles_in_rounds']} ({r['broker']['recycles']} in the whole run; landing "
                       f"worker restarted {r['broker']['worker_restarts']} times)", None),
        verdict.landed_check("ingest: every acknowledged event landed", r["ledger"]),
    ]  # fmt: skip
    return rows


def _cpu_cells(cpu: dict | None) -> str:
    if not cpu:
        return "CPU not sampled"
    f = lambda k: "-" if cpu.get(k) is None else f"{cpu[k]:,.0f}"  # noqa: E731
    return f"API {f('api_cpu_pct')} broker {f('broker_cpu_pct')} landing {f('worker_cpu_pct')} " \
           f"machine {f('machine_busy_pct')} landed/s {f('landed_per_s')}"  # fmt: skip


def render(r: dict) -> str:
    c = r["config"]
    lines = [
        f"shipped configuration: Tansu under its keeper, 2 API processes, spool {r['spool']}, one landing worker running, Dagster daemon "
        f"{r['dagster']}; {c['keys']} ingest keys at the default {c['key_rate_per_s']:,.0f} events/s "
        f"(burst {c['key_burst']:,.0f}) each; wrk -t2 -c64, {c['rounds']} alternating rounds of {c['wrk_s']} s",
        f"{'round':>5} {'case':40} {'sent/s':>8} {'answered/s':>10} {'events/s 202':>12} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'unanswered':>10}  statuses; then CPU, % of a core (API, broker, landing worker, "
        "whole machine) and landed rows/s, means of 1 s samples",
    ]
    for x in r["runs"]:
        n = x["events_per_request"] if "ceiling_of" not in x else 0
        lines.append(
            f"{x['round']:5d} {x['case']:40} {x['sent_rps']:8,.0f} {x['rps']:10,.0f} "
            f"{(x['statuses'].get(202, 0) + x['statuses'].get(200, 0) * (n > 0)) * n / x['seconds']:12,.0f} "
            f"{x['p50_ms']:8.2f} {x['p99_ms']:8.2f} "
            f"{x['sent'] - x['requests']:10d}  {x['statuses']}; {_cpu_cells(x.get('cpu'))}"
        )
    la, cp, lg, bk = r["landing"], r["copy"], r["ledger"], r["broker"]
    lines += [
        f"broker under its keeper (as pulseops up runs it): {bk['recycles_in_rounds']} recycles during the rounds, "
        f"{bk['recycles']} in the whole run; Tansu RSS max {bk['rss_max'] / 2**20:,.0f} MiB; landing worker "
        f"restarted {bk['worker_restarts']} times",
        f"landing after the API stopped: {la['rows']:,} rows in {la['seconds']:.1f}s = {la['rows_per_s']:,.0f} "
        f"rows/s (drained: {la['drained']})",
        f"PostgreSQL binary COPY into events, same run: {cp['rows']:,} rows in {cp['seconds']:.1f}s = "
        f"{cp['rows_per_s']:,.0f} rows/s; landing / COPY = {r['landing_vs_copy']:.2f}",
        f"every acknowledged id: acknowledged {lg['acknowledged']:,}, landed {lg['landed']:,}, missing "
        f"{lg['missing']:,}, duplicated {lg['duplicated']:,}, landed without a 202 seen (in flight when wrk "
        f"stopped) {lg['unacknowledged']:,}; waited {lg['waited_s']:.0f} s for the last to land; dead letters "
        f"{lg.get('dead_letter_messages', 0):,} {lg.get('dead_letter_reasons', '')}; landing worker "
        f"{'running' if r.get('worker_exit') is None else 'exited with ' + str(r['worker_exit'])}",
        *(
            [f"missing ids sampled: {lg['missing_sample']} from {r['missing_by_run']}"]
            if lg["missing"]
            else []
        ),
    ]
    return "\n".join(lines)


def save(r: dict, text: str, profile: bool) -> Path:
    raw = {"Raw wrk output": r["raw"]}
    if r.get("landing_profile"):
        raw["Landing worker profile (cProfile, top by own time)"] = r["landing_profile"]
    command = f"python -m benchmarks.ingest --size {r['size']}" + (" --profile" if profile else "")
    return write_report("ingest-landing", r["size"], command, r["machine"], text, raw)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.ingest", description=__doc__.split("\n")[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--profile", action="store_true", help="profile the landing worker with cProfile")
    parser.add_argument("--no-report", action="store_true")
    args = parser.parse_args(argv)
    result = run(args.size, args.profile)
    text = render(result)
    print(text)
    if not args.no_report:
        print(f"report: {save(result, text, args.profile)}")


if __name__ == "__main__":
    main()
