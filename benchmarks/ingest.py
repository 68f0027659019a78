"""Ingest and landing benchmark: `python -m benchmarks.ingest --size small|medium|large`.

Figures, all from one run on this machine:
  1. HTTP ingest with wrk (C, epoll; 2 threads, 64 connections, same machine): single events and batches of
     100 and 1,000, req/s, events/s and p50/p95/p99 latency. wrk against /healthz in the same run shows what
     the load generator + server can do on a trivial endpoint, i.e. that wrk is not the bottleneck.
  2. Landing: one worker process drains the backlog the HTTP load left in Kafka; rows/s landed.
  3. PostgreSQL's own COPY rate (binary COPY, 50k rows per COPY+commit) into the same `events` table.
  4. 202 -> visible: events sent at a fixed rate (default 20,000 events/s in batches of 100) with a running
     worker; for one event per batch, the time from the 202 to its row being visible to a reader.
Writes a dated Markdown report with raw output to docs/benchmarks/ unless --no-report.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import pstats
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import psycopg

from benchmarks.harness import (
    Services,
    free_port,
    machine_notes,
    scratch_database,
    services_env,
    tansu,
    wait_for,
)
from benchmarks.report import write_report
from pulseops.settings import Settings
from warehouse.partitions import ensure_window
from warehouse.tenants import create_api_key, ensure_org, ensure_project

SIZES = {
    "small": {"wrk_s": 2, "landing_window_s": 5, "copy_rows": 100_000, "fresh_s": 3, "fresh_rate": 5_000},
    "medium": {
        "wrk_s": 10,
        "landing_window_s": 30,
        "copy_rows": 1_000_000,
        "fresh_s": 20,
        "fresh_rate": 20_000,
    },
    "large": {
        "wrk_s": 30,
        "landing_window_s": 60,
        "copy_rows": 2_000_000,
        "fresh_s": 60,
        "fresh_rate": 20_000,
    },
}

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


def http_scenarios(svc: Services, key: str, seconds: int, raw: list[str]) -> tuple[list[dict], int]:
    results = []
    health = run_wrk(f"{svc.url}/healthz", WRK_DONE, seconds, raw=raw)
    results.append({"case": "GET /healthz (load-generator ceiling)", "events": 0, **health})
    accepted = 0
    for label, path, body, n in (
        ("1 event/request", "/v1/events", orjson.dumps(_event(1)), 1),
        ("100 events/request", "/v1/batch", orjson.dumps({"batch": [_event(i) for i in range(100)]}), 100),
        (
            "1,000 events/request",
            "/v1/batch",
            orjson.dumps({"batch": [_event(i) for i in range(1000)]}),
            1000,
        ),
    ):
        r = run_wrk(f"{svc.url}{path}", _lua_post(key, body), seconds, raw=raw)
        ok = r["requests"] - r["status_errors"]
        accepted += ok * n
        results.append({"case": label, "events": n, **r, "events_per_s": ok * n / (r["duration_us"] / 1e6)})
    return results, accepted


def landed(db_url: str) -> int:
    with psycopg.connect(db_url) as conn:
        return conn.execute("SELECT count(*) FROM event_ids").fetchone()[0]


def landing_scenario(svc: Services, db_url: str, backlog: int, window_s: int, profile: Path | None) -> dict:
    worker = svc.start_worker(profile_to=profile)
    wait_for(lambda: landed(db_url) > 0, 60, "first rows landed", 0.05)
    t0, n0 = time.monotonic(), landed(db_url)
    while time.monotonic() - t0 < window_s:
        time.sleep(0.5)
        if landed(db_url) >= backlog:
            break
    t1, n1 = time.monotonic(), landed(db_url)
    worker.terminate()
    worker.wait(30)
    svc.procs.remove(worker)
    return {"rows": n1 - n0, "seconds": t1 - t0, "rows_per_s": (n1 - n0) / (t1 - t0), "backlog": backlog}


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


async def _freshness(url: str, key: str, db_url: str, project_id, rate: int, seconds: int) -> dict:
    batch = 100
    pending: dict[uuid.UUID, float] = {}
    delays: list[float] = []
    lock = threading.Lock()
    stop = threading.Event()
    statuses: dict[int, int] = {}

    def poll() -> None:
        with psycopg.connect(db_url, autocommit=True) as conn:
            while not stop.is_set() or pending:
                with lock:
                    ids = list(pending)
                if ids:
                    seen = conn.execute(
                        "SELECT event_id FROM event_ids WHERE project_id = %s AND event_id = ANY(%s)",
                        (project_id, ids),
                    ).fetchall()
                    now = time.monotonic()
                    with lock:
                        for (eid,) in seen:
                            delays.append(now - pending.pop(eid))
                time.sleep(0.01)
                if stop.is_set() and time.monotonic() > deadline_after_stop[0]:
                    break

    deadline_after_stop = [float("inf")]
    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    interval = batch / rate
    # Open-loop sender, bounded in flight: if the system falls behind, it shows as a lower achieved rate.
    in_flight = asyncio.Semaphore(64)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    timeout = httpx.Timeout(30, pool=None)
    async with httpx.AsyncClient(
        base_url=url, headers={"X-API-Key": key}, timeout=timeout, limits=limits
    ) as client:

        async def send_one() -> None:
            events = [{**_event(i), "event_id": str(uuid.uuid4())} for i in range(batch)]
            async with in_flight:
                r = await client.post("/v1/batch", content=orjson.dumps({"batch": events}))
            acked = time.monotonic()
            statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
            if r.status_code == 202:
                with lock:
                    pending[uuid.UUID(events[0]["event_id"])] = acked

        tasks = []
        start = time.monotonic()
        k = 0
        while time.monotonic() - start < seconds:
            target = start + k * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send_one()))
            k += 1
        await asyncio.gather(*tasks)
        achieved = k * batch / (time.monotonic() - start)
    deadline_after_stop[0] = time.monotonic() + 30
    stop.set()
    poller.join()
    delays.sort()
    q = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))] if delays else float("nan")  # noqa: E731
    return {
        "target_events_per_s": rate,
        "achieved_events_per_s": achieved,
        "samples": len(delays),
        "unseen": len(pending),
        "p50_s": q(0.50),
        "p95_s": q(0.95),
        "max_s": delays[-1] if delays else float("nan"),
        "statuses": statuses,
    }


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


def run(size: str, profile: bool) -> dict:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is required (apt-get install wrk)")
    cfg = SIZES[size]
    settings = Settings()
    raw: list[str] = []
    out: dict = {"size": size, "config": cfg, "machine": machine_notes()}
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap:
        key, _, _ = _tenant(db_url, "load")
        suffix = uuid.uuid4().hex[:6]
        svc = Services(services_env(db_url, bootstrap, settings.redis.url, suffix), free_port())
        try:
            svc.start_ingest(workers=2)
            out["http"], backlog = http_scenarios(svc, key, cfg["wrk_s"], raw)
            print(f"http done: {[(h['case'], round(h['rps'])) for h in out['http']]}", flush=True)
            svc.stop()  # the landing worker gets the machine's two cores to itself
            prof = Path(tempfile.gettempdir()) / f"pulseops-worker-{suffix}.prof" if profile else None
            out["landing"] = landing_scenario(svc, db_url, backlog, cfg["landing_window_s"], prof)
            if prof is not None:
                out["landing_profile"] = _profile_summary(prof)
        finally:
            svc.stop()
        _, copy_org, copy_project = _tenant(db_url, "copy")
        out["copy"] = copy_baseline(db_url, cfg["copy_rows"], copy_org, copy_project)
        out["landing_vs_copy"] = out["landing"]["rows_per_s"] / out["copy"]["rows_per_s"]
        print(f"landing {out['landing']}, copy {out['copy']}", flush=True)
        key2, _, project2 = _tenant(db_url, "fresh")
        svc2 = Services(services_env(db_url, bootstrap, settings.redis.url, suffix + "f"), free_port())
        try:
            svc2.start_ingest(workers=2)
            svc2.start_worker()
            # warm up: consumer group joined and first batch landed
            asyncio.run(_freshness(svc2.url, key2, db_url, project2, 1000, 3))
            out["freshness"] = asyncio.run(
                _freshness(svc2.url, key2, db_url, project2, cfg["fresh_rate"], cfg["fresh_s"])
            )
        finally:
            svc2.stop()
    out["raw"] = "\n".join(raw)
    return out


def render(r: dict) -> str:
    lines = ["== HTTP ingest (wrk -t2 -c64, same machine) =="]
    lines.append(
        f"{'case':40} {'req/s':>10} {'events/s':>11} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'non-2xx':>8}"
    )
    for h in r["http"]:
        lines.append(
            f"{h['case']:40} {h['rps']:10,.0f} {h.get('events_per_s', 0):11,.0f} {h['p50_ms']:8.2f} "
            f"{h['p95_ms']:8.2f} {h['p99_ms']:8.2f} {h['status_errors']:8d}"
        )
    la, cp = r["landing"], r["copy"]
    lines += [
        "",
        "== Landing (one worker process draining the backlog) ==",
        f"rows landed {la['rows']:,} in {la['seconds']:.1f}s = {la['rows_per_s']:,.0f} rows/s (backlog {la['backlog']:,})",
        f"PostgreSQL binary COPY into events, same run: {cp['rows']:,} rows in {cp['seconds']:.1f}s = "
        f"{cp['rows_per_s']:,.0f} rows/s",
        f"landing / COPY = {r['landing_vs_copy']:.2f}",
    ]
    f = r["freshness"]
    lines += [
        "",
        f"== 202 -> visible at {f['target_events_per_s']:,} events/s target (achieved {f['achieved_events_per_s']:,.0f}) ==",
        f"samples {f['samples']}, unseen {f['unseen']}, p50 {f['p50_s'] * 1000:.0f} ms, p95 {f['p95_s'] * 1000:.0f} ms, "
        f"max {f['max_s'] * 1000:.0f} ms, statuses {f['statuses']}",
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
