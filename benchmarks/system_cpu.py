"""CPU of the whole shipped system, idle and under maximum ingest: `python -m benchmarks.system_cpu
[--idle-s 300] [--ingest-s 300] [--warmup-s 60] [--report]`.

Starts the system exactly as a user does (`pulseops up`, no demo traffic: supervisord, the embedded broker
under its keeper, two API processes with the spool on, the landing worker, the Dagster daemon, webserver and
code server, the dashboard) on a scratch database, state directory and free ports, and waits until every
service is up and the Dagster daemon's first ticks are past (`--warmup-s`). Then two windows:
  1. idle: no traffic for `--idle-s`;
  2. ingest at its maximum: wrk, batches of 100, 64 connections, no pacing, for `--ingest-s` (wrk runs a
     second longer on each side, so the window lies inside its load) against an unlimited key (what the API accepts is the machine's limit; 503 `broker_full` while landing lags counts
     as an answer, not as offered load that vanished).
Each window is two /proc snapshots of every process (benchmarks/proc_cpu.py: a process's own CPU plus that of
its children that exited, so nothing needs sampling in between and the benchmark costs the machine next to
nothing while it waits). CPU is charged to: this system's processes (under `pulseops up`, or carrying its
PULSEOPS_STATE_DIR) per supervised service, the Dagster ones (daemon, webserver, code server and the runs
they start) together as "dagster"; the PostgreSQL server and the backends of this system's two databases;
the Redis server on the port it uses; the benchmark itself by pid (this process and its tools, e.g. wrk); the
rest of the machine by process name. The idle verdict judges the idle system (ours + its PostgreSQL and
Redis) as a share of the machine, the issue's "idle system <= 3 %"; the whole machine's busy share
(/proc/stat) is reported next to it.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psutil

from benchmarks import proc_cpu, wrk
from benchmarks.harness import (
    ROOT,
    die_with_parent,
    free_port,
    http_ok,
    machine_notes,
    scratch_database,
    stop_on_signals,
    wait_for,
)
from benchmarks.load import tenant
from benchmarks.report import write_report
from pulseops import runtime
from pulseops.services import dagster_storage_url, redis_host_port
from pulseops.settings import Settings
from warehouse.db import database_name

TOP = 8  # the busiest processes of each window, listed in the report
TARGET_IDLE_PCT = 3.0  # issue 16: "idle system (no traffic, 5 minutes) <= 3 % of the machine"
TARGET_DAGSTER_PCT = 10.0  # issue 16: "with ingest at its maximum ... all Dagster processes together <= 10 %"
SYSTEM = "system:"  # account prefix of this system's services
POSTGRES, REDIS = "postgres", "redis-server"  # the server processes and backends this system uses
# PostgreSQL backends that exited inside the window, reaped by the server process: which database they served
# is not known afterwards. Counted in the system's figure (on a quiet machine they are its own connections; on
# a shared one they can only overstate it) and shown apart.
POSTGRES_EXITED = "postgres backends that exited (any database)"
BENCHMARK = "benchmark (this process and its tools)"


@dataclass(frozen=True)
class Target:
    """What one window measures: the system's processes (under `up_pid`, or carrying its state dir), the
    PostgreSQL databases and the Redis port it uses, and this benchmark's own process."""

    state: Path
    up_pid: int
    databases: frozenset[str]
    redis_port: int
    bench_pid: int


def service_of(pid: int, procs: dict[int, proc_cpu.Proc], supervised: dict[int, str]) -> str:
    """The supervised service (its supervisord name without the -N of numprocs) a process descends from; the
    Dagster ones grouped as "dagster"; "pulseops up" for up and supervisord themselves."""
    seen = 0
    while pid in procs and seen < 64:
        if pid in supervised:
            name = supervised[pid]
            name = name.rsplit("-", 1)[0] if name[-1].isdigit() else name
            return "dagster" if name.startswith("dagster") else name
        pid, seen = procs[pid].ppid, seen + 1
    return "pulseops up"


def _account(t: Target, procs: dict[int, proc_cpu.Proc], supervised: dict[int, str], p: proc_cpu.Proc) -> str:
    if proc_cpu.descends_from(procs, p.pid, t.up_pid) or (
        p.ppid != 2 and p.pid != 2 and proc_cpu.environ_value(p.pid, "PULSEOPS_STATE_DIR") == str(t.state)
    ):
        return SYSTEM + service_of(p.pid, procs, supervised)
    if proc_cpu.descends_from(procs, p.pid, t.bench_pid):
        return BENCHMARK
    if p.name == "postgres":
        db = proc_cpu.postgres_database(proc_cpu.cmdline(p.pid))
        return POSTGRES if db is None or db in t.databases else "postgres (other databases)"
    if p.name == "redis-server":
        return REDIS if f":{t.redis_port}" in proc_cpu.cmdline(p.pid) else "redis-server (other)"
    return p.name


def classifier(
    t: Target, procs: dict[int, proc_cpu.Proc]
) -> tuple[Callable[[proc_cpu.Proc], str], Callable[[proc_cpu.Proc], str | None]]:
    """(process -> account, process -> account of its exited children or None): "system:<service>",
    "postgres", "redis-server", the benchmark, else the process name (PostgreSQL backends of other
    databases and other Redis servers by name with "(other ...)"); the PostgreSQL server's exited backends
    go to POSTGRES_EXITED."""
    supervised = {s.pid: s.name for s in runtime.services(t.state) if s.pid}
    known: dict[tuple[int, int], str] = {}

    def account(p: proc_cpu.Proc) -> str:
        if (p.pid, p.started) not in known:
            known[p.pid, p.started] = _account(t, procs, supervised, p)
        return known[p.pid, p.started]

    def reaped(p: proc_cpu.Proc) -> str | None:
        parent = procs.get(p.ppid)
        server = account(p) == POSTGRES and (parent is None or parent.name != "postgres")
        return POSTGRES_EXITED if server else None

    return account, reaped


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat; busy excludes idle and iowait."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return total - fields[3] - fields[4], total


def watch(t: Target, seconds: float) -> dict:
    """CPU over `seconds` from two /proc snapshots (benchmarks/proc_cpu.py): per service of this system,
    PostgreSQL, Redis, the benchmark itself and the rest of the machine by process name, as CPU-seconds and
    as shares of the machine, and the machine's busy share from /proc/stat. Nothing runs in between."""
    busy0, total0 = machine_busy()
    start, t0 = proc_cpu.snapshot(), time.monotonic()
    time.sleep(seconds)
    end, took = proc_cpu.snapshot(), time.monotonic() - t0
    busy1, total1 = machine_busy()
    both = {**start, **end}
    account, reaped = classifier(t, both)
    accounts, per_pid = proc_cpu.charge(start, end, account, reaped)
    cores = os.cpu_count() or 1
    pct = {k: 100 * max(0.0, v) / took / cores for k, v in accounts.items()}
    groups = {k[len(SYSTEM) :]: max(0.0, v) for k, v in accounts.items() if k.startswith(SYSTEM)}
    ours = [pid for pid, p in end.items() if account(p).startswith(SYSTEM)]
    top = sorted(((per_pid[pid], account(end[pid])[len(SYSTEM) :], pid) for pid in ours), reverse=True)[:TOP]
    return {
        "seconds": took,
        "cores": cores,
        "machine_pct": 100 * (busy1 - busy0) / max(1, total1 - total0),
        "groups_cpu_s": groups,
        "groups_pct": {g: 100 * s / took / cores for g, s in groups.items()},
        "postgres_pct": pct.get(POSTGRES, 0.0),
        "postgres_exited_pct": pct.get(POSTGRES_EXITED, 0.0),
        "redis_pct": pct.get(REDIS, 0.0),
        "benchmark_pct": pct.get(BENCHMARK, 0.0),
        "system_pct": sum(100 * s / took / cores for s in groups.values())
        + pct.get(POSTGRES, 0.0)
        + pct.get(POSTGRES_EXITED, 0.0)
        + pct.get(REDIS, 0.0),
        "processes": len(ours),
        # everything that is not this system's processes: PostgreSQL, Redis, the benchmark, the machine's own
        "others_pct": {k: v for k, v in pct.items() if not k.startswith(SYSTEM)},
        "top": [(cpu, group, proc_cpu.cmdline(pid)[-100:] or end[pid].name) for cpu, group, pid in top],
    }


def system_processes(state: Path) -> list[psutil.Process]:
    """Every live process of this system: all of them inherit its PULSEOPS_STATE_DIR."""
    found = []
    for p in psutil.process_iter():
        with suppress(psutil.Error):
            if p.environ().get("PULSEOPS_STATE_DIR") == str(state):
                found.append(p)
    return found


@contextmanager
def shipped_system(db_url: str, warmup_s: float) -> Iterator[tuple[Target, str]]:
    """`pulseops up` on a scratch state dir and free ports; yields (what to measure, ingest URL)."""
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
        "PULSEOPS_STREAMS__OVERFLOW_METRICS_PORT": str(free_port()),
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
        preexec_fn=die_with_parent,
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
        databases = frozenset({database_name(db_url), database_name(dagster_storage_url(db_url))})
        redis_port = redis_host_port(Settings().redis.url)[1]
        yield Target(state, up.pid, databases, redis_port, os.getpid()), url
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


# wrk starts this long before the ingest window and stops this long after it (see `measure`)
WRK_LEAD_S = 1.0
WRK_TAIL_S = 1.0


def measure(idle_s: float, ingest_s: float, warmup_s: float) -> dict:
    settings = Settings()
    with scratch_database(settings.db.url) as db_url, shipped_system(db_url, warmup_s) as (target, url):
        idle = watch(target, idle_s)
        key, _ = tenant(db_url, "cpu-bench", "cpu-bench")
        raw: list[str] = []
        result: dict = {}

        failed: list[BaseException] = []

        def load() -> None:
            try:
                seconds = WRK_LEAD_S + ingest_s + WRK_TAIL_S
                result.update(wrk.run(url, "/v1/batch", seconds, events=100, keys=[key], raw=raw))
            except BaseException as e:
                failed.append(e)

        # The watch lies inside wrk's run, with a margin on both sides: a wrk that exits while the end
        # snapshot walks /proc can be read neither alive nor in its parent's reaped sum, and its CPU would be
        # lost to the window (benchmarks/proc_cpu.py `charge`).
        loader = threading.Thread(target=load)
        loader.start()
        time.sleep(WRK_LEAD_S)
        busy = watch(target, ingest_s)
        loader.join()
        if failed:
            raise failed[0]
    return {"idle": idle, "ingest": busy, "wrk": result, "raw": raw}


def _table(idle: dict, busy: dict, load: str) -> list[str]:
    def row(name: str, w: dict, verdict: str) -> str:
        ours = sum(w["groups_pct"].values())
        return (
            f"| {name} | {w['seconds']:.0f} | **{w['system_pct']:.2f} %** | {ours:.2f} % | "
            f"{w['groups_pct'].get('dagster', 0.0):.2f} % | {w['postgres_pct']:.2f} % + "
            f"{w['postgres_exited_pct']:.2f} % | {w['redis_pct']:.2f} % | "
            f"{w['machine_pct']:.2f} % | {w['benchmark_pct']:.2f} % | {verdict} |"
        )

    dagster = busy["groups_pct"].get("dagster", 0.0)
    return [
        "| window | seconds | idle system: PulseOps + its PostgreSQL + Redis | PulseOps processes | Dagster "
        "processes | PostgreSQL: server + this system's backends, + backends that exited (any database) | Redis | "
        "whole machine busy (/proc/stat) | the benchmark itself | target |",
        "|---|---|---|---|---|---|---|---|---|---|",
        row("idle, no traffic", idle, f"system <= {TARGET_IDLE_PCT:g} %: "
            + ("met" if idle["system_pct"] <= TARGET_IDLE_PCT else "**missed**")),
        row(load, busy, f"Dagster <= {TARGET_DAGSTER_PCT:g} %: "
            + ("met" if dagster <= TARGET_DAGSTER_PCT else "**missed**")),
    ]  # fmt: skip


def render(r: dict) -> str:
    idle, busy, w = r["idle"], r["ingest"], r["wrk"]
    accepted = wrk.accepted_events(w)
    load = (
        f"ingest at its maximum (wrk batches of 100, -c64, unpaced, {w['seconds']:.0f} s around the "
        f"window): {accepted / w['seconds']:,.0f} events/s accepted, statuses {w['statuses']}"
    )
    lines = [
        f"Shipped system (`pulseops up`, no demo traffic), {idle['cores']} cores. CPU from /proc: each window "
        "is two snapshots of every process (utime + stime, plus cutime + cstime of children that exited, so "
        "short-lived processes such as Dagster run workers and PostgreSQL backends are charged to the parent "
        "that reaped them); nothing samples in between. Shares are of the whole machine (all cores).",
        "",
        f'The idle verdict judges the idle system as the target names it ("idle system <= '
        f"{TARGET_IDLE_PCT:g} % of the machine\"): this system's processes (everything under `pulseops up`) plus "
        "the PostgreSQL backends of its two databases, the server's own processes and the backends that exited "
        "inside the window (their database is not known afterwards: on a quiet machine they are this system's, "
        "on a shared one they can only overstate it), and the Redis server it uses. The whole machine's busy share is printed beside it: it also holds this machine's own services "
        "(listed below, not part of the system) and the benchmark itself (by pid: this process and its tools "
        "such as wrk), so it is not what the target is about.",
        "",
        *_table(idle, busy, load),
        "",
        "CPU-seconds per service of this system (share of the machine):",
    ]
    for name, window in (("idle", idle), ("ingest", busy)):
        parts = [
            f"{g} {s:.2f} s ({window['groups_pct'][g]:.2f} %)"
            for g, s in sorted(window["groups_cpu_s"].items())
        ]
        lines.append(f"- {name} ({window['processes']} processes at the end): " + ", ".join(parts))
        lines += [f"  - {cpu:.2f} CPU-s  {group}: `{cmd}`" for cpu, group, cmd in window["top"]]
    lines += [
        "",
        "The rest of the machine, per process name (everything but this system's processes, PostgreSQL and Redis "
        "included; share of the machine; the busiest first):",
    ]
    for name, window in (("idle", idle), ("ingest", busy)):
        rest = sorted(window.get("others_pct", {}).items(), key=lambda kv: -kv[1])[: TOP + 2]
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
    stop_on_signals()
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
