"""benchmarks/proc_cpu.py charges CPU between two /proc snapshots: processes that exit inside the window are
charged to the parent that reaped them, once, and only for their part inside the window (issue 16: the system
CPU benchmark no longer samples every half second, so this is what keeps short-lived processes counted)."""

from __future__ import annotations

import os
import subprocess
import sys

from benchmarks import proc_cpu

BURN = "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < {s}: pass\n"


def _burner(first_s: float, then_s: float) -> subprocess.Popen:
    """A child that burns `first_s` of CPU, waits for a line on stdin, then burns `then_s` and exits."""
    code = (
        BURN.format(s=first_s) + "print('ready', flush=True)\nsys.stdin.readline()\n" + BURN.format(s=then_s)
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    return child


def test_exited_children_are_charged_to_their_parent_for_their_window_part_only() -> None:
    me = os.getpid()
    before = _burner(0.6, 0.3)  # alive at the start with 0.6 s used already
    start = proc_cpu.snapshot()
    assert before.stdin is not None
    before.stdin.write("go\n")
    before.stdin.flush()
    assert before.wait(30) == 0
    subprocess.run([sys.executable, "-c", BURN.format(s=0.2)], check=True)  # born and gone in the window
    end = proc_cpu.snapshot()
    assert before.pid not in end

    accounts, per_pid = proc_cpu.charge(start, end, lambda p: "test" if p.pid == me else "other")
    # 0.3 s of the first child inside the window + 0.2 s of the second + this process's own bit
    assert 0.45 <= accounts["test"] <= 0.75, accounts
    assert abs(per_pid[me] - accounts["test"]) < 1e-9


def test_a_process_alive_at_both_ends_is_charged_what_it_used_in_between() -> None:
    child = _burner(0.5, 0.0)
    try:
        start = proc_cpu.snapshot()
        end = proc_cpu.snapshot()
        _, per_pid = proc_cpu.charge(start, end, lambda p: "child" if p.pid == child.pid else "other")
        assert per_pid[child.pid] < 0.05  # it burned before the start and then waits on stdin
        assert end[child.pid].own_s >= 0.45
    finally:
        child.kill()
        child.wait()


def test_postgres_backends_name_their_database() -> None:
    assert (
        proc_cpu.postgres_database("postgres: root pulseops_bench_1 127.0.0.1(51234) idle")
        == "pulseops_bench_1"
    )
    assert proc_cpu.postgres_database("postgres: app shop [local] SELECT") == "shop"
    assert proc_cpu.postgres_database("postgres: autovacuum worker pulseops_bench_1_dagster") == (
        "pulseops_bench_1_dagster"
    )
    assert proc_cpu.postgres_database("postgres: checkpointer") is None
    # with a cluster name (Debian's "15/main")
    assert proc_cpu.postgres_database("postgres: 15/main: root shop 127.0.0.1(46122) idle") == "shop"
    assert proc_cpu.postgres_database("postgres: 15/main: autovacuum worker shop") == "shop"
    assert proc_cpu.postgres_database("postgres: 15/main: logical replication launcher") is None
    assert proc_cpu.postgres_database("/usr/lib/postgresql/15/bin/postgres -D /var/lib/postgresql") is None


def test_a_server_s_exited_children_can_go_to_an_account_of_their_own() -> None:
    me = os.getpid()
    start = proc_cpu.snapshot()
    subprocess.run([sys.executable, "-c", BURN.format(s=0.3)], check=True)
    end = proc_cpu.snapshot()
    accounts, _ = proc_cpu.charge(
        start,
        end,
        lambda p: "server" if p.pid == me else "other",
        lambda p: "clients" if p.pid == me else None,
    )
    assert accounts["clients"] >= 0.25, accounts
    assert accounts["server"] < 0.25, accounts
