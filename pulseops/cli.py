"""`pulseops`: migrate, manage keys, run the whole system (`up`), seed demo data (`demo`).

This module is the composition root: it may import every package (lazily, per command). The services it
starts are separate processes launched by module name under supervisord.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
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
    up.add_argument("--demo-events", type=int, default=20_000)
    up.add_argument("--workers", type=int, help="landing worker processes (default from settings)")

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

    demo = sub.add_parser("demo", help="create demo org/project/keys and send generated events over HTTP")
    demo.add_argument("--events", type=int, default=20_000)
    demo.add_argument("--days", type=int, default=30)
    demo.add_argument("--url", help="ingest base URL (default from settings)")

    from benchmarks.suite import add_arguments as bench_arguments  # light: no service code imported

    bench = sub.add_parser(
        "bench", help="run the benchmark suite and write a dated report (= python -m benchmarks)"
    )
    bench_arguments(bench)

    args = parser.parse_args(argv)
    if args.command == "bench":
        from benchmarks.suite import run_cli

        sys.exit(run_cli(args, "pulseops " + " ".join(sys.argv[1:] if argv is None else argv)))
    settings = get_settings()
    if args.command == "migrate":
        migrate(settings)
    elif args.command == "keys":
        keys_command(settings, args)
    elif args.command == "up":
        sys.exit(up_command(settings, args))
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
    from warehouse.tenants import create_api_key, ensure_org, ensure_project, list_api_keys, revoke_api_key

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
                row = conn.execute("SELECT id FROM orgs WHERE slug = %s", (args.org,)).fetchone()
                if row is None:
                    sys.exit(f"no org {args.org!r}")
                org_id = row[0]
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
AGGREGATE_ASSETS = "event_rollups,user_activity,daily_aggregates"


def dagster_instance(settings: Settings) -> dict[str, str]:
    """Create the Dagster storage database and dagster.yaml; returns the env the Dagster processes need."""
    from pulseops import services
    from warehouse.db import ensure_database, with_database

    storage = with_database(settings.db.url, "pulseops_dagster")
    ensure_database(storage)
    home = services.write_dagster_instance(settings, storage)
    return {"DAGSTER_HOME": str(home), **services.dagster_env()}


def backfill_command(settings: Settings, start: date, end: date) -> int:
    """`dagster asset materialize --partition-range` (one run thanks to the single-run backfill policy)."""
    if end < start:
        sys.exit("--to must not be before --from")
    env = {**os.environ, **dagster_instance(settings)}
    cmd = [
        sys.executable, "-m", "dagster", "asset", "materialize", "-m", "orchestration.definitions", "-a", "defs",
        "--select", AGGREGATE_ASSETS, "--partition-range", f"{start}...{end}",
    ]  # fmt: skip
    print("$", " ".join(cmd), flush=True)
    return subprocess.call(cmd, env=env, cwd=ROOT)


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
    from pulseops import services

    state = Path(settings.state_dir)
    (state / "logs").mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    programs: list[services.Program] = []

    db_url = settings.db.url
    if not services.env_is_set("PULSEOPS_DB__URL") and not services.postgres_reachable(db_url):
        print("PostgreSQL not reachable at the default URL: starting embedded pgserver", flush=True)
        db_url = services.start_embedded_postgres(settings.db.embedded_dir)
    env["PULSEOPS_DB__URL"] = db_url

    redis_url = settings.redis.url
    host, port = services.redis_host_port(redis_url)
    if not services.env_is_set("PULSEOPS_REDIS__URL") and not services.port_open(host, port):
        port = 6390
        redis_url = f"redis://127.0.0.1:{port}/0"
        programs.append(services.redis_program(port))
    env["PULSEOPS_REDIS__URL"] = redis_url

    if settings.kafka.bootstrap is None:
        if services.port_open("127.0.0.1", settings.kafka.embedded_port):
            print(
                f"port {settings.kafka.embedded_port} is busy: stop it or set PULSEOPS_KAFKA__BOOTSTRAP",
                flush=True,
            )
            return 1
        programs.append(services.tansu_program(settings))
    env["PULSEOPS_KAFKA__BOOTSTRAP"] = settings.kafka.servers

    os.environ.update(env)
    get_settings.cache_clear()
    settings = get_settings()
    migrate(settings)

    metrics_dir = state / "prometheus"
    if metrics_dir.exists():
        for f in metrics_dir.iterdir():
            f.unlink()
    metrics_dir.mkdir(exist_ok=True)
    workers = args.workers or settings.streams.workers
    dagster = dagster_instance(settings)
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
        services.Program(
            "dagster-webserver",
            services.python_module(
                "dagster_webserver",
                "-w",
                "workspace.yaml",
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
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            priority=30,
            env=dagster,
            directory=str(ROOT),
        ),
        services.Program("dashboard", services.python_module("dashboards"), priority=40),
        services.Program("alerts", services.python_module("alerting"), priority=40),
    ]
    conf = state / "supervisord.conf"
    passthrough = {
        k: v for k, v in os.environ.items() if k.startswith(("PULSEOPS_", "PATH", "HOME", "LANG", "TZ"))
    }
    conf.write_text(
        services.supervisord_conf(programs, state, {**passthrough, **services.QUIET_WARNINGS, **env})
    )
    proc = subprocess.Popen([sys.executable, "-m", "supervisor.supervisord", "-c", str(conf)])

    def stop(_signum, _frame) -> None:
        proc.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    ingest = _ingest_url(settings)
    threading.Thread(
        target=_announce, args=(settings, ingest, workers, args.demo, args.demo_events), daemon=True
    ).start()
    return proc.wait()


def _announce(settings: Settings, ingest: str, workers: int, demo: bool, demo_events: int) -> None:
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
        print("!! ingest did not become ready within 120 s; see the log above", flush=True)
        return
    print(
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
                "  Ctrl-C stops everything.",
                "",
            ]
        ),
        flush=True,
    )
    if demo:
        run_demo(settings, ingest, demo_events, DEMO_DAYS)
        # The late-data sensor keeps today and yesterday fresh; the demo's older days are built by one backfill
        # run, which then shows in the Dagster UI like any other.
        time.sleep(3)  # let landing catch up with the last requests
        today = datetime.now(UTC).date()
        print("Building the demo days' aggregates (one Dagster backfill run)...", flush=True)
        rc = backfill_command(settings, today - timedelta(days=DEMO_DAYS), today)
        print("Demo aggregates built." if rc == 0 else f"!! demo backfill failed (exit {rc})", flush=True)


# -- demo -------------------------------------------------------------------------------------------------
DEMO_DAYS = 30
DEMO_TENANTS = (("acme", "web", "hot"), ("acme", "mobile", "medium"), ("globex", "shop", "quiet"))


def run_demo(settings: Settings, ingest_url: str, events: int, days: int) -> None:
    from benchmarks.generator import GeneratorConfig, TenantSpec, generate, ground_truth_for, send_http_sync
    from warehouse.db import connect
    from warehouse.tenants import create_api_key, ensure_org, ensure_project

    keys: dict[str, str] = {}
    lines = []
    with connect(settings.db.url, autocommit=True) as conn:
        for org_slug, project_slug, tier in DEMO_TENANTS:
            org_id = ensure_org(conn, org_slug)
            project_id = ensure_project(conn, org_id, project_slug)
            _, ingest_key = create_api_key(
                conn, org_id=org_id, project_id=project_id, kind="ingest", name="demo"
            )
            _, read_key = create_api_key(conn, org_id=org_id, project_id=project_id, kind="read", name="demo")
            keys[tier] = ingest_key
            lines.append(
                f"  {org_slug}/{project_slug:7} project {project_id}\n    ingest key {ingest_key}\n    read key   {read_key}"
            )
    with connect(settings.db.url, autocommit=True) as conn:
        acme = ensure_org(conn, "acme")
        _, org_key = create_api_key(conn, org_id=acme, project_id=None, kind="read", name="demo dashboard")
    lines.append(f"  dashboard demo key (read key of every acme project) {org_key}")
    print("Demo tenants (keys are shown once):\n" + "\n".join(lines), flush=True)
    config = GeneratorConfig(
        seed=int(date.today().strftime("%Y%m%d")),
        total_events=events,
        days=days,
        tenants=[TenantSpec("hot", 0.6, 2000), TenantSpec("medium", 0.3, 800), TenantSpec("quiet", 0.1, 150)],
    )
    stream = list(generate(config))
    truth = ground_truth_for(stream)
    started = time.perf_counter()
    report = send_http_sync(stream, ingest_url, keys, batch_size=500, concurrency=4)
    took = time.perf_counter() - started
    print(
        f"Demo: sent {len(stream):,} events over {days} days in {took:.1f}s ({truth.duplicates} of them exact "
        f"re-sends, deduplicated by event_id): {report.accepted:,} accepted, {report.rejected} rejected, "
        f"{report.retries} retries, {report.batches_failed} failed batches",
        flush=True,
    )
    example_key = keys["hot"]
    print(
        "Try it:\n"
        f"  curl -si -X POST {ingest_url}/v1/events -H 'X-API-Key: {example_key}' -H 'Content-Type: application/json' "
        f'-d \'{{"event": "signup", "distinct_id": "u-1", "event_id": "{uuid.uuid4()}", '
        '"properties": {"plan": "pro"}}\'',
        flush=True,
    )


if __name__ == "__main__":
    main()
