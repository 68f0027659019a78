"""`pulseops`: migrate, manage keys, run the whole system (`up`), seed demo data (`demo`).

This module is the composition root: it may import every package (lazily, per command). The services it
starts are separate processes launched by module name under supervisord.
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
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from pulseops.settings import Settings, get_settings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pulseops", description="PulseOps analytics backend")
    sub = parser.add_subparsers(dest="command", required=True)

    sub.add_parser("migrate", help="create the database if needed, migrate it to head, create day partitions")

    keys = sub.add_parser("keys", help="manage API keys").add_subparsers(dest="keys_command", required=True)
    create = keys.add_parser("create", help="create an org/project if missing and a key for it")
    create.add_argument("--org", required=True, help="org slug")
    create.add_argument("--project", help="project slug (required for ingest keys)")
    create.add_argument(
        "--kind",
        choices=["ingest", "read"],
        default="ingest",
        help="ingest: write-only, may sit in a web page; read: server-side secret for queries",
    )
    create.add_argument("--name", default="", help="a label to recognise the key in `keys list`")
    create.add_argument("--rate", type=float, help="events/s allowed for this key (default from settings)")
    create.add_argument("--burst", type=float, help="bucket size in events (default from settings)")
    listing = keys.add_parser("list", help="list keys (never their secret)")
    listing.add_argument("--org", help="only this org slug")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id", type=uuid.UUID)

    up = sub.add_parser("up", help="run every service under supervisord; Ctrl-C stops them all")
    up.add_argument("--demo", action="store_true", help="also create demo tenants and send demo events")
    up.add_argument("--demo-events", type=int, default=20_000, help="events of history (default 20,000)")
    up.add_argument("--demo-rate", type=float, default=3.0, help="live demo events per second (default 3)")
    up.add_argument("--workers", type=int, help="landing worker processes (default from settings)")
    up.add_argument(
        "--detach", action="store_true", help="return once the services are up; `pulseops down` stops them"
    )
    sub.add_parser(
        "down", help="stop the services of `pulseops up` (detached or not); waits until they are gone"
    )
    status = sub.add_parser(
        "status",
        help="services, landing lag, last landed event, stale days, dead letters, Dagster daemon; exit 1 if "
        "something is down",
    )
    status.add_argument("--json", action="store_true", help="one JSON document (for scripts and checks)")
    logs = sub.add_parser(
        "logs", help="show a service's log from <state_dir>/logs (all services without one)"
    )
    logs.add_argument("service", nargs="?", help="e.g. ingest, streams, dagster-daemon, supervisord")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("-n", "--lines", type=int, default=50, help="last lines of each log (default 50)")

    backfill = sub.add_parser(
        "backfill", help="rebuild the aggregates of a range of UTC days in one Dagster run"
    )
    backfill.add_argument(
        "--from", dest="start", required=True, type=date.fromisoformat, help="first day, YYYY-MM-DD"
    )
    backfill.add_argument(
        "--to", dest="end", required=True, type=date.fromisoformat, help="last day, YYYY-MM-DD"
    )

    query = sub.add_parser(
        "sql",
        help="ad-hoc SQL (DuckDB) over one project's cold tier: views events, event_rollups, daily_aggregates",
        description="Runs SQL in DuckDB over the verified Parquet files of one project only (the connection "
        "cannot open any other file). Days appear once exported (the day after they end, by default).",
    )
    query.add_argument(
        "query", help='e.g. "SELECT event_name, count(*) FROM events GROUP BY 1 ORDER BY 2 DESC"'
    )
    query.add_argument(
        "--project", help="org/project slugs (required unless a project-bound read key is given)"
    )
    query.add_argument(
        "--key", help="a read key: limits the query to its project (or its org); default $PULSEOPS_READ_KEY"
    )
    query.add_argument("--from", dest="start", type=date.fromisoformat, help="first UTC day, YYYY-MM-DD")
    query.add_argument("--to", dest="end", type=date.fromisoformat, help="last UTC day, YYYY-MM-DD")
    query.add_argument("--format", choices=["table", "csv", "jsonl"], default="table")
    query.add_argument("--max-rows", type=int, default=100, help="rows printed in table format")

    demo = sub.add_parser("demo", help="create demo orgs/projects/keys and load a month of history")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--url", help="ingest base URL (default from settings)")

    # The command line never imports benchmarks (they sit above it): `pulseops bench ARGS` runs
    # `python -m benchmarks ARGS`, whose --help lists the options.
    sub.add_parser("bench", help="run the benchmark suite and write a dated report (= python -m benchmarks)")

    raw = sys.argv[1:] if argv is None else argv
    if raw[:1] == ["bench"]:
        sys.exit(subprocess.call([sys.executable, "-m", "benchmarks", *raw[1:]], cwd=ROOT))
    args = parser.parse_args(argv)
    settings = get_settings()
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "keys":
        keys_command(settings, args)
    elif args.command == "up":
        sys.exit(up_command(settings, args))
    elif args.command == "down":
        sys.exit(down_command(settings))
    elif args.command == "status":
        sys.exit(status_command(settings, args.json))
    elif args.command == "logs":
        sys.exit(logs_command(settings, args.service, args.follow, args.lines))
    elif args.command == "backfill":
        sys.exit(backfill_command(settings, args.start, args.end))
    elif args.command == "sql":
        sys.exit(sql_command(settings, args))
    elif args.command == "demo":
        run_demo(settings, args.url or _ingest_url(settings), args.events, args.days)


def migrate(settings: Settings) -> None:
    from warehouse.db import connect
    from warehouse.migrate import upgrade
    from warehouse.partitions import ensure_window

    upgrade(settings.db.url)
    with connect(settings.db.url, autocommit=True) as conn:
        created = ensure_window(
            conn, datetime.now(UTC).date(), back_days=7, ahead_days=settings.warehouse.partitions_ahead_days
        )
    print(f"database migrated to head; {len(created)} day partitions created")


def keys_command(settings: Settings, args: argparse.Namespace) -> None:
    from warehouse.db import connect
    from warehouse.tenants import (
        create_api_key,
        ensure_org,
        ensure_project,
        find_org,
        list_api_keys,
        revoke_api_key,
    )

    with connect(settings.db.url, autocommit=True) as conn:
        if args.keys_command == "create":
            if args.kind == "ingest" and not args.project:
                sys.exit("an ingest key needs --project")
            org_id = ensure_org(conn, args.org)
            project_id = ensure_project(conn, org_id, args.project) if args.project else None
            key_id, key = create_api_key(
                conn,
                org_id=org_id,
                project_id=project_id,
                kind=args.kind,
                name=args.name,
                rate_per_s=args.rate,
                burst=args.burst,
            )
            project = project_id if project_id else "all projects of the org (read key)"
            print(f"id:      {key_id}\nkind:    {args.kind}\norg:     {org_id}\nproject: {project}")
            print(f"key:     {key}\n(shown once; only its hash is stored)")
        elif args.keys_command == "list":
            org_id = None
            if args.org:
                org_id = find_org(conn, args.org)
                if org_id is None:
                    sys.exit(f"no org {args.org!r}")
            print(
                f"{'id':36}  {'kind':6}  {'org/project':24}  {'prefix':14}  {'created':19}  {'last used':19}  state"
            )
            for k in list_api_keys(conn, org_id):
                scope = f"{k.org_slug}/{k.project_slug or '*'}"
                print(
                    f"{k.id}  {k.kind:6}  {scope:24}  {k.key_prefix:14}  {_ts(k.created_at):19}  "
                    f"{_ts(k.last_used_at):19}  {'revoked' if k.revoked_at else 'active'}"
                )
        elif args.keys_command == "revoke":
            if not revoke_api_key(conn, args.key_id):
                sys.exit(f"no active key {args.key_id}")
            print(f"revoked {args.key_id} (takes effect within {settings.ingest.key_cache_ttl_s:g}s)")


ROOT = Path(__file__).resolve().parents[1]
DEMO_DAYS = 30
AGGREGATE_ASSETS = "event_rollups,user_activity,daily_aggregates"


def dagster_instance(settings: Settings) -> dict[str, str]:
    """Create the Dagster storage database and dagster.yaml; returns the env the Dagster processes need."""
    from pulseops import services
    from warehouse.db import ensure_database, with_database

    # <database>_dagster: pulseops_dagster for the default database; a test or scratch system gets its own
    storage = with_database(settings.db.url, settings.db.url.rsplit("/", 1)[1].split("?")[0] + "_dagster")
    ensure_database(storage)
    home = services.write_dagster_instance(settings, storage)
    return {"DAGSTER_HOME": str(home), **services.dagster_env()}


def backfill_command(settings: Settings, start: date, end: date, log: Path | None = None) -> int:
    """`dagster asset materialize --partition-range` (one run thanks to the single-run backfill policy)."""
    if end < start:
        sys.exit("--to must not be before --from")
    env = {**os.environ, **dagster_instance(settings)}
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "orchestration.definitions", "-a", "defs",
        "--select", AGGREGATE_ASSETS, "--partition-range", f"{start}...{end}",
    ]  # fmt: skip
    if log is None:
        print("$", " ".join(cmd), flush=True)
        return subprocess.call(cmd, env=env, cwd=ROOT)
    with log.open("ab") as out:  # its run events are Dagster's (UI, event log); the file keeps a copy
        return subprocess.call(cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)


def sql_command(settings: Settings, args: argparse.Namespace) -> int:
    """`pulseops sql`: one project's cold-tier views in a sealed DuckDB connection (warehouse.cold.open_cold)."""
    import duckdb

    from warehouse.cold import iter_days, open_cold
    from warehouse.db import connect

    with connect(settings.db.url, autocommit=True) as conn:
        project_id = _sql_scope(conn, args.project, args.key or os.environ.get("PULSEOPS_READ_KEY"))
        days = None
        if args.start or args.end:
            first = args.start or date(1970, 1, 1)
            last = args.end or datetime.now(UTC).date()
            days = iter_days(first, last)
        scope = open_cold(conn, project_id, settings.cold, days=days)
    with scope:
        try:
            cur = scope.duck.execute(args.query)
        except duckdb.Error as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if cur.description is None:
            return 0
        columns = [d[0] for d in cur.description]
        if args.format == "csv":
            import csv

            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            while batch := cur.fetchmany(10_000):
                writer.writerows(batch)
        elif args.format == "jsonl":
            import orjson

            while batch := cur.fetchmany(10_000):
                for row in batch:
                    sys.stdout.write(
                        orjson.dumps(dict(zip(columns, row, strict=True)), default=str).decode() + "\n"
                    )
        else:
            rows = cur.fetchmany(args.max_rows + 1)
            _print_table(columns, rows[: args.max_rows])
            if len(rows) > args.max_rows:
                print(f"(more than {args.max_rows} rows; use --max-rows or --format csv)")
        return 0


def _sql_scope(conn, project: str | None, key: str | None):
    """The project a `pulseops sql` may read: --project org/project, narrowed by a read key when given."""
    from warehouse.tenants import find_project, lookup_api_key

    wanted = None
    if project:
        org_slug, _, project_slug = project.partition("/")
        wanted = find_project(conn, org_slug, project_slug)
        if wanted is None:
            sys.exit(f"no project {project!r} (expected org/project)")
    if key is None:
        if wanted is None:
            sys.exit("give --project org/project or a read key (--key or PULSEOPS_READ_KEY)")
        return wanted.id
    row = lookup_api_key(conn, key)
    if row is None or row.kind != "read":
        sys.exit("not an active read key")
    if row.project_id is not None:
        if wanted is not None and wanted.id != row.project_id:
            sys.exit("this read key is for another project")
        return row.project_id
    if wanted is None:
        sys.exit("this read key covers a whole org: add --project org/project")
    if wanted.org_id != row.org_id:
        sys.exit("this read key is for another org")
    return wanted.id


def _print_table(columns: list[str], rows: list[tuple]) -> None:
    cells = [columns, *[["NULL" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    for n, r in enumerate(cells):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({len(rows)} rows)")


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _ingest_url(settings: Settings) -> str:
    return f"http://{settings.ingest.host}:{settings.ingest.port}"


# -- up ---------------------------------------------------------------------------------------------------
def up_command(settings: Settings, args: argparse.Namespace) -> int:
    """Start every service under supervisord, each logging to <state_dir>/logs/<name>.log.

    Foreground: the terminal shows state changes, warnings and errors (pulseops/runtime.py), and the services
    stop when this process ends for any reason: Ctrl-C, SIGTERM, SIGHUP and a closed stdout stop supervisord
    in order; a SIGKILL of this process reaches supervisord as SIGTERM through PR_SET_PDEATHSIG, and each
    service has its own parent-death signal (pulseops/launch.py) in case supervisord itself is killed.
    --detach: supervisord runs on in its own session until `pulseops down`."""
    from pulseops import launch, runtime, services

    state = Path(settings.state_dir)
    lock = runtime.acquire_lock(state)
    if lock is None:
        print(runtime.holder_message(state), file=sys.stderr)
        return 1
    (state / "logs").mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    programs: list[services.Program] = []
    ports: dict[str, int] = {}

    db_url = settings.db.url
    if not services.env_is_set("PULSEOPS_DB__URL") and not services.postgres_reachable(db_url):
        print("PostgreSQL not reachable at the default URL: starting embedded pgserver", flush=True)
        db_url = services.start_embedded_postgres(settings.db.embedded_dir, stop_at_exit=not args.detach)
    env["PULSEOPS_DB__URL"] = db_url

    redis_url = settings.redis.url
    host, port = services.redis_host_port(redis_url)
    if not services.env_is_set("PULSEOPS_REDIS__URL") and not services.port_open(host, port):
        port = 6390
        redis_url = f"redis://127.0.0.1:{port}/0"
        programs.append(services.redis_program(port))
        ports["redis"] = port
    env["PULSEOPS_REDIS__URL"] = redis_url

    if settings.kafka.bootstrap is None:
        programs.append(services.tansu_program(settings))
        ports["kafka"] = settings.kafka.embedded_port
    env["PULSEOPS_KAFKA__BOOTSTRAP"] = settings.kafka.servers

    workers = args.workers or settings.streams.workers
    ports |= {
        "ingest": settings.ingest.port,
        "dashboard": settings.dashboard.port,
        "dagster-webserver": settings.orchestration.webserver_port,
    }
    if settings.streams.metrics_port > 0:
        ports |= {f"streams-{i} metrics": settings.streams.metrics_port + i for i in range(workers)}
    if busy := runtime.port_holders(ports):
        print("cannot start: ports in use (nothing was started):\n  " + "\n  ".join(busy), file=sys.stderr)
        return 1

    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings)

    metrics_dir = state / "prometheus"
    if metrics_dir.exists():
        for f in metrics_dir.iterdir():
            f.unlink()
    metrics_dir.mkdir(exist_ok=True)
    dagster = dagster_instance(settings)
    code_server, workspace = services.dagster_code_server(Path(dagster["DAGSTER_HOME"]))
    log_config = state / "logging-ingest.json"
    from pulseops.logs import dict_config

    log_config.write_text(json.dumps(dict_config("ingest", settings.log)))
    o = settings.orchestration
    programs += [
        services.Program(
            "ingest",
            services.python_module(
                "uvicorn",
                "api.main:app",
                "--factory",
                "--host",
                settings.ingest.host,
                "--port",
                str(settings.ingest.port),
                "--workers",
                str(settings.ingest.workers),
                "--no-access-log",
                "--log-level",
                "warning",
                "--log-config",
                str(log_config),
            ),
            priority=20,
            env={"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)},
        ),
        services.Program(
            "streams",
            services.python_module("streams", "--index", "%(process_num)d"),
            priority=20,
            numprocs=workers,
        ),
        # one code server for the daemon and the webserver (pulseops/services.py dagster_code_server)
        services.Program(
            "dagster-code-server", code_server, priority=25, env=dagster, directory=str(ROOT), stop_last=True
        ),
        services.Program(
            "dagster-webserver",
            services.python_module(
                "dagster_webserver",
                "-w",
                str(workspace),
                "-h",
                o.webserver_host,
                "-p",
                str(o.webserver_port),
            ),
            priority=30,
            env=dagster,
            directory=str(ROOT),
        ),
        services.Program(
            "dagster-daemon",
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", str(workspace)],
            priority=30,
            env=dagster,
            directory=str(ROOT),
        ),
        services.Program("dashboard", services.python_module("dashboards"), priority=40),
        services.Program("alerts", services.python_module("alerting"), priority=40),
    ]
    if args.demo:  # live traffic while the demo runs (pulseops/demo.py)
        programs.append(
            services.Program(
                "demo-live",
                services.python_module("pulseops.demo", "live", "--rate", str(args.demo_rate)),
                priority=40,
            )
        )
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
        proc = subprocess.Popen(
            [sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=stdio,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches only us; we stop supervisord, which stops the services in order
            pass_fds=(lock,),  # supervisord holds the state dir's lock for as long as it runs
            preexec_fn=None if args.detach else launch.preexec_die_with_parent(signal.SIGTERM),
        )
    names = [n for p in programs for n in p.process_names]
    runtime.write_info(
        state,
        {
            "pid": os.getpid(), "supervisord_pid": proc.pid, "detached": args.detach,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"), "ports": ports, "services": names,
            "db_url": db_url, "kafka": settings.kafka.servers, "redis_url": redis_url,
            "dagster_home": dagster["DAGSTER_HOME"], "topic_raw": settings.kafka.topic_raw,
            "consumer_group": settings.kafka.consumer_group,
        },
    )  # fmt: skip
    ingest = _ingest_url(settings)
    if args.detach:
        os.close(lock)
        console = runtime.Console(on_closed=lambda: None)
        if not _announce(settings, console, ingest, workers, args.demo, args.demo_events, detached=True):
            return 1
        return 0 if proc.poll() is None else 1

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
        (_announce, (settings, console, ingest, workers, args.demo, args.demo_events)),
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
    return True


def down_command(settings: Settings) -> int:
    """Stop a system started by `pulseops up` (detached or not) in this state dir; waits until it is gone."""
    from pulseops import runtime

    state = Path(settings.state_dir)
    if not runtime.running(state):
        print(f"nothing running with state dir {state}")
        return 0
    info = runtime.read_info(state)
    try:
        runtime.rpc(state).supervisor.shutdown()
    except Exception:  # no answer on the socket: signal it (SIGTERM is supervisord's orderly shutdown)
        with contextlib.suppress(ProcessLookupError, TypeError):
            os.kill(int(info.get("supervisord_pid")), signal.SIGTERM)
    print("stopping...", flush=True)
    deadline = time.monotonic() + 120
    while runtime.running(state):
        if time.monotonic() > deadline:
            print(runtime.holder_message(state), file=sys.stderr)
            return 1
        time.sleep(0.2)
    print("all services stopped")
    return 0


def status_command(settings: Settings, as_json: bool) -> int:
    from pulseops import status

    report = status.gather(settings)
    print(json.dumps(report, indent=2, default=str) if as_json else status.render(report))
    return 0 if report["ok"] else 1


def logs_command(settings: Settings, service: str | None, follow: bool, lines: int) -> int:
    """The last lines of one service's log (or of each), then new lines as they come with -f."""
    from pulseops import runtime

    state = Path(settings.state_dir)
    files = runtime.log_files(state, service)
    if not files:
        known = ", ".join(sorted(runtime.log_files(state))) or "none yet"
        print(f"no log for {service!r} in {state / 'logs'} (services: {known})", file=sys.stderr)
        return 1
    prefix = len(files) > 1
    width = max(len(n) for n in files)
    try:
        for name, path in files.items():
            for line in _last_lines(path, lines):
                print(f"{name:<{width}} | {line}" if prefix else line)
        sys.stdout.flush()
        if follow:
            tails = {n: runtime.Tail(p) for n, p in files.items()}
            while True:
                for name, tail in tails.items():
                    for line in tail.lines():
                        print(f"{name:<{width}} | {line}" if prefix else line, flush=True)
                time.sleep(0.25)
    except (KeyboardInterrupt, BrokenPipeError):
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def _last_lines(path: Path, n: int) -> list[str]:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - 256 * n))
        data = f.read()
    lines = data.decode("utf-8", "replace").splitlines()
    if size > 256 * n:
        lines = lines[1:]  # the first may be cut
    return lines[-n:] if n > 0 else []


# -- demo -------------------------------------------------------------------------------------------------
def run_demo(
    settings: Settings, ingest_url: str, events: int, days: int, out: Callable[[str], None] = print
) -> None:
    """Demo tenants and keys, and `events` of history over `days` landed as history (pulseops/demo.py)."""
    from pulseops import demo
    from warehouse.db import connect
    from warehouse.tenants import create_api_key

    keys: dict[str, str] = {}
    lines = []
    with connect(settings.db.url, autocommit=True) as conn:
        projects = demo.ensure_projects(conn)
        for tier, p in projects.items():
            _, ingest_key = create_api_key(
                conn, org_id=p.org_id, project_id=p.project_id, kind="ingest", name="demo"
            )
            _, read_key = create_api_key(
                conn, org_id=p.org_id, project_id=p.project_id, kind="read", name="demo"
            )
            keys[tier] = ingest_key
            lines.append(
                f"  {p.org_slug}/{p.project_slug:7} project {p.project_id}\n    ingest key {ingest_key}\n"
                f"    read key   {read_key}"
            )
        _, org_key = create_api_key(
            conn, org_id=projects["hot"].org_id, project_id=None, kind="read", name="demo dashboard"
        )
        lines.append(f"  dashboard demo key (read key of every acme project) {org_key}")
        out("Demo tenants (keys are shown once):\n" + "\n".join(lines))
        started = time.perf_counter()
        generated, landed = demo.load_history(conn, projects, events, days, demo.demo_seed())
    out(
        f"Demo: {landed:,} events of the last {days} days loaded as history in {time.perf_counter() - started:.1f}s "
        f"({generated - landed:,} exact re-sends deduplicated; {demo.LATE_RATIO:.0%} arrived late, like delayed "
        "uploads)"
    )
    out(
        "Try it:\n"
        f"  curl -si -X POST {ingest_url}/v1/events -H 'X-API-Key: {keys['hot']}' -H 'Content-Type: application/json' "
        f'-d \'{{"event": "signup", "distinct_id": "u-1", "event_id": "{uuid.uuid4()}", '
        '"properties": {"plan": "pro"}}\'',
    )


if __name__ == "__main__":
    main()
