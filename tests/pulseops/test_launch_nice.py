"""`pulseops up` runs Dagster niced (pulseops/launch.py --nice): batch work yields the CPU to the ingest API."""

from __future__ import annotations

import os
import shlex
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


def test_up_launches_the_landing_workers_at_the_configured_niceness(tmp_path):
    """A host may run the landing workers below the ingest API (streams.nice; 0 by default, see its
    description): under `pulseops up` they then run niced, the ingest API not."""
    from pulseops import up
    from pulseops.settings import Settings, StreamsSettings

    settings = Settings(streams=StreamsSettings(nice=5))
    programs = up._service_programs(settings, tmp_path, 2, {"DAGSTER_HOME": str(tmp_path)})
    conf = services.supervisord_conf(programs, tmp_path, {})
    commands = {}
    for section in conf.split("[program:")[1:]:
        name = section.split("]", 1)[0]
        commands[name] = next(line for line in section.splitlines() if line.startswith("command="))
    assert "--nice" not in commands["ingest"]
    argv = shlex.split(commands["streams"].removeprefix("command="))
    assert argv[argv.index("--") + 1 :][1:3] == ["-m", "streams"]
    # the launch supervisord would run, with the worker swapped for a probe of its niceness
    probe = [*argv[: argv.index("--") + 1], sys.executable, "-c", "import os; print(os.nice(0))"]
    out = subprocess.run(probe, capture_output=True, text=True, check=True, cwd=ROOT)
    assert int(out.stdout) == min(19, os.nice(0) + settings.streams.nice)
