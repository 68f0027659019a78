"""`pulseops up` as a user runs it: the whole system as a subprocess, on its own ports, state dir and databases
(so it never meets `make up` or another test's system), ended every way a terminal session ends."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from benchmarks.harness import free_port, wait_for
from pulseops import runtime
from tests.fixtures.postgres import create_database, drop_database
from tests.fixtures.redis import REDIS_URL
from tests.fixtures.system import ROOT

pytestmark = pytest.mark.timeout(420)

STARTUP_S = 150  # seven services and Dagster's code servers on a shared two-core machine


class Up:
    """One `pulseops up` with its stdout on a pipe we read without a thread (so we can also close it)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.state = Path(env["PULSEOPS_STATE_DIR"])
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pulseops.cli", "up"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        self.lines: list[str] = []
        self._partial = b""

    def read_until(self, needle: str, timeout: float, start: int = 0) -> float:
        """Seconds until a line from index `start` on contains `needle` (AssertionError after `timeout`)."""
        t0 = time.monotonic()
        fd = self.proc.stdout.fileno()
        while True:
            if any(needle in line for line in self.lines[start:]):
                return time.monotonic() - t0
            left = timeout - (time.monotonic() - t0)
            assert left > 0, f"no {needle!r} within {timeout}s; output:\n" + "\n".join(self.lines)
            ready, _, _ = select.select([fd], [], [], min(left, 0.2))
            if ready:
                data = os.read(fd, 65536)
                assert data, "pulseops up closed its stdout; output:\n" + "\n".join(self.lines)
                *done, self._partial = (self._partial + data).split(b"\n")
                self.lines += [d.decode(errors="replace") for d in done]

    def started(self) -> None:
        self.read_until("PulseOps is up", STARTUP_S)
        wait_for(
            lambda: (s := runtime.services(self.state)) and all(x.up for x in s),
            STARTUP_S,
            "all services running",
        )

    def command(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pulseops.cli", *args],
            env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip


def system_processes(state: Path) -> list[psutil.Process]:
    """Every live process started for this system: all of them inherit its PULSEOPS_STATE_DIR."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.status() != psutil.STATUS_ZOMBIE and p.environ().get("PULSEOPS_STATE_DIR") == str(state):
                found.append(p)
        except psutil.Error:
            continue
    return found


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(
            socket.SOL_SOCKET, socket.SO_REUSEADDR, 1
        )  # as the services bind: TIME_WAIT is no holder
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def assert_all_gone(state: Path, ports: dict[str, int], timeout: float = 10.0) -> None:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        left = system_processes(state)
        busy = [name for name, port in ports.items() if not port_free(port)]
        if not left and not busy:
            return
        time.sleep(0.2)
    described = [f"{p.pid} {' '.join(p.cmdline())[:100]}" for p in left]
    pytest.fail(f"after {timeout}s still running: {described}; ports held: {busy}")


@pytest.fixture
def system_env() -> Iterator[tuple[dict[str, str], dict[str, int]]]:
    db_url = create_database("pulseops_uptest")
    state = Path(tempfile.mkdtemp(prefix="pulseops-up-", dir="/var/tmp"))
    ports = {
        "ingest": free_port(),
        "dashboard": free_port(),
        "dagster-webserver": free_port(),
        "kafka": free_port(),
        "streams metrics": free_port(),
        "streams overflow metrics": free_port(),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    env |= {
        "PULSEOPS_STATE_DIR": str(state),
        "PULSEOPS_DB__URL": db_url,
        "PULSEOPS_REDIS__URL": REDIS_URL,
        "PULSEOPS_INGEST__PORT": str(ports["ingest"]),
        "PULSEOPS_INGEST__WORKERS": "1",
        "PULSEOPS_DASHBOARD__PORT": str(ports["dashboard"]),
        "PULSEOPS_ORCHESTRATION__WEBSERVER_PORT": str(ports["dagster-webserver"]),
        "PULSEOPS_KAFKA__EMBEDDED_PORT": str(ports["kafka"]),
        "PULSEOPS_STREAMS__METRICS_PORT": str(ports["streams metrics"]),
        "PULSEOPS_STREAMS__OVERFLOW_METRICS_PORT": str(ports["streams overflow metrics"]),
        "PULSEOPS_COLD__ENABLED": "false",
        "PULSEOPS_COLD__URL": str(state / "cold"),
    }
    yield env, ports
    for p in system_processes(state):  # a failed test must not leave its system behind
        p.kill()
    drop_database(db_url)
    drop_database(db_url + "_dagster")
    shutil.rmtree(state, ignore_errors=True)


def test_sigkill_of_up_stops_everything_after_second_up_crash_and_status(system_env):
    env, ports = system_env
    up = Up(env)
    try:
        up.started()

        # a second `up` on the same state dir refuses and names the holder, the ports and their processes
        second = up.command("up")
        assert second.returncode == 1
        assert f"pulseops up pid {up.proc.pid}" in second.stderr, second.stderr
        assert f"ingest port {ports['ingest']}: pid " in second.stderr, second.stderr
        # ... and on other ports but another state dir: refused before starting anything, holders named
        other = {**env, "PULSEOPS_STATE_DIR": str(up.state / "other")}
        clash = subprocess.run(
            [sys.executable, "-m", "pulseops.cli", "up"], env=other, cwd=ROOT, capture_output=True, text=True,
            timeout=120,
        )  # fmt: skip
        assert clash.returncode == 1 and "ports in use" in clash.stderr, clash.stderr
        assert f"kafka port {ports['kafka']}: pid " in clash.stderr
        assert not (up.state / "other" / runtime.CONF).exists()

        # a landing worker crash is on the terminal within 2 s
        worker = next(s for s in runtime.services(up.state) if s.name == "streams")
        mark = len(up.lines)
        os.kill(worker.pid, signal.SIGKILL)
        took = up.read_until("streams exited (terminated by SIGKILL", 2.0, start=mark)
        assert took < 2.0

        # status: OK once everything is up (Dagster's daemon beats within 30 s), exit 1 with a service stopped
        wait_for(lambda: up.command("status").returncode == 0, 120, "pulseops status OK")
        ok = up.command("status")
        assert "OK" in ok.stdout.splitlines()[-1] and "partition 0" in ok.stdout, ok.stdout
        assert "last landed event" in ok.stdout and "SENSOR" in ok.stdout
        streams = next(line.split() for line in ok.stdout.splitlines() if line.split()[:1] == ["streams"])
        assert streams[1] == "up" and streams[-1] == "1", ok.stdout  # one restart: the crash above
        runtime.rpc(up.state).supervisor.stopProcess("pulseops:alerts")
        down = up.command("status")
        assert down.returncode == 1, down.stdout
        assert any(line.split()[:2] == ["alerts", "DOWN"] for line in down.stdout.splitlines()), down.stdout
        assert down.stdout.splitlines()[-1] == "DOWN: alerts stopped"

        # SIGKILL of `pulseops up`: supervisord gets SIGTERM from the kernel and stops everything
        assert len(system_processes(up.state)) >= 8
        up.proc.kill()
        up.proc.wait()
        assert_all_gone(up.state, ports)
        gone = up.command("status")
        assert gone.returncode == 1 and "not running" in gone.stdout
    finally:
        up.proc.kill()
        up.proc.wait()


@pytest.mark.parametrize("ending", ["closed stdout", "SIGHUP"])
def test_up_stops_everything_when_its_session_ends(system_env, ending):
    env, ports = system_env
    up = Up(env)
    try:
        up.started()
        assert len(system_processes(up.state)) >= 8
        if ending == "closed stdout":  # `make up | tee up.log`, then tee goes away
            up.proc.stdout.close()
        else:
            up.proc.send_signal(signal.SIGHUP)
        assert_all_gone(up.state, ports)
        assert up.proc.wait(5) == 0
    finally:
        up.proc.kill()
        up.proc.wait()


def test_detached_system_json_logs_and_down(system_env):
    env, ports = system_env
    env = {**env, "PULSEOPS_LOG__FORMAT": "json"}
    state = Path(env["PULSEOPS_STATE_DIR"])

    def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "pulseops.cli", *args],
            env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip

    started = cli("up", "--detach", timeout=STARTUP_S + 60)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "PulseOps is up" in started.stdout and "pulseops down" in started.stdout
    assert runtime.running(state)  # the lock outlives `up --detach`: supervisord holds it
    assert cli("up").returncode == 1
    # every Python service logs JSON lines to its own file, and `pulseops logs` shows them
    wait_for(lambda: "metrics on" in cli("logs", "streams").stdout, 30, "streams log")
    records = [
        orjson.loads(line) for line in cli("logs", "streams").stdout.splitlines() if line.startswith("{")
    ]
    assert any(r["service"] == "streams-0" and r["level"] == "INFO" and r["pid"] for r in records), records
    assert "unknown" not in cli("logs").stdout and cli("logs", "nope").returncode == 1
    stopped = cli("down")
    assert stopped.returncode == 0 and "all services stopped" in stopped.stdout
    assert_all_gone(state, ports)
    assert cli("down").stdout.startswith("nothing running")


def test_terminal_filter_keeps_warnings_errors_and_exceptions():
    f = runtime.Filter("streams-0", burst=3, window_s=10)
    feed = [
        "2026-12-06 07:00:00,000 streams-0[1] INFO streams: metrics on http://127.0.0.1:9101/metrics",
        "2026-12-06 07:00:00 +0000 - dagster - DEBUG - aggregates - STEP_START",
        "2026-12-06 07:00:01,000 streams-0[1] ERROR streams: landing worker failed; restarting in 2s",
        "Traceback (most recent call last):",
        '  File "streams/app.py", line 1, in run',
        "    raise KafkaException(err)",
        "confluent_kafka.KafkaException: broker down",
        '{"ts": "x", "level": "INFO", "service": "streams-0", "message": "fine"}',
        '{"ts": "x", "level": "WARNING", "service": "streams-0", "message": "slow"}',
    ]
    shown = [out for i, line in enumerate(feed) for out in f.feed(line, now=float(i))]
    assert shown == [  # without the line's own timestamp: the terminal adds its own
        "streams-0[1] ERROR streams: landing worker failed; restarting in 2s",
        "confluent_kafka.KafkaException: broker down  (traceback: pulseops logs streams-0)",
        "WARNING slow",
    ]
    # past the burst, lines are counted and the count is shown when the window turns
    assert f.feed("WARNING again", now=9.0) == []
    assert f.feed("WARNING later", now=20.0) == [
        "... 1 more warning/error lines (pulseops logs streams-0)",
        "WARNING later",
    ]
    assert (
        runtime.supervisor_event(
            "2026-12-06 07:00:00,000 WARN exited: streams (terminated by SIGKILL; not expected)"
        )
        == "streams exited (terminated by SIGKILL): restarting"
    )
    assert runtime.supervisor_event("2026-12-06 07:00:00,000 INFO spawned: 'streams' with pid 12") is None
