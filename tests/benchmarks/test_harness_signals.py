"""A benchmark ended by a signal leaves no service behind (benchmarks/harness.py `stop_on_signals`,
`die_with_parent`): services run in sessions of their own, so nothing else would stop them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# a benchmark in miniature: a service in its own session, stopped with its group in `finally`
SCRIPT = """
import os, signal, subprocess, sys, time
from benchmarks.harness import die_with_parent, stop_on_signals
stop_on_signals()
child = subprocess.Popen(["sleep", "300"], start_new_session=True, preexec_fn=die_with_parent)
print(child.pid, flush=True)
try:
    time.sleep(300)
finally:
    os.killpg(child.pid, signal.SIGTERM)
    child.wait()
"""


def _gone(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return True
        if state == "Z":  # exited; its reaper (init) has not collected it yet
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGKILL])
def test_a_benchmark_ended_by_a_signal_stops_its_services(signum):
    bench = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    child = int(bench.stdout.readline())
    try:
        assert not _gone(child, timeout=0.2)
        bench.send_signal(signum)
        bench.wait(10)
        assert _gone(child), f"the service outlived a benchmark ended by {signum.name}"
    finally:
        bench.kill()
        bench.wait()
        with suppress(ProcessLookupError):
            os.kill(child, signal.SIGKILL)
