"""Where the CPU of a catch-up drain goes, and whether a worker-scaling target can be judged on this machine.

Why: on a 2-core machine "two workers >= 1.6x one" needs CPU that one worker left idle. If one worker's drain
already keeps the whole machine busy (its own CPU, PostgreSQL's backends, the broker, the benchmark and the
machine's other users), a second worker can only take CPU from the others, and a low speed-up says nothing about
how the workers scale. So each drain is two /proc snapshots (benchmarks/proc_cpu.py, first rows -> all landed):
CPU-seconds per process group, the machine's busy share from /proc/stat, and CPU-us per landed row.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

from benchmarks import proc_cpu
from benchmarks.catchup_instruments import machine_cpu_s

# One worker keeping the machine at least this busy leaves no CPU for a second one to add (issue 17's brief).
SATURATED = 0.9
TWO_VS_ONE = 1.6  # issue 17: two workers >= 1.6x one
TOP = 8  # process groups named per drain in the report
PG_DB, PG_SERVER, PG_OTHER, PG_EXITED, BROKER, BENCH = (
    "postgres (this database)", "postgres (server processes)", "postgres (other databases)",
    "postgres (exited backends)", "broker", "benchmark",
)  # fmt: skip
WORKER = "worker "  # + its index


def _ours(key: str) -> bool:
    """The landing pipeline, what a landed row costs: workers, this database's backends, PostgreSQL's server
    processes (WAL writer, checkpointer: mostly this run's writes), the broker. Backends that exited in the
    window are left out: the drain's own stay connected, so those are other clients'."""
    return key.startswith(WORKER) or key in (PG_DB, PG_SERVER, BROKER)


@dataclass
class ProcMark:
    """Every process's CPU so far and command line (read now: a worker's PostgreSQL backends are gone once the
    drain's workers stopped), and the machine's busy/total CPU seconds, at one moment."""

    procs: dict[int, proc_cpu.Proc]
    cmdlines: dict[int, str]
    busy: float
    total: float
    at: float

    @classmethod
    def take(cls) -> ProcMark:
        busy, total = machine_cpu_s()
        procs = proc_cpu.snapshot()
        return cls(procs, {pid: proc_cpu.cmdline(pid) for pid in procs}, busy, total, time.monotonic())


def _account(
    p: proc_cpu.Proc, procs: dict, cmd: str, workers: dict[int, int], database: str, broker: str
) -> str:
    if p.pid in workers:
        return f"{WORKER}{workers[p.pid]}"
    if p.name == "postgres":
        db = proc_cpu.postgres_database(cmd)
        return PG_SERVER if db is None else PG_DB if db == database else PG_OTHER
    if f"tcp://{broker}" in cmd:
        return BROKER
    if proc_cpu.descends_from(procs, p.pid, os.getpid()):
        return BENCH
    return f"other: {p.name}"


def breakdown(a: ProcMark, b: ProcMark, workers: list[int], database: str, broker: str, rows: int) -> dict:
    """CPU between two marks: seconds per group (each worker, this database's PostgreSQL backends, PostgreSQL's
    server processes, the broker listening on `broker`, the benchmark, the rest by name), the machine's busy
    share, and CPU-us per landed row for the pipeline (workers + PostgreSQL + broker) and the whole machine."""
    both = {**a.procs, **b.procs}
    cmdlines = {**a.cmdlines, **b.cmdlines}
    keys: dict[tuple[int, int], str] = {}
    wset = {pid: i for i, pid in enumerate(workers)}

    def account(p: proc_cpu.Proc) -> str:
        if (p.pid, p.started) not in keys:
            cmd = cmdlines.get(p.pid, "")
            keys[p.pid, p.started] = _account(p, both, cmd, wset, database, broker)
        return keys[p.pid, p.started]

    def reaped(p: proc_cpu.Proc) -> str | None:
        """Backends that exited in the window are in the postmaster's reaped sum."""
        parent = both.get(p.ppid)
        return (
            PG_EXITED if account(p) == PG_SERVER and (parent is None or parent.name != "postgres") else None
        )

    accounts, _ = proc_cpu.charge(a.procs, b.procs, account, reaped)
    accounts = {k: v for k, v in accounts.items() if v >= 0.005}  # one tick is 0.01 s
    wall = max(b.at - a.at, 1e-9)
    cores = os.cpu_count() or 1
    busy_s = b.busy - a.busy
    ours = sum(v for k, v in accounts.items() if _ours(k))
    per_row = 1e6 / max(rows, 1)
    return {
        "wall_s": wall,
        "cores": cores,
        "rows": rows,
        "machine_busy": busy_s / max(b.total - a.total, 1e-9),
        "machine_cpu_s": busy_s,
        "groups_cpu_s": dict(sorted(accounts.items(), key=lambda kv: -kv[1])),
        "pipeline_cpu_s": ours,
        # the machine's other users (not the pipeline, not this benchmark), as a share of all cores
        "others_share": sum(v for k, v in accounts.items() if not _ours(k) and k != BENCH) / wall / cores,
        "us_per_row": {k: v * per_row for k, v in accounts.items()},
        "pipeline_us_per_row": ours * per_row,
        "machine_us_per_row": busy_s * per_row,
        # rows/s the whole machine could land at this pipeline CPU per row if nothing else ran on it
        "pipeline_ceiling_rows_per_s": cores * 1e6 / (ours * per_row) if ours else None,
    }


def scaling_verdict(one: dict, two_vs_one: float | None, two: dict | None = None) -> dict:
    """Judge "two workers >= 1.6x one" only when one worker left CPU for a second one to use; the text also
    says how busy the machine was during the two-worker drain and how much of it other users took."""
    cpu = one.get("cpu")
    if two_vs_one is None or not cpu:
        return {"met": None, "text": "not measured: no two-worker drain or no CPU figures in this run"}
    busy = cpu["machine_busy"]
    ceiling = cpu["pipeline_ceiling_rows_per_s"]
    limit = f"{ceiling / one['rows_per_s']:.2f}x one worker" if ceiling else "unknown"
    figures = (
        f"one worker's drain kept the whole {cpu['cores']}-core machine {busy:.0%} busy, at "
        f"{cpu['pipeline_us_per_row']:.1f} us of pipeline CPU per landed row (worker + PostgreSQL + broker; "
        f"{cpu['machine_us_per_row']:.1f} us of the whole machine's): all {cpu['cores']} cores at that cost "
        f"land at most {ceiling or 0:,.0f} rows/s = {limit}"
    )
    if two and two.get("cpu"):
        c2 = two["cpu"]
        figures += (
            f"; during the two-worker drain the machine was {c2['machine_busy']:.0%} busy, the machine's other "
            f"users (not the pipeline, not this benchmark) took {c2['others_share']:.0%} of it"
        )
    if busy >= SATURATED:
        return {
            "met": None,
            "text": f"not judged on this machine: {figures}; with one worker already using >= "
            f"{SATURATED:.0%} of the machine a second worker has no idle CPU to add, so {two_vs_one:.2f}x says "
            "nothing about how the workers scale",
        }
    met = two_vs_one >= TWO_VS_ONE
    return {
        "met": met,
        "text": f"{'met' if met else 'missed'}: {two_vs_one:.2f}x (>= {TWO_VS_ONE}x); {figures}",
    }


def render_cpu(runs: list[dict]) -> list[str]:
    """Per-drain CPU table lines: machine busy share, CPU-us per landed row per group, pipeline and machine."""
    lines = [
        f"{'workers':>7} {'wall s':>6} {'machine busy':>12} {'machine us/row':>14} {'pipeline us/row':>15}  "
        "CPU-us per landed row by process group (CPU-s)"
    ]
    for r in runs:
        c = r.get("cpu")
        if not c:
            continue
        top = list(c["groups_cpu_s"].items())
        rest = sum(v for _, v in top[TOP:])
        groups = ", ".join(f"{k} {c['us_per_row'][k]:.1f} ({v:.1f} s)" for k, v in top[:TOP] if v >= 0.05)
        if rest >= 0.05:
            groups += f", the rest {rest * 1e6 / max(c['rows'], 1):.1f} ({rest:.1f} s)"
        lines.append(
            f"{r['workers']:>7} {c['wall_s']:>6.1f} {c['machine_busy']:>11.0%} {c['machine_us_per_row']:>14.1f} "
            f"{c['pipeline_us_per_row']:>15.1f}  {groups}"
        )
    return lines
