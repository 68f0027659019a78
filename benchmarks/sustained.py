"""Steady state: does ingest after millions of events run as fast as at the start, with the broker's memory
bounded? `python -m benchmarks.sustained --size small|medium|large [--recycle] [--no-report]`.

Runs the shipped configuration on a scratch database: the embedded broker as `pulseops up` runs it (Tansu under
its keeper, `python -m pulseops.broker`, which restarts it once it is large and landed, pausing ingest while
landing lags: pulseops/broker.py; --recycle lowers its thresholds so that a short run recycles several times),
2 API processes with the spool on, one landing worker. Phases, all driven over HTTP with wrk (benchmarks/wrk.py):
  1. single events (`POST /v1/events`, -c64) for `single_s`: req/s *before*;
  2. `events` events in batches of 1,000 (`POST /v1/batch`), in rounds of `round_events` each followed by a
     wait until the worker landed them (steady state, not a backlog the broker must hold);
  3. once landing is idle (benchmarks/sustained_quiet.py), single events again for `single_s`: req/s *after*; ratio after /
     before (target >= 0.9);
  4. every acknowledged event id checked against the landing ledger (`benchmarks.load.ledger_check`).
Every second throughout, from /proc: the broker's (Tansu's) RSS and CPU, the keeper's recycles (Tansu's pid
changes), the landing worker's and API processes' RSS, and landed rows/s from the worker's metrics. Target:
broker RSS <= 1 GiB at every sample. It works whether ingest publishes one Kafka message per event or one per
request (format 2): it only speaks HTTP.

Result (suite protocol, benchmarks/suite.py): figures, "series" for plots, "raw" wrk output, "targets" rows
(the ratio row carries "headline": "sustained"). Run it under `flock /tmp/pulseops-bench.lock` on a shared
machine.
"""

from __future__ import annotations

import argparse
import itertools
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx

from benchmarks import wrk
from benchmarks.harness import (
    OVERFLOW_PORT_OFFSET,
    ROOT,
    Services,
    free_port,
    machine_notes,
    scratch_database,
    services_env,
    stop_processes,
    wait_for,
)
from benchmarks.load import ledger_check, tenant, warm_up
from benchmarks.report import plot_series, write_report
from benchmarks.sustained_quiet import ledger_counter, wait_quiet
from pulseops.settings import Settings

# recycle_rss: the keeper's threshold with --recycle (small's is low so that a short run recycles too).
SIZES = {
    "small": {"events": 200_000, "round_events": 100_000, "single_s": 5, "recycle_rss": 48 * 2**20},
    "medium": {"events": 10_000_000, "round_events": 500_000, "single_s": 20, "recycle_rss": 512 * 2**20},
    "large": {"events": 30_000_000, "round_events": 1_000_000, "single_s": 30, "recycle_rss": 512 * 2**20},
}
RECYCLE_RECORDS = 300_000
BATCH = 1000
RATIO_TARGET = 0.9
RSS_TARGET = 1024**3
CLK = os.sysconf("SC_CLK_TCK")


# -- /proc -------------------------------------------------------------------------------------------------
def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK
    except (OSError, ValueError, IndexError):
        return 0.0


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, all processes: the shared machine's other load
    shows here, not in the processes this benchmark samples)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK  # all but idle and iowait


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _landed_total(metrics_url: str) -> float | None:
    """Rows landed by the worker at `metrics_url` plus its overflow lander's (OVERFLOW_PORT_OFFSET ports up),
    which lands every hot project's rows; None while the worker does not answer."""
    port = int(metrics_url.rsplit(":", 1)[1].split("/", 1)[0])
    lander = metrics_url.replace(f":{port}/", f":{port + OVERFLOW_PORT_OFFSET}/")
    counts = []
    for url in (metrics_url, lander):
        try:
            m = re.search(r"^pulseops_landing_rows_total (\S+)$", httpx.get(url, timeout=1).text, re.M)
        except httpx.HTTPError:  # the lander: none (no overflow topic), or restarting
            m = None
        counts.append(float(m.group(1)) if m else None)
    return None if counts[0] is None else counts[0] + (counts[1] or 0.0)


@dataclass
class Sampler:
    """Samples once a second in a thread: Tansu (the keeper's child), the worker, the API processes. Like
    supervisord under `pulseops up`, it starts the landing worker again when it died (counted in `restarts`:
    librdkafka 2.12 can crash when the broker restarts under it; pulseops/broker.py)."""

    keeper_pid: int
    svc: Services
    worker: subprocess.Popen
    api_pid: int
    metrics_url: str
    restarts: list[tuple[float, int]] = field(default_factory=list)
    t0: float = field(default_factory=time.monotonic)
    samples: list[dict] = field(default_factory=list)
    phases: list[tuple[float, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def phase(self, name: str) -> None:
        self.phases.append((time.monotonic() - self.t0, name))
        print(f"[{time.monotonic() - self.t0:7.1f}s] {name}", flush=True)

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        last: dict | None = None
        while not self._stop.is_set():
            t = time.monotonic() - self.t0
            if self.worker.poll() is not None:
                self.restarts.append((round(t, 1), self.worker.returncode))
                print(
                    f"[{t:7.1f}s] landing worker exited ({self.worker.returncode}): started again", flush=True
                )
                self.svc.procs.remove(self.worker)
                self.worker = self.svc.start_worker(0)
                last = None
            kids = _children(self.keeper_pid)
            broker = kids[0] if kids else 0
            api = [self.api_pid, *_children(self.api_pid)]
            workers = [self.worker.pid, *_children(self.worker.pid)]  # the worker and its overflow lander
            s = {
                "t": round(t, 2),
                "broker_pid": broker,
                "broker_rss": _rss(broker) if broker else 0,
                "broker_cpu_s": _cpu_s(broker) if broker else 0.0,
                "worker_rss": sum(_rss(p) for p in workers),
                "worker_pid": self.worker.pid,
                "worker_pids": workers,
                "worker_cpu_s": sum(_cpu_s(p) for p in workers),
                "api_rss": sum(_rss(p) for p in api),
                "api_cpu_s": sum(_cpu_s(p) for p in api),
                "machine_busy_s": _machine_busy_s(),
                "landed": _landed_total(self.metrics_url),
            }
            if last is not None and s["t"] > last["t"]:
                dt = s["t"] - last["t"]
                s["api_cpu_pct"] = 100 * (s["api_cpu_s"] - last["api_cpu_s"]) / dt
                s["machine_busy_pct"] = 100 * (s["machine_busy_s"] - last["machine_busy_s"]) / dt
                if last["worker_pids"] == s["worker_pids"]:
                    s["worker_cpu_pct"] = 100 * (s["worker_cpu_s"] - last["worker_cpu_s"]) / dt
            if last is not None and last["broker_pid"] == broker and s["t"] > last["t"]:
                dt = s["t"] - last["t"]
                s["broker_cpu_pct"] = 100 * (s["broker_cpu_s"] - last["broker_cpu_s"]) / dt
                if s["landed"] is not None and last["landed"] is not None and s["landed"] >= last["landed"]:
                    s["landed_per_s"] = (s["landed"] - last["landed"]) / dt
            self.samples.append(s)
            last = s
            self._stop.wait(1.0)

    def rss_at(self, t: float) -> int:
        before = [s for s in self.samples if s["t"] <= t]
        return before[-1]["broker_rss"] if before else 0


@contextmanager
def keeper(env: dict[str, str], port: int) -> Iterator[subprocess.Popen]:
    """The embedded broker the way `pulseops up` runs it (pulseops/services.py `tansu_program`)."""
    proc = subprocess.Popen([sys.executable, "-m", "pulseops.broker", "--port", str(port)], env=env, cwd=ROOT)
    try:
        wait_for(lambda: _listening(port) and _children(proc.pid), 30, "broker keeper up")
        yield proc
    finally:
        stop_processes([proc])


def _listening(port: int) -> bool:
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _single(url: str, key: str, seconds: float, raw: list[str]) -> dict:
    """Single events as fast as 64 connections go; `ok_rps` counts 202s only (a quick 503 is no throughput)."""
    r = wrk.run(url, "/v1/events", seconds, body="event", keys=[key], raw=raw)
    r["ok_rps"] = r["statuses"].get(202, 0) / r["seconds"]
    print(f"  single events: {r['ok_rps']:,.0f} req/s answered 202, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
          f"statuses {r['statuses']}", flush=True)  # fmt: skip
    return r


def run(size: str, recycle: bool = False) -> dict:
    """The product's defaults, or with `recycle` the keeper recycling the broker already past `recycle_rss` or
    RECYCLE_RECORDS (to exercise many recycles in one run)."""
    if not wrk.available():
        raise SystemExit("wrk is required (apt-get install wrk)")
    cfg = SIZES[size]
    settings = Settings()
    raw: list[str] = []
    started = datetime.now(UTC)
    with scratch_database(settings.db.url) as db_url:
        port = free_port()
        metrics_port = free_port()
        env = services_env(
            db_url, f"127.0.0.1:{port}", settings.redis.url, uuid.uuid4().hex[:6], metrics_port
        )
        env.update({"PULSEOPS_INGEST__RATE_PER_S": "1e9", "PULSEOPS_INGEST__BURST": "1e9"})
        if recycle:
            env["PULSEOPS_KAFKA__EMBEDDED_RECYCLE_RSS_BYTES"] = str(cfg["recycle_rss"])
            env["PULSEOPS_KAFKA__EMBEDDED_RECYCLE_RECORDS"] = str(RECYCLE_RECORDS)
        with keeper(env, port) as kp:
            svc = Services(env, free_port())
            try:
                svc.start_ingest(workers=2)
                worker = svc.start_worker(0)
                api = svc.procs[0]
                warm_up(svc.url, db_url)
                key, project = tenant(db_url, "sustained", "sustained")
                metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
                with (
                    Sampler(kp.pid, svc, worker, api.pid, metrics_url) as smp,
                    ledger_counter(db_url, project) as landed,
                ):
                    runs: list[dict] = []
                    smp.phase("single events, before")
                    before = _single(svc.url, key, cfg["single_s"], raw)
                    runs.append(before)
                    wait_quiet(landed, wrk.accepted_events(before), 120)
                    smp.phase(f"{cfg['events']:,} events in batches of {BATCH:,}")
                    batch_t0 = time.monotonic()
                    sent = refused = 0
                    batch_runs: list[dict] = []
                    while sent < cfg["events"]:
                        want = min(cfg["round_events"], cfg["events"] - sent)
                        seconds = max(1, round(want / 250_000))  # ~ the API's batch ceiling
                        r = wrk.run(svc.url, "/v1/batch", seconds, body="batch", events=BATCH, keys=[key],
                                    rate=want / BATCH / seconds, raw=raw)  # fmt: skip
                        batch_runs.append(r)
                        sent += wrk.accepted_events(r)
                        landed_in = wait_quiet(landed, sent + sum(wrk.accepted_events(x) for x in runs), 600)
                        print(f"  {sent:,} acknowledged; this round: {wrk.accepted_events(r) / r['seconds']:,.0f} events/s, "
                              f"landed {landed_in if landed_in is None else round(landed_in, 1)} s after; "
                              f"statuses {r['statuses']}", flush=True)  # fmt: skip
                        if r["statuses"].get(202, 0) == 0:
                            # all 503: the keeper's pause while landing catches up (pulseops/pressure.py) or a
                            # recycle in progress; anything else, or a pause that never ends, is a failure
                            refused += 1
                            if set(r["statuses"]) - {503} or refused > 60:
                                raise RuntimeError(f"no batch acknowledged: {r['statuses']}")
                            time.sleep(1)
                        else:
                            refused = 0
                    batch_s = time.monotonic() - batch_t0
                    runs += batch_runs
                    smp.phase("waiting until landing is idle")
                    wait_quiet(landed, 0, 600)
                    smp.phase("single events, after")
                    after_start = time.monotonic() - smp.t0
                    after = _single(svc.url, key, cfg["single_s"], raw)
                    runs.append(after)
                    smp.phase("ledger check")
                    check = ledger_check(db_url, [project], wrk.acked_ids(runs), wait_s=120)
                    smp.phase("done")
            finally:
                svc.stop()
    return _result(
        size, recycle, cfg, started, before, after, batch_runs, batch_s, check, smp, after_start, raw
    )


def phase_mean(smp: Sampler, name: str, key: str = "broker_cpu_pct") -> float | None:
    """Mean of a per-second CPU figure over the samples of one phase."""
    spans = [*smp.phases, (float("inf"), "")]
    for (t, n), (t_next, _) in itertools.pairwise(spans):
        if n == name:
            vals = [s[key] for s in smp.samples if t < s["t"] <= t_next and key in s]
            return sum(vals) / len(vals) if vals else None
    return None


def _cpu_single(smp: Sampler, before: dict, after: dict) -> dict:
    """CPU during each single-event run. API CPU ms per answered request the same in both = the API itself did
    not get slower; a busier whole machine (the shared machine's other load) or landing worker = contention."""
    out = {}
    for which, run in (("before", before), ("after", after)):
        name = f"single events, {which}"
        api = phase_mean(smp, name, "api_cpu_pct")
        out[which] = {
            "api_pct": api,
            "api_ms_per_request": None if api is None or not run["rps"] else 10 * api / run["rps"],
            "landing_pct": phase_mean(smp, name, "worker_cpu_pct"),
            "machine_busy_pct": phase_mean(smp, name, "machine_busy_pct"),
        }
    return out


def _result(
    size, recycle, cfg, started, before, after, batch_runs, batch_s, check, smp, after_start, raw
) -> dict:
    samples = smp.samples
    rss = [s["broker_rss"] for s in samples]
    pids = [s["broker_pid"] for s in samples if s["broker_pid"]]
    recycles = sum(1 for a, b in itertools.pairwise(pids) if a != b)
    # a recycle inside the after-run (the keeper recycles once landing caught up: right at its start when
    # the runs stored ~200k records) costs it 503s and a reconnect; say so next to the ratio
    after_end = after_start + after["seconds"]
    in_after = [s["broker_pid"] for s in samples if after_start <= s["t"] <= after_end and s["broker_pid"]]
    batch_events = sum(wrk.accepted_events(r) for r in batch_runs)

    def series(key: str, scale: float = 1.0) -> list[tuple[float, float]]:
        return [(s["t"], s[key] * scale) for s in samples if s.get(key) is not None]

    ratio = after["ok_rps"] / before["ok_rps"] if before["ok_rps"] else float("nan")
    max_rss = max(rss) if rss else 0
    ok_ledger = check["missing"] == 0 and check["duplicated"] == 0
    r = {
        "size": size,
        "recycle": recycle,
        "started": started.isoformat(),
        "config": cfg,
        "single_before": _brief(before),
        "single_after": _brief(after),
        "ratio": ratio,
        "batch_events": batch_events,
        "batch_seconds": batch_s,
        "batch_statuses": _sum_statuses(batch_runs),
        "broker_rss_max": max_rss,
        "broker_rss_at_after_start": smp.rss_at(after_start),
        "broker_rss_end": rss[-1] if rss else 0,
        "broker_recycles": recycles,
        "broker_recycles_in_after_run": sum(1 for a, b in itertools.pairwise(in_after) if a != b),
        "worker_restarts": smp.restarts,
        "broker_cpu_pct_single_before": phase_mean(smp, "single events, before"),
        "broker_cpu_pct_single_after": phase_mean(smp, "single events, after"),
        "cpu_single": _cpu_single(smp, before, after),
        "worker_rss_max": max((s["worker_rss"] for s in samples), default=0),
        "api_rss_first_last": (samples[0]["api_rss"], samples[-1]["api_rss"]) if samples else None,
        "ledger": check,
        "phases": smp.phases,
        "samples": samples,
        "series": {
            "RSS (MiB):broker (Tansu)": series("broker_rss", 1 / 2**20),
            "RSS (MiB):landing worker": series("worker_rss", 1 / 2**20),
            "RSS (MiB):API processes": series("api_rss", 1 / 2**20),
            "broker CPU (% of a core)": series("broker_cpu_pct"),
            "API CPU (% of a core)": series("api_cpu_pct"),
            "whole machine busy (% of a core)": series("machine_busy_pct"),
            "landed rows/s": series("landed_per_s"),
        },
        "raw": {"wrk": "\n".join(raw)},
        "load": os.getloadavg(),
    }
    r["targets"] = [
        {"what": "sustained: single events after vs before the batch phase (req/s)",
         "measured": f"{after['ok_rps']:,.0f} / {before['ok_rps']:,.0f} req/s (202s)", "ratio": ratio,
         "target": f">= {RATIO_TARGET}x", "met": ratio >= RATIO_TARGET, "kind": "target",
         "headline": "sustained"},
        {"what": "sustained: broker (Tansu) RSS, max of 1 s samples",
         "measured": f"{max_rss / 2**20:,.0f} MiB ({recycles} recycles)", "target": "<= 1 GiB",
         "met": max_rss <= RSS_TARGET, "kind": "target"},
        {"what": "sustained: landing worker crashes (started again, as supervisord would)",
         "measured": f"{len(smp.restarts)} {smp.restarts}", "target": "0", "met": not smp.restarts,
         "kind": "target"},
        {"what": "sustained: every acknowledged event landed once",
         "measured": f"{check['landed']:,} of {check['acknowledged']:,} landed, {check['missing']} missing, "
                     f"{check['duplicated']} duplicated",
         "target": "0 missing, 0 duplicated", "met": ok_ledger, "kind": "check"},
    ]  # fmt: skip
    return r


def _brief(r: dict) -> dict:
    return {
        k: r[k] for k in ("ok_rps", "rps", "p50_ms", "p95_ms", "p99_ms", "requests", "statuses", "seconds")
    }


def _sum_statuses(runs: list[dict]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in runs:
        for k, v in r["statuses"].items():
            out[k] = out.get(k, 0) + v
    return out


def render(r: dict) -> str:
    mib = lambda b: f"{b / 2**20:,.0f} MiB"  # noqa: E731
    b, a = r["single_before"], r["single_after"]
    cpu = lambda v: "n/a" if v is None else f"{v:.0f} %"  # noqa: E731
    ms = lambda v: "n/a" if v is None else f"{v:.3f}"  # noqa: E731
    lines = [
        f"== Sustained ingest ({r['size']}{', keeper recycling' if r['recycle'] else ''}): single events, {r['batch_events']:,} events in batches of "
        f"{BATCH:,}, single events again ==",
        f"single events before: {b['ok_rps']:,.0f} req/s answered 202 (p50 {b['p50_ms']:.1f} ms, p99 {b['p99_ms']:.1f} ms) "
        f"statuses {b['statuses']}",
        f"single events after:  {a['ok_rps']:,.0f} req/s answered 202 (p50 {a['p50_ms']:.1f} ms, p99 {a['p99_ms']:.1f} ms) "
        f"statuses {a['statuses']}",
        f"ratio after / before: {r['ratio']:.2f} (target >= {RATIO_TARGET}); broker recycles during the "
        f"after-run: {r['broker_recycles_in_after_run']}",
        f"batch phase: {r['batch_events']:,} events acknowledged in {r['batch_seconds']:.0f} s including "
        f"waits for landing; statuses {r['batch_statuses']}",
        f"broker RSS: max {mib(r['broker_rss_max'])} (target <= 1 GiB), at the start of the after-run "
        f"{mib(r['broker_rss_at_after_start'])}, at the end {mib(r['broker_rss_end'])}; "
        f"{r['broker_recycles']} recycles by the keeper; landing worker died and was started again "
        f"{len(r['worker_restarts'])} times {r['worker_restarts']}",
        f"broker CPU during single events: before {cpu(r['broker_cpu_pct_single_before'])}, "
        f"after {cpu(r['broker_cpu_pct_single_after'])}",
        "CPU during single events (% of a core; the machine has "
        + f"{os.cpu_count()} cores): "
        + "; ".join(
            f"{w}: API {cpu(c['api_pct'])} = {ms(c['api_ms_per_request'])} ms per request, landing worker "
            f"{cpu(c['landing_pct'])}, whole machine {cpu(c['machine_busy_pct'])}"
            for w, c in r["cpu_single"].items()
        ),
        f"landing worker RSS max {mib(r['worker_rss_max'])}; API processes RSS first/last "
        + ("n/a" if not r["api_rss_first_last"] else " / ".join(mib(x) for x in r["api_rss_first_last"])),
        "ledger: "
        + ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in r["ledger"].items()),
        "phases: " + "; ".join(f"{t:.0f} s {n}" for t, n in r["phases"]),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.sustained", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--no-report", action="store_true")
    parser.add_argument("--recycle", action="store_true", help="The keeper recycles the broker (experiment).")
    args = parser.parse_args(argv)
    notes = machine_notes()
    result = run(args.size, recycle=args.recycle)
    text = render(result)
    print(text)
    if not args.no_report:
        samples = "\n".join(
            " ".join(f"{k}={v}" for k, v in s.items() if k != "broker_cpu_s") for s in result["samples"]
        )
        name = "sustained-recycle" if args.recycle else "sustained"
        command = f"python -m benchmarks.sustained --size {args.size}" + (
            " --recycle" if args.recycle else ""
        )
        path = write_report(name, args.size, command, notes,
                            text, {**result["raw"], "samples (1 s)": samples})  # fmt: skip
        png = plot_series(result["series"], path.with_suffix(".png"), f"sustained ({args.size})")
        if png is not None:
            with path.open("a") as f:
                f.write(f"\n![broker RSS, CPU, landing over time]({png.name})\n")
        print(f"report: {path}" + (f", plot: {png}" if png else ""))
    failed = [t for t in result["targets"] if t["met"] is False]
    return 1 if any(t["kind"] == "check" for t in failed) else 0


if __name__ == "__main__":
    raise SystemExit(main())
