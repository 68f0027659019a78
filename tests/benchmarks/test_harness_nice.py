"""The suite's landing worker runs at the niceness `pulseops up` gives it (benchmarks/harness.py, pulseops/up.py).

Why: the suite measures the shipped configuration; a worker at another niceness than the shipped one would take
more or less of the CPU from the API processes than it does under `pulseops up`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from benchmarks import harness
from benchmarks.harness import Services
from pulseops.settings import StreamsSettings


def _niceness(pid: int) -> int | None:
    """The process's nice value once it runs Python (after nice(1) exec'd it); None if it is gone."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return None
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        if comm.startswith("python"):
            return int(stat[stat.rindex(")") + 2 :].split()[16])
        time.sleep(0.01)
    return None


@pytest.mark.parametrize("override", [None, "3"])
def test_the_harness_worker_runs_at_the_shipped_niceness(override: str | None, monkeypatch) -> None:
    # The shipped default (0) is also what a harness that ignored it would use: with a default of 7 the
    # harness must follow StreamsSettings, not a value of its own.
    monkeypatch.setattr(harness, "StreamsSettings", lambda: StreamsSettings(nice=7))
    # An unreachable broker and database: the worker only has to live long enough to be looked at.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    env.update(
        {"PULSEOPS_KAFKA__BOOTSTRAP": "127.0.0.1:9", "PULSEOPS_DB__URL": "postgresql://nobody@127.0.0.1:9/x"}
    )
    if override is not None:
        env["PULSEOPS_STREAMS__NICE"] = override
    svc = Services(env, 0)
    proc = svc.start_worker()
    try:
        expected = os.nice(0) + int(override if override is not None else 7)
        assert _niceness(proc.pid) == min(expected, 19)
    finally:
        svc.stop()
