"""Idle cost of the Dagster processes: `python -m benchmarks.dagster_idle [--seconds 60]`.

Starts the Dagster processes as `pulseops up` does (the product's dagster.yaml and its persistent code server,
pulseops/services.py; `--workspace-file` instead loads the repository's workspace.yaml, where the daemon and
the webserver spawn code servers of their own) on a scratch database with no traffic, lets them warm up,
then reads utime + stime of every process of their process groups from /proc at the start and the end of
the window. Reports CPU-seconds per minute and the share of the machine (all cores).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

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
from benchmarks.orchestration import _wait_for_late_sensor, dagster_env
from benchmarks.report import write_report
from pulseops import services
from pulseops.settings import Settings
from warehouse.db import with_database

TICKS = os.sysconf("SC_CLK_TCK")


def group_cpu(groups: set[int]) -> dict[int, tuple[str, float]]:
    """pid -> (command, CPU seconds) of every live process whose process group is in `groups`."""
    out = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:90]
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) in groups:  # field 5 of stat: pgrp
            out[int(entry.name)] = (cmd, (int(fields[11]) + int(fields[12])) / TICKS)
    return out


def _service(command: list[str], env: dict[str, str]) -> subprocess.Popen:
    """One Dagster process in a session of its own (stopped with its group), gone when this one dies."""
    return subprocess.Popen(
        command,
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )


def measure(seconds: float, warmup: float, workspace_file: bool) -> str:
    settings = Settings()
    with scratch_database(settings.db.url) as db_url, tempfile.TemporaryDirectory() as tmp:
        env = dagster_env(db_url, Path(tmp))
        port = free_port()
        workspace = "workspace.yaml"
        procs = []
        if not workspace_file:
            command, path = services.dagster_code_server(Path(env["DAGSTER_HOME"]))
            workspace = str(path)
            procs.append(_service(command, env))
            wait_for(lambda: (path.parent / "code-server.sock").exists(), 60, "code server")
        procs += [
            _service(cmd, env)
            for cmd in (
                [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", workspace],
                [
                    sys.executable,
                    "-m",
                    "dagster_webserver",
                    "-w",
                    workspace,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                ],
            )
        ]
        try:
            _wait_for_late_sensor(with_database(db_url, db_url.rsplit("/", 1)[1] + "_dagster"), 120)
            wait_for(lambda: http_ok(f"http://127.0.0.1:{port}/server_info"), 120, "webserver")
            time.sleep(warmup)
            groups = {p.pid for p in procs}
            before = group_cpu(groups)
            t0 = time.monotonic()
            time.sleep(seconds)
            after = group_cpu(groups)
            took = time.monotonic() - t0
        finally:
            for p in procs:
                with suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    with suppress(ProcessLookupError):
                        os.killpg(p.pid, signal.SIGKILL)
    lines = []
    total = 0.0
    for pid, (cmd, cpu) in sorted(after.items()):
        used = cpu - before.get(pid, (cmd, 0.0))[1]
        total += used
        lines.append(f"  pid {pid:>7}  {used:7.2f} CPU-s  {cmd}")
    cores = os.cpu_count() or 1
    layout = "repository workspace.yaml (a code server per process)" if workspace_file else "one code server"
    lines.insert(
        0,
        f"Dagster idle (daemon + webserver + code servers; {layout}; no traffic) over {took:.0f} s: "
        f"{total:.2f} CPU-s = {total / took * 60:.2f} CPU-s per minute = "
        f"{100 * total / took / cores:.2f} % of the machine ({cores} cores)",
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.dagster_idle", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument(
        "--workspace-file", action="store_true", help="load workspace.yaml (no shared code server)"
    )
    parser.add_argument("--report", action="store_true", help="write a dated report under docs/benchmarks/")
    args = parser.parse_args(argv)
    stop_on_signals()
    machine = machine_notes()
    text = measure(args.seconds, args.warmup, args.workspace_file)
    print(text, flush=True)
    if args.report:
        cmd = f"python -m benchmarks.dagster_idle --seconds {args.seconds:g}" + (
            " --workspace-file" if args.workspace_file else ""
        )
        print(f"report: {write_report('dagster-idle', 'small', cmd, machine, text, {})}")


if __name__ == "__main__":
    main()
