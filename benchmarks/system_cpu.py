"""CPU of the whole shipped system, idle and under maximum ingest: `python -m benchmarks.system_cpu
[--idle-s 300] [--ingest-s 300] [--warmup-s 60] [--report]`.

Starts the system exactly as a user does (`pulseops up`, no demo traffic: supervisord, the embedded broker
under its keeper, two API processes with the spool on, the landing worker, the Dagster daemon, webserver and
code server, the dashboard) on a scratch database, state directory and free ports, and waits until every
service is up and the Dagster daemon's first ticks are past (`--warmup-s`). Then two windows:
  1. idle: no traffic for `--idle-s`;
  2. ingest at its maximum: wrk, batches of 100, 64 connections, no pacing, for `--ingest-s` against an
     unlimited key (what the API accepts is the machine's limit; 503 `broker_full` while landing lags counts
     as an answer, not as offered load that vanished).
Each window reports, from /proc: the whole machine's busy share (/proc/stat: every process, PostgreSQL and
Redis included, i.e. the number the issue's "idle system <= 3 %" is about), and utime + stime of this system's
processes (found by the PULSEOPS_STATE_DIR every service inherits) per supervised service they descend from,
the Dagster ones (daemon, webserver, code server and the runs they start) together as "dagster". Processes are
sampled every SAMPLE_S, so one that starts and exits between two samples is missed and one that exits is
counted up to its last sample: at most SAMPLE_S of CPU per such process, stated in the report.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import psutil

from benchmarks import wrk
from benchmarks.harness import ROOT, free_port, http_ok, machine_notes, scratch_database, wait_for
from benchmarks.load import tenant
from benchmarks.report import write_report
from pulseops import runtime
from pulseops.settings import Settings

SAMPLE_S = 0.5
TOP = 8  # the busiest processes of each window, listed in the report


def service_of(p: psutil.Process, supervised: dict[int, str]) -> str:
    """The supervised service (its supervisord name without the -N of numprocs) a process descends from; the
    Dagster ones grouped as "dagster"; "pulseops up" for up and supervisord themselves."""
    with suppress(psutil.Error):
        for q in [p, *p.parents()]:
            if q.pid in supervised:
                name = (
                    supervised[q.pid].rsplit("-", 1)[0]
                    if supervised[q.pid][-1].isdigit()
                    else supervised[q.pid]
                )
                return "dagster" if name.startswith("dagster") else name
    return "pulseops up"


def system_processes(state: Path) -> list[psutil.Process]:
    """Every live process of this system: all of them inherit its PULSEOPS_STATE_DIR."""
    found = []
    for p in psutil.process_iter():
        with suppress(psutil.Error):
            if p.environ().get("PULSEOPS_STATE_DIR") == str(state):
                found.append(p)
    return found


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat; busy excludes idle and iowait."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - fields[3] - fields[4], total


def every_process() -> dict[int, tuple[str, float]]:
    """pid -> (process name, utime + stime) of every process on the machine."""
    out: dict[int, tuple[str, float]] = {}
    for p in psutil.process_iter(["name", "cpu_times"]):
        t = p.info["cpu_times"]
        if t is not None:
            # kernel threads by kind: "kworker/1:2-events" -> "kworker"
            out[p.pid] = ((p.info["name"] or "?").split("/")[0], t.user + t.system)
    return out


def others_by_name(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: set[int]
) -> dict[str, float]:
    """CPU seconds per process name of the processes that are not this system's (PostgreSQL, Redis, the
    benchmark itself, the machine's other services): what the whole-machine figure holds besides ours. A
    process that exited inside the window is missed; one born inside it counts whole."""
    out: dict[str, float] = {}
    for pid, (name, cpu) in after.items():
        if pid in ours:
            continue
        start = before.get(pid)
        used = cpu - start[1] if start is not None and start[0] == name else cpu
        out[name] = out.get(name, 0.0) + used
    return out


def watch(state: Path, seconds: float) -> dict:
    """CPU seconds per group of this system's processes and the machine's busy share over `seconds`, and
    per process name of everything else on the machine."""
    first: dict[int, float] = {}
    last: dict[int, tuple[str, float]] = {}
    names: dict[int, str] = {}
    busy0, total0 = machine_busy()
    everything0 = every_process()
    t0 = time.monotonic()
    while True:
        supervised = {s.pid: s.name for s in runtime.services(state) if s.pid}
        for p in system_processes(state):
            with suppress(psutil.Error):
                t = p.cpu_times()
                cpu = t.user + t.system
                if p.pid not in last:
                    # born inside the window: all of its CPU counts; present at the start: only the window's
                    first[p.pid] = cpu if time.monotonic() - t0 < SAMPLE_S / 2 else 0.0
                last[p.pid] = (service_of(p, supervised), cpu)
                if p.pid not in names:
                    names[p.pid] = " ".join(p.cmdline())[-100:]
        if time.monotonic() - t0 >= seconds:
            break
        time.sleep(SAMPLE_S)
    took = time.monotonic() - t0
    busy1, total1 = machine_busy()
    others = others_by_name(everything0, every_process(), set(last))
    groups: dict[str, float] = {}
    for pid, (group, cpu) in last.items():
        groups[group] = groups.get(group, 0.0) + cpu - first.get(pid, 0.0)
    cores = os.cpu_count() or 1
    return {
        "seconds": took,
        "cores": cores,
        "machine_pct": 100 * (busy1 - busy0) / max(1, total1 - total0),
        "groups_cpu_s": groups,
        "groups_pct": {g: 100 * s / took / cores for g, s in groups.items()},
        "processes": len(last),
        "others_pct": {n: 100 * c / took / (os.cpu_count() or 1) for n, c in others.items()},
        "top": sorted(
            ((cpu - first.get(pid, 0.0), group, names.get(pid, "?")) for pid, (group, cpu) in last.items()),
            reverse=True,
        )[:TOP],
    }


@contextmanager
def shipped_system(db_url: str, warmup_s: float) -> Iterator[tuple[Path, str]]:
    """`pulseops up` on a scratch state dir and free ports; yields (state dir, ingest URL)."""
    state = Path(tempfile.mkdtemp(prefix="pulseops-cpu-", dir="/var/tmp"))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    env |= {
        "PULSEOPS_STATE_DIR": str(state),
        "PULSEOPS_DB__URL": db_url,
        "PULSEOPS_INGEST__PORT": str(port),
        "PULSEOPS_DASHBOARD__PORT": str(free_port()),
        "PULSEOPS_ORCHESTRATION__WEBSERVER_PORT": str(free_port()),
        "PULSEOPS_KAFKA__EMBEDDED_PORT": str(free_port()),
        "PULSEOPS_STREAMS__METRICS_PORT": str(free_port()),
        "PULSEOPS_COLD__URL": str(state / "cold"),
    }
    log = (state / "up.log").open("wb")
    up = subprocess.Popen(
        [sys.executable, "-m", "pulseops.cli", "up"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: (s := runtime.services(state)) and all(x.up for x in s),
            300,
            "every service of `pulseops up` running",
            1.0,
        )
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: http_ok(f"{url}/healthz"), 120, "ingest answering /healthz", 0.5)
        time.sleep(warmup_s)
        yield state, url
    finally:
        with suppress(ProcessLookupError):
            os.killpg(up.pid, signal.SIGTERM)
        try:
            up.wait(60)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(up.pid, signal.SIGKILL)
        for p in system_processes(state):
            with suppress(psutil.Error):
                p.kill()
        log.close()
        shutil.rmtree(state, ignore_errors=True)


def measure(idle_s: float, ingest_s: float, warmup_s: float) -> dict:
    settings = Settings()
    with scratch_database(settings.db.url) as db_url, shipped_system(db_url, warmup_s) as (state, url):
        idle = watch(state, idle_s)
        key, _ = tenant(db_url, "cpu-bench", "cpu-bench")
        raw: list[str] = []
        result: dict = {}

        failed: list[BaseException] = []

        def load() -> None:
            try:
                result.update(wrk.run(url, "/v1/batch", ingest_s, events=100, keys=[key], raw=raw))
            except BaseException as e:
                failed.append(e)

        # wrk runs for ingest_s; the watch covers the same window (wrk's own start-up takes milliseconds)
        loader = threading.Thread(target=load)
        loader.start()
        busy = watch(state, ingest_s)
        loader.join()
        if failed:
            raise failed[0]
    return {"idle": idle, "ingest": busy, "wrk": result, "raw": raw}


def render(r: dict) -> str:
    idle, busy, w = r["idle"], r["ingest"], r["wrk"]
    accepted = wrk.accepted_events(w)
    lines = [
        f"Shipped system (`pulseops up`, no demo traffic), {idle['cores']} cores; per-process CPU sampled every "
        f"{SAMPLE_S} s (a process living less than that between samples is missed).",
        "",
        "| window | seconds | whole machine busy (/proc/stat) | all PulseOps processes | Dagster processes | target |",
        "|---|---|---|---|---|---|",
        f"| idle, no traffic | {idle['seconds']:.0f} | {idle['machine_pct']:.2f} % | "
        f"{sum(idle['groups_pct'].values()):.2f} % | {idle['groups_pct'].get('dagster', 0.0):.2f} % | "
        f"whole system <= 3 %: {'met' if idle['machine_pct'] <= 3 else '**missed**'} |",
        f"| ingest at its maximum (wrk batches of 100, -c64, unpaced): {accepted / w['seconds']:,.0f} events/s "
        f"accepted, statuses {w['statuses']} | {busy['seconds']:.0f} | {busy['machine_pct']:.2f} % | "
        f"{sum(busy['groups_pct'].values()):.2f} % | {busy['groups_pct'].get('dagster', 0.0):.2f} % | "
        f"Dagster <= 10 %: {'met' if busy['groups_pct'].get('dagster', 0.0) <= 10 else '**missed**'} |",
        "",
        "CPU-seconds per group (share of the machine):",
    ]
    for name, window in (("idle", idle), ("ingest", busy)):
        parts = [
            f"{g} {s:.1f} s ({window['groups_pct'][g]:.2f} %)"
            for g, s in sorted(window["groups_cpu_s"].items())
        ]
        lines.append(f"- {name} ({window['processes']} processes seen): " + ", ".join(parts))
        lines += [f"  - {cpu:.2f} CPU-s  {group}: `{cmd}`" for cpu, group, cmd in window["top"]]
    lines += ["", "The rest of the machine, per process name (share of the machine; the busiest first):"]
    for name, window in (("idle", idle), ("ingest", busy)):
        rest = sorted(window.get("others_pct", {}).items(), key=lambda kv: -kv[1])[:TOP]
        lines.append(f"- {name}: " + ", ".join(f"{n} {pct:.2f} %" for n, pct in rest))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.system_cpu", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--idle-s", type=float, default=300)
    parser.add_argument("--ingest-s", type=float, default=300)
    parser.add_argument("--warmup-s", type=float, default=60)
    parser.add_argument("--report", action="store_true", help="write a dated report under docs/benchmarks/")
    args = parser.parse_args(argv)
    if not wrk.available():
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    machine = machine_notes()
    r = measure(args.idle_s, args.ingest_s, args.warmup_s)
    text = render(r)
    print(text, flush=True)
    if args.report:
        cmd = f"python -m benchmarks.system_cpu --idle-s {args.idle_s:g} --ingest-s {args.ingest_s:g}"
        raw = {"wrk": "\n".join(r["raw"])}
        print(f"report: {write_report('system-cpu', 'medium', cmd, machine, text, raw)}")


if __name__ == "__main__":
    main()
