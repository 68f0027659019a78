"""`pulseops up`: every service under supervisord, in the foreground (Ctrl-C stops them) or --detach.

Foreground: the terminal shows state changes, warnings and errors (pulseops/runtime.py), and the services stop
when this process ends for any reason: Ctrl-C, SIGTERM, SIGHUP and a closed stdout stop supervisord in order; a
SIGKILL of this process reaches supervisord as SIGTERM through PR_SET_PDEATHSIG, and each service has its own
parent-death signal (pulseops/launch.py) in case supervisord itself is killed. --detach: supervisord runs on in
its own session until `pulseops down` (pulseops/down.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pulseops import launch, runtime, services
from pulseops.admin import migrate
from pulseops.backfill import ROOT, backfill_command, dagster_instance
from pulseops.demo_command import ingest_url, run_demo
from pulseops.settings import Settings, get_settings

DEMO_DAYS = 30


@dataclass
class _Backends:
    """PostgreSQL, Redis and Kafka as this run uses them: the env that points the services at them, and the
    embedded fallbacks (programs, ports) started when none is configured or reachable."""

    db_url: str
    redis_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    programs: list[services.Program] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)


def up_command(settings: Settings, args: argparse.Namespace) -> int:
    """Start every service under supervisord, each logging to <state_dir>/logs/<name>.log (module docstring)."""
    state = Path(settings.state_dir)
    lock = runtime.acquire_lock(state)
    if lock is None:
        print(runtime.holder_message(state), file=sys.stderr)
        return 1
    (state / "logs").mkdir(parents=True, exist_ok=True)
    backends = _backends(settings, args.detach)
    env, programs, ports = backends.env, backends.programs, backends.ports

    workers = args.workers or settings.streams.workers
    ports |= {
        "ingest": settings.ingest.port,
        "dashboard": settings.dashboard.port,
        "dagster-webserver": settings.orchestration.webserver_port,
    }
    if settings.streams.metrics_port > 0:
        ports |= {f"streams-{i} metrics": settings.streams.metrics_port + i for i in range(workers)}
    if settings.kafka.topic_overflow and settings.streams.overflow_metrics_port > 0:
        ports |= {
            f"streams-{i} overflow metrics": settings.streams.overflow_metrics_port + i
            for i in range(workers)
        }
    if busy := runtime.port_holders(ports):
        print("cannot start: ports in use (nothing was started):\n  " + "\n  ".join(busy), file=sys.stderr)
        return 1

    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings)
    dagster = dagster_instance(settings)
    programs += _service_programs(settings, state, workers, dagster)
    if args.demo:  # live traffic while the demo runs (pulseops/demo.py)
        programs.append(
            services.Program(
                "demo-live",
                services.python_module("pulseops.demo", "live", "--rate", str(args.demo_rate)),
                priority=40,
            )
        )
    proc = _start_supervisord(state, programs, env, lock, args.detach)
    names = [n for p in programs for n in p.process_names]
    runtime.write_info(
        state,
        {
            "pid": os.getpid(), "supervisord_pid": proc.pid, "detached": args.detach,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "ports": ports, "services": names,
            "db_url": backends.db_url, "kafka": settings.kafka.servers, "redis_url": backends.redis_url,
            "dagster_home": dagster["DAGSTER_HOME"], "topic_raw": settings.kafka.topic_raw,
            "topic_overflow": settings.kafka.topic_overflow,
            "consumer_group": settings.kafka.consumer_group,
        },
    )  # fmt: skip
    ingest = ingest_url(settings)

    def announce(console: runtime.Console, detached: bool = False) -> bool:
        return _announce(settings, console, ingest, workers, args.demo, args.demo_events, detached)

    if args.detach:
        os.close(lock)
        if not announce(runtime.Console(on_closed=lambda: None), detached=True):
            return 1
        return 0 if proc.poll() is None else 1
    return _foreground(proc, state, names, announce)


def _backends(settings: Settings, detach: bool) -> _Backends:
    """The configured PostgreSQL, Redis and Kafka, or embedded ones where none is configured or reachable."""
    db_url = settings.db.url
    if not services.env_is_set("PULSEOPS_DB__URL") and not services.postgres_reachable(db_url):
        print("PostgreSQL not reachable at the default URL: starting embedded pgserver", flush=True)
        db_url = services.start_embedded_postgres(settings.db.embedded_dir, stop_at_exit=not detach)
    b = _Backends(db_url=db_url)
    b.env["PULSEOPS_DB__URL"] = db_url

    redis_url = settings.redis.url
    host, port = services.redis_host_port(redis_url)
    if not services.env_is_set("PULSEOPS_REDIS__URL") and not services.port_open(host, port):
        port = 6390
        redis_url = f"redis://127.0.0.1:{port}/0"
        b.programs.append(services.redis_program(port))
        b.ports["redis"] = port
    b.redis_url = b.env["PULSEOPS_REDIS__URL"] = redis_url

    if settings.kafka.bootstrap is None:
        b.programs.append(services.tansu_program(settings))
        b.ports["kafka"] = settings.kafka.embedded_port
        b.env.update(services.embedded_kafka_env())
    b.env["PULSEOPS_KAFKA__BOOTSTRAP"] = settings.kafka.servers
    return b


def _service_programs(
    settings: Settings, state: Path, workers: int, dagster: dict[str, str]
) -> list[services.Program]:
    """Ingest, the landing workers, Dagster (code server, webserver, daemon), the dashboard and the alerts."""
    metrics_dir = state / "prometheus"
    if metrics_dir.exists():
        for f in metrics_dir.iterdir():
            f.unlink()
    metrics_dir.mkdir(exist_ok=True)
    code_server, workspace = services.dagster_code_server(Path(dagster["DAGSTER_HOME"]))
    log_config = state / "logging-ingest.json"
    from pulseops.logs import dict_config

    log_config.write_text(json.dumps(dict_config("ingest", settings.log)))
    o = settings.orchestration
    background = o.nice  # > 0: Dagster below the ingest API and the landing workers on the CPU
    uvicorn = ("--host", settings.ingest.host, "--port", str(settings.ingest.port),
               "--workers", str(settings.ingest.workers), "--no-access-log", "--log-level", "warning",
               "--log-config", str(log_config))  # fmt: skip
    webserver = ("-w", str(workspace), "-h", o.webserver_host, "-p", str(o.webserver_port))
    return [
        services.Program(
            "ingest",
            services.python_module("uvicorn", "api.main:app", "--factory", *uvicorn),
            priority=20,
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        ),
        services.Program(
            "streams",
            services.python_module("streams", "--index", "%(process_num)d"),
            priority=20,
            numprocs=workers,
            nice=settings.streams.nice,  # 0 by default: see StreamsSettings.nice
        ),
        # one code server for the daemon and the webserver (pulseops/services.py dagster_code_server)
        services.Program(
            "dagster-code-server",
            code_server,
            priority=25,
            env=dagster,
            directory=str(ROOT),
            stop_last=True,
            nice=background,
        ),
        services.Program(
            "dagster-webserver",
            # orchestration/dagster_process.py: Dagster's webserver and daemon, their code-server watch paced
            services.python_module("orchestration.dagster_process", "webserver", *webserver),
            priority=30,
            env=dagster,
            directory=str(ROOT),
            nice=background,
        ),
        services.Program(
            "dagster-daemon",
            services.python_module("orchestration.dagster_process", "daemon", "run", "-w", str(workspace)),
            priority=30,
            env=dagster,
            directory=str(ROOT),
            nice=background,
        ),
        services.Program("dashboard", services.python_module("dashboards"), priority=40),
        services.Program("alerts", services.python_module("alerting"), priority=40),
    ]


def _start_supervisord(
    state: Path, programs: list[services.Program], env: dict[str, str], lock: int, detach: bool
) -> subprocess.Popen:
    """Write supervisord.conf (the RPC password and the services' environment: mode 0600) and start it."""
    conf = state / runtime.CONF
    passthrough = {
        k: v for k, v in os.environ.items() if k.startswith(("PULSEOPS_", "PATH", "HOME", "LANG", "TZ"))
    }
    conf.touch(mode=0o600)
    conf.chmod(0o600)  # the RPC password and the services' environment
    conf.write_text(
        services.supervisord_conf(programs, state, {**passthrough, **services.QUIET_WARNINGS, **env})
    )
    with (state / "supervisord.stdio").open("wb") as stdio:  # this run only: read back if it fails
        return subprocess.Popen(  # noqa: S603 - supervisord of this venv (sys.executable) with our own conf
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=stdio,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop supervisord, which stops the services in order
            pass_fds=(lock,),  # supervisord holds the state dir's lock for as long as it runs
            preexec_fn=None if detach else launch.preexec_die_with_parent(signal.SIGTERM),
        )


def _foreground(
    proc: subprocess.Popen, state: Path, names: list[str], announce: Callable[[runtime.Console], bool]
) -> int:
    """Follow the services in the terminal until supervisord exits; any stop signal stops it in order."""
    stopping = threading.Event()

    def stop(*_args) -> None:
        if not stopping.is_set():
            stopping.set()
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)

    console = runtime.Console(on_closed=stop)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    follow_stop = threading.Event()
    console.say(f"starting {len(names)} services; logs in {state / 'logs'} (pulseops logs [service] -f)")
    for target, targs in (
        (console.watch_stdout, ()),
        (console.follow, (state, names, follow_stop)),
        (announce, (console,)),
    ):
        threading.Thread(target=target, args=targs, daemon=True).start()
    rc = proc.wait()
    time.sleep(0.3)  # the last state changes
    follow_stop.set()
    if stopping.is_set():
        console.say("all services stopped")
    else:
        why = (state / "supervisord.stdio").read_text(errors="replace").strip().splitlines()[-3:]
        console.say(f"!! supervisord exited ({rc}): " + " / ".join(why)[:2000])
    return 0 if stopping.is_set() else (rc or 1)


def _announce(
    settings: Settings,
    console,
    ingest: str,
    workers: int,
    demo: bool,
    demo_events: int,
    detached: bool = False,
) -> bool:
    """Once ingest is ready: where everything is; with --demo, the demo tenants, history and aggregates."""
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{ingest}/readyz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    else:
        console.say(
            f"!! ingest did not become ready within 120 s (pulseops logs ingest; state dir {settings.state_dir})"
        )
        return False
    console.say(
        "\n".join(
            [
                "",
                "PulseOps is up:",
                f"  ingest API      {ingest}  (docs {ingest}/docs, metrics {ingest}/metrics)",
                f"  landing workers {workers} (metrics http://127.0.0.1:{settings.streams.metrics_port}/metrics ...)",
                f"  Dashboard       http://{settings.dashboard.host}:{settings.dashboard.port}  (sign in with a read key)",
                f"  Alerts          evaluated every {settings.alerts.interval_s:g} s (python -m alerting)",
                f"  Dagster UI      http://{settings.orchestration.webserver_host}:{settings.orchestration.webserver_port}",
                f"  Kafka           {settings.kafka.servers}",
                f"  PostgreSQL      {settings.db.url}",
                f"  Redis           {settings.redis.url}",
                f"  Logs            {Path(settings.state_dir) / 'logs'}  (pulseops logs [service] [-f]; pulseops status)",
                "  `pulseops down` stops everything." if detached else "  Ctrl-C stops everything.",
                "",
            ]
        ),
        stamp=False,
    )
    if demo:
        _demo(settings, console, ingest, demo_events)
    return True


def _demo(settings: Settings, console, ingest: str, demo_events: int) -> None:
    """Demo tenants and history, then the demo days' aggregates in one Dagster backfill run."""
    run_demo(settings, ingest, demo_events, DEMO_DAYS, out=lambda line: console.say(line, stamp=False))
    # The late-data sensor would build the demo's closed days too; one backfill run builds them all now,
    # today included, and shows in the Dagster UI like any other (the sensor leaves its days alone).
    time.sleep(3)  # let landing catch up with the last requests
    today = datetime.now(UTC).date()
    console.say("Building the demo days' aggregates (one Dagster backfill run)...")
    rc = backfill_command(
        settings,
        today - timedelta(days=DEMO_DAYS),
        today,
        log=Path(settings.state_dir) / "logs" / "demo-backfill.log",
    )
    console.say(
        "Demo aggregates built."
        if rc == 0
        else f"!! demo backfill failed (exit {rc}; pulseops logs demo-backfill)"
    )
