"""Single-event ingest vs /healthz, A/B of API code trees: `python -m benchmarks.single_ab --root /tmp/wt-base
--root . --rounds 3 --seconds 5`.

The `ingest` scenario (benchmarks/ingest.py) measures this figure among five cases and a landing drain (~5 min).
This one measures only what issue 17 judges (single events via `POST /v1/events` against `GET /healthz` of the
same API processes) in the shipped configuration (2 API processes, spool on, one landing worker, Dagster's
daemon), and alternates API processes started from each `--root` (a git worktree of another commit) on the
same broker, database, worker and Dagster, so base and change are measured in the same minutes:

  for each round, for each root (in reverse order every other round, so that drift in the broker, which
  stores more batches as the run goes on, favours neither): start 2 API processes from that root, wrk
  /healthz, wrk single events, stop.

Per run: req/s, p50/p99, statuses, and CPU per request of the whole machine (/proc/stat), of the API processes
and of Tansu. Every 202 is checked against the landing ledger at the end (nothing acknowledged lost).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import uuid
from contextlib import ExitStack
from pathlib import Path

import psutil

from benchmarks import wrk
from benchmarks.harness import (
    ROOT,
    Services,
    dagster_daemon,
    free_port,
    http_ok,
    scratch_database,
    services_env,
    stop_processes,
    tansu,
    wait_for,
)
from benchmarks.load import ledger_check, tenant, warm_up
from pulseops.settings import Settings

KEYS = 16  # as benchmarks/ingest.py: the product's default limit per key, load spread over 16 tenants


def machine_busy_s() -> float:
    """CPU seconds spent by the whole machine (all cores, everything but idle and iowait) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    ticks = [int(x) for x in fields]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(pid: int) -> float:
    """CPU seconds of a process and its live children (uvicorn's master and its workers)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def broker_pid(bootstrap: str) -> int | None:
    """The Tansu process listening on `bootstrap`'s port (benchmarks.harness.tansu does not expose it)."""
    port = bootstrap.rsplit(":", 1)[1]
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if any(f":{port}" in c for c in cmd) and "broker" in cmd:
            return p.pid
    return None


def start_api(env: dict[str, str], port: int, root: Path, workers: int = 2) -> subprocess.Popen:
    """`uvicorn api.main:app` as Services.start_ingest does, but importing the API from `root`."""
    env = {**env, "PYTHONPATH": str(root)}
    cmd = [sys.executable, "-m", "uvicorn", "api.main:app", "--factory", "--port", str(port),
           "--workers", str(workers), "--no-access-log", "--log-level", "warning"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=root)
    wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), 60, "ingest ready", 0.25)
    return proc


def count_fdatasyncs(pid: int, seconds: float) -> subprocess.Popen | None:
    """`perf stat` counting the fdatasync calls of the API processes (every thread) for `seconds`, or None
    without perf or its syscall tracepoints."""
    if shutil.which("perf") is None:
        return None
    try:
        pids = ",".join(str(p.pid) for p in psutil.Process(pid).children(recursive=True))
    except psutil.NoSuchProcess:
        return None
    return subprocess.Popen(
        ["timeout", "-s", "INT", str(seconds), "perf", "stat", "-x", ",", "-e", "syscalls:sys_enter_fdatasync",
         "-p", pids], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def fdatasyncs(proc: subprocess.Popen | None) -> int | None:
    if proc is None:
        return None
    err = proc.communicate()[1]
    for row in err.splitlines():
        if "fdatasync" in row and row.split(",")[0].isdigit():
            return int(row.split(",")[0])
    return None


def measured(url: str, path: str, seconds: float, api_pid: int, tansu_pid: int | None, **kw) -> dict:
    """One wrk run with the CPU the machine, the API processes and Tansu spent during it, and the API
    processes' fdatasyncs."""
    m0, a0 = machine_busy_s(), tree_cpu_s(api_pid)
    t0 = tree_cpu_s(tansu_pid) if tansu_pid else 0.0
    perf = count_fdatasyncs(api_pid, seconds)
    r = wrk.run(url, path, seconds, **kw)
    m1, a1 = machine_busy_s(), tree_cpu_s(api_pid)
    t1 = tree_cpu_s(tansu_pid) if tansu_pid else 0.0
    n = max(1, r["requests"])
    syncs = fdatasyncs(perf)
    r.update(machine_ms=(m1 - m0) * 1000 / n, api_ms=(a1 - a0) * 1000 / n, tansu_ms=(t1 - t0) * 1000 / n,
             machine_pct=(m1 - m0) * 100 / r["seconds"],
             syncs_per_s=None if syncs is None else syncs / r["seconds"])  # fmt: skip
    return r


def one_round(
    svc_env: dict, root: Path, keys: list[str], seconds: float, tansu_pid: int | None, rate: float = 0.0
) -> list[dict]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = start_api(svc_env, port, root)
    try:
        wrk.run(url, "/v1/events", 1, body="event", events=1, keys=keys, collect_acks=False)  # warm
        h = measured(url, "/healthz", seconds, proc.pid, tansu_pid, method="GET", body="event", events=1,
                     collect_acks=False)  # fmt: skip
        e = measured(url, "/v1/events", seconds, proc.pid, tansu_pid, body="event", events=1, keys=keys,
                     rate=rate)  # fmt: skip
    finally:
        stop_processes([proc])
    return [{"root": str(root), "case": "healthz", **h}, {"root": str(root), "case": "event", **e}]


def run(roots: list[Path], rounds: int, seconds: float, dagster: bool, rate: float = 0.0) -> list[dict]:
    settings = Settings()
    runs: list[dict] = []
    with scratch_database(settings.db.url) as db_url, tansu() as bootstrap, ExitStack() as stack:
        tenants = [tenant(db_url, "bench", f"load-{i}", rate=None) for i in range(KEYS)]
        keys, projects = [k for k, _ in tenants], [p for _, p in tenants]
        env = services_env(db_url, bootstrap, settings.redis.url, uuid.uuid4().hex[:6], free_port())
        if dagster:
            stack.enter_context(dagster_daemon(db_url))
        svc = Services(env, free_port())
        stack.callback(svc.stop)
        svc.start_worker()
        warm = start_api(env, svc.port, ROOT)
        warm_up(svc.url, db_url)
        stop_processes([warm])
        tansu_pid = broker_pid(bootstrap)
        for i in range(rounds):
            for root in roots if i % 2 == 0 else roots[::-1]:  # ABBA: neither is always measured second
                pair = one_round(env, root, keys, seconds, tansu_pid, rate)
                for r in pair:
                    r["round"] = i + 1
                    print(line(r), flush=True)
                runs += pair
        acked = [r for r in runs if r["acked"]]
        total = sum(wrk.accepted_events(r) for r in acked)
        ledger = ledger_check(db_url, projects, wrk.acked_ids(acked), max(60.0, total / 5_000))
        print(f"ledger: acknowledged {ledger['acknowledged']:,}, landed {ledger['landed']:,}, "
              f"missing {ledger['missing']:,}, duplicated {ledger['duplicated']:,}", flush=True)  # fmt: skip
    return runs


def line(r: dict) -> str:
    return (
        f"round {r['round']} {Path(r['root']).name or r['root']:>12} {r['case']:8} {r['rps']:9,.0f} req/s "
        f"p50 {r['p50_ms']:6.2f} p99 {r['p99_ms']:6.2f} ms  machine {r['machine_ms']:.3f} ms/req "
        f"({r['machine_pct']:.0f}%)  api {r['api_ms']:.3f}  tansu {r['tansu_ms']:.3f}  fdatasync/s "
        f"{r['syncs_per_s'] or 0:,.0f}  {r['statuses']}"
    )


def summary(runs: list[dict]) -> list[str]:
    """Per root: total req/s of single events and /healthz over all rounds, their ratio, worst p50/p99."""
    out = []
    for root in dict.fromkeys(r["root"] for r in runs):
        ev = [r for r in runs if r["root"] == root and r["case"] == "event"]
        hz = [r for r in runs if r["root"] == root and r["case"] == "healthz"]
        ok = sum(r["statuses"].get(202, 0) for r in ev) / sum(r["seconds"] for r in ev)
        hz_rps = sum(r["requests"] for r in hz) / sum(r["seconds"] for r in hz)
        sent = sum(r["sent"] for r in ev) / sum(r["seconds"] for r in ev)
        mach = sum(r["machine_ms"] * r["requests"] for r in ev) / sum(r["requests"] for r in ev)
        out.append(
            f"{root}: single events sent {sent:,.0f}/s, 202 {ok:,.0f}/s (rounds "
            f"{[round(r['rps']) for r in ev]}), /healthz {hz_rps:,.0f}/s (rounds {[round(r['rps']) for r in hz]})"
            f" = {ok / hz_rps:.2f}x; p50 max {max(r['p50_ms'] for r in ev):.2f} ms, p99 max "
            f"{max(r['p99_ms'] for r in ev):.2f} ms; machine {mach:.3f} ms CPU/request"
        )
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.single_ab", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--root", action="append", type=Path, help="API code tree (repeat to alternate)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--rate", type=float, default=0.0,
                        help="single events offered per second (0: as fast as 64 connections go)")  # fmt: skip
    parser.add_argument("--no-dagster", action="store_true", help="skip Dagster (not the shipped setup)")
    args = parser.parse_args(argv)
    if not wrk.available():
        raise SystemExit("wrk is required (apt-get install wrk)")
    roots = [r.resolve() for r in (args.root or [ROOT])]
    runs = run(roots, args.rounds, args.seconds, not args.no_dagster, args.rate)
    print("\n".join(summary(runs)))


if __name__ == "__main__":
    main()
