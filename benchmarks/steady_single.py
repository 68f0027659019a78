"""Steady single events at a fixed rate: how often the keeper recycles the embedded broker, and what each
recycle costs. `python -m benchmarks.steady_single [--rate 5000] [--seconds 150]`.

Why: benchmarks/sustained.py measures single events for 20 s after 10 M batch events, where one recycle lands
inside the run or not by chance. This runs the same shipped configuration (Tansu under its keeper, 2 API
processes with the spool on, one landing worker; pulseops/broker.py) but offers one rate of single events
(`POST /v1/events`, wrk -c64) for minutes, so recycles per minute and each recycle's 503 window are measured,
not sampled. Reports: offered and achieved 202/s, statuses, recycles (Tansu's pid changes) per minute, each
burst of 503s (first to last 503 with no 1 s gap), the broker's max RSS (target <= 1 GiB) and mean CPU, the
landing worker's restarts, and every acknowledged id checked against the landing ledger; a missing one is looked
up in the ingest spool before the run's state directory goes (`spool_trace`).

A/B: run it from a git worktree of the base commit too (cwd there, this venv's python), alternately.
Run it under `flock /tmp/pulseops-bench.lock`.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import uuid
from pathlib import Path

from benchmarks import wrk
from benchmarks.harness import Services, free_port, scratch_database, services_env
from benchmarks.load import ledger_check, tenant, warm_up
from benchmarks.sustained import Sampler, keeper
from pulseops.settings import Settings

# 503s closer together than this belong to one window (one recycle, or one pause).
WINDOW_GAP_S = 1.0


def windows_503(answers: list) -> list[tuple[float, float, int]]:
    """(first, last, count) of each run of 503 answers no more than WINDOW_GAP_S apart."""
    times = sorted(t for t, status, _ in answers if status == 503)
    out: list[tuple[float, float, int]] = []
    for t in times:
        if out and t - out[-1][1] <= WINDOW_GAP_S:
            first, _, n = out[-1]
            out[-1] = (first, t, n + 1)
        else:
            out.append((t, t, 1))
    return out


def spool_trace(spool_dir: Path, ids: list[str]) -> dict[str, str]:
    """Which spool segments still hold each (missing) event id (its text is in the journaled message). An id in
    none was pruned (the landing group's committed offsets passed its ack on the same topic id:
    api/ingest/reconcile.py) or never journaled; one still there is pending or was set aside (`stuck/`). Read
    the segment's markers with api.ingest.spool.read_records (benchmarks never import the services' code)."""
    out: dict[str, list[str]] = {i: [] for i in ids}
    for path in sorted(spool_dir.rglob("*.seg")):
        data = path.read_bytes()
        for i in ids:
            if i.encode() in data:
                out[i].append(str(path.relative_to(spool_dir)))
    return {
        i: ", ".join(found) or "in no segment (pruned as landed, or never journaled)"
        for i, found in out.items()
    }


def run(rate: float, seconds: float, limits: dict[str, int] | None = None) -> dict:
    """`limits`: keeper settings to override, e.g. {"EMBEDDED_RECYCLE_BATCHES": 30000} (lowered limits make a
    short run recycle often enough to compare recycles per minute and each one's 503 window)."""
    if not wrk.available():
        raise SystemExit("wrk is required (apt-get install wrk)")
    settings = Settings()
    with scratch_database(settings.db.url) as db_url:
        port, metrics_port = free_port(), free_port()
        env = services_env(
            db_url, f"127.0.0.1:{port}", settings.redis.url, uuid.uuid4().hex[:6], metrics_port
        )
        env.update({"PULSEOPS_INGEST__RATE_PER_S": "1e9", "PULSEOPS_INGEST__BURST": "1e9"})
        env.update({f"PULSEOPS_KAFKA__{k}": str(v) for k, v in (limits or {}).items()})
        with keeper(env, port) as kp:
            svc = Services(env, free_port())
            try:
                svc.start_ingest(workers=2)
                worker = svc.start_worker(0)
                warm_up(svc.url, db_url)
                key, project = tenant(db_url, "steady", "steady")
                metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                with Sampler(kp.pid, svc, worker, svc.procs[0].pid, metrics_url) as smp:
                    smp.phase(f"single events at {rate:,.0f} req/s for {seconds:.0f} s")
                    r = wrk.run(svc.url, "/v1/events", seconds, body="event", keys=[key], rate=rate, log=True)
                    smp.phase("ledger check")
                    check = ledger_check(db_url, [project], wrk.acked_ids([r]), wait_s=120)
                    if check["missing"]:
                        spool = Path(env["PULSEOPS_STATE_DIR"]) / "spool"
                        check["spool"] = spool_trace(spool, check["missing_sample"])
                    smp.phase("done")
            finally:
                svc.stop()
    loaded = [s for s in smp.samples if s.get("broker_cpu_pct") is not None]
    pids = [s["broker_pid"] for s in smp.samples if s["broker_pid"]]  # 0: sampled while the port was closed
    recycles = sum(1 for a, b in itertools.pairwise(pids) if a != b)
    wins = windows_503(r.get("answers", []))
    return {
        "offered_rps": rate,
        "sent_rps": r["sent_rps"],
        "ok_rps": r["statuses"].get(202, 0) / r["seconds"],
        "statuses": r["statuses"],
        "p99_ms": r["p99_ms"],
        "seconds": r["seconds"],
        "recycles": recycles,
        "recycles_per_min": recycles / (r["seconds"] / 60),
        "windows_503_s": [round(last - first, 2) for first, last, _ in wins],
        "windows_503_n": [n for *_, n in wins],
        "broker_rss_max_mib": max(s["broker_rss"] for s in smp.samples) / 2**20,
        "broker_cpu_pct_mean": statistics.fmean(s["broker_cpu_pct"] for s in loaded) if loaded else None,
        "worker_restarts": smp.restarts,
        "check": check,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.steady_single", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rate", type=float, default=5000.0, help="Single-event requests/s offered in all.")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--records", type=int, help="kafka.embedded_recycle_records for this run")
    parser.add_argument("--batches", type=int, help="kafka.embedded_recycle_batches for this run")
    args = parser.parse_args(argv)
    limits = {"EMBEDDED_RECYCLE_RECORDS": args.records, "EMBEDDED_RECYCLE_BATCHES": args.batches}
    started = time.monotonic()
    res = run(args.rate, args.seconds, {k: v for k, v in limits.items() if v is not None})
    for k, v in res.items():
        print(f"{k}: {v}")
    print(f"wall: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
