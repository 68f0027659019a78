"""CPU accounting from /proc between two snapshots, for benchmarks/system_cpu.py.

Why two snapshots and no sampling in between: /proc/<pid>/stat holds each process's own CPU (utime + stime)
and the CPU of its children that exited and were waited for (cutime + cstime). The sum of both over every
process at the end, less the same sum at the start, is all CPU spent in the window, short-lived processes
included (a Dagster run worker, a PostgreSQL backend that connected and left): their CPU lands in the parent
that reaped them. A process that was there at the start and is gone at the end is taken off its parent's
account (its CPU before the window is inside the parent's reaped sum). So the benchmark measures without
waking up every half second to walk /proc (the earlier sampler cost ~2 % of this 2-core machine itself).

Each process is classified by `classify` (this system's services, PostgreSQL, Redis, the benchmark itself,
the rest of the machine by process name).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    name: str  # process name; kernel threads by kind ("kworker/1:2-events" -> "kworker")
    started: int  # start time in ticks since boot: tells a reused pid from the process it had before
    own_s: float  # utime + stime
    reaped_s: float  # cutime + cstime: children that exited and were waited for

    @property
    def total_s(self) -> float:
        return self.own_s + self.reaped_s


def read_proc(pid: int) -> Proc | None:
    """One process from /proc/<pid>/stat (None if it is gone)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    f = stat[stat.rindex(")") + 2 :].split()  # f[0] is field 3 of proc(5): state
    return Proc(
        pid=pid,
        ppid=int(f[1]),
        name=name.split("/")[0] or name,
        started=int(f[19]),
        own_s=(int(f[11]) + int(f[12])) / TICKS,
        reaped_s=(int(f[13]) + int(f[14])) / TICKS,
    )


def snapshot() -> dict[int, Proc]:
    """Every process on the machine."""
    out = {}
    for entry in os.scandir(PROC):
        if entry.name.isdigit() and (p := read_proc(int(entry.name))) is not None:
            out[p.pid] = p
    return out


def cmdline(pid: int) -> str:
    try:
        return (
            (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        )
    except OSError:
        return ""


def environ_value(pid: int, name: str) -> str | None:
    try:
        raw = (PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return None
    prefix = name.encode() + b"="
    for item in raw.split(b"\0"):
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def descends_from(procs: dict[int, Proc], pid: int, root: int) -> bool:
    seen = 0
    while pid and seen < 64:  # a ppid chain is short; the bound guards against a cycle from pid reuse
        if pid == root:
            return True
        p = procs.get(pid)
        if p is None:
            return False
        pid, seen = p.ppid, seen + 1
    return False


def _same(a: Proc, b: Proc) -> bool:
    return a.pid == b.pid and a.started == b.started


def _alive(p: Proc, end: dict[int, Proc]) -> bool:
    """`p` (from the start snapshot) is still there at the end, not a new process under its pid."""
    return p.pid in end and _same(end[p.pid], p)


def charge(
    start: dict[int, Proc],
    end: dict[int, Proc],
    account: Callable[[Proc], str],
    reaped_account: Callable[[Proc], str | None] = lambda p: None,
) -> tuple[dict[str, float], dict[int, float]]:
    """CPU seconds per account (`account(process)`) between two snapshots, and per process alive at the end.
    `reaped_account(process)`, when not None, is the account of the process's exited children instead of its
    own (a server that forks a process per client: PostgreSQL).

    A process alive at the end is charged what it used since the start (all of it if it was born after) plus
    what its children that exited meanwhile used. One gone by the end is taken off the account of its nearest
    ancestor still alive, whose reaped sum holds its whole life; one that no survivor reaped (a kernel thread,
    an orphan) is missed for the part of its life inside the window."""
    accounts: dict[str, float] = {}
    per_pid: dict[int, float] = {}
    keys: dict[int, str] = {}

    def key_of(p: Proc) -> str:
        if p.pid not in keys:
            keys[p.pid] = account(p)
        return keys[p.pid]

    def reaped_key(p: Proc) -> str:
        return reaped_account(p) or key_of(p)

    for pid, p in end.items():
        before = start.get(pid) if pid in start and _same(start[pid], p) else None
        own = p.own_s - (before.own_s if before is not None else 0.0)
        reaped = p.reaped_s - (before.reaped_s if before is not None else 0.0)
        per_pid[pid] = own + reaped
        accounts[key_of(p)] = accounts.get(key_of(p), 0.0) + own
        accounts[reaped_key(p)] = accounts.get(reaped_key(p), 0.0) + reaped
    # what each surviving process's reaped sum grew by: the most its gone descendants can be taken off it
    budget = {
        pid: p.reaped_s - (start[pid].reaped_s if pid in start and _same(start[pid], p) else 0.0)
        for pid, p in end.items()
    }
    for p in sorted(start.values(), key=lambda q: q.total_s, reverse=True):
        if _alive(p, end):
            continue
        heir = p
        while heir.ppid in start and not _alive(start[heir.ppid], end):
            heir = start[heir.ppid]
        parent = end[heir.ppid] if heir.ppid in start and _alive(start[heir.ppid], end) else None
        if parent is None or budget[parent.pid] < p.total_s - 1 / TICKS:
            continue  # not reaped by a process still here (a kernel thread, an orphan): its window is unknown
        budget[parent.pid] -= p.total_s
        accounts[reaped_key(parent)] -= p.total_s
        per_pid[parent.pid] -= p.total_s
    return accounts, per_pid


# "postgres: [cluster name: ]user database host(port) state" or "... autovacuum worker database"
_PG_BACKEND = re.compile(
    r"postgres: (?:\S+: )?(?:autovacuum worker (\S+)|\S+ (\S+) (?:\S+\(\d+\)|\[local\]))"
)


def postgres_database(cmd: str) -> str | None:
    """The database a PostgreSQL backend or autovacuum worker serves (None: the server's own processes)."""
    m = _PG_BACKEND.match(cmd)
    return (m.group(1) or m.group(2)) if m else None
