"""`pulseops up` runs Dagster niced (pulseops/launch.py --nice): batch work yields the CPU to the ingest API."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from pulseops import services

ROOT = Path(__file__).resolve().parents[2]


def test_launch_nices_the_command_it_execs():
    code = "import os; print(os.nice(0))"
    cmd = [sys.executable, "-m", "pulseops.launch", "--nice", "3", "--", sys.executable, "-c", code]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
    assert int(out.stdout) == min(19, os.nice(0) + 3)  # the kernel caps niceness at 19


def test_supervisord_runs_niced_programs_through_launch(tmp_path):
    programs = [
        services.Program("dagster-daemon", ["dagster-daemon", "run"], nice=10),
        services.Program("ingest", ["uvicorn", "api.main:app"]),
    ]
    conf = services.supervisord_conf(programs, tmp_path, {})
    commands = [line for line in conf.splitlines() if line.startswith("command=")]
    assert "pulseops.launch --nice 10 -- dagster-daemon run" in commands[0]
    assert "--nice" not in commands[1]
