"""late_data_sensor: rebuild the closed days whose aggregates miss data, many days per run.

Each tick reads what is due (`days_to_build`: late data, never-built days, days built before a custom-metric
definition changed), leaves out days a run is already working on, days still open (today, until
close_grace_s after midnight UTC: their answers come from raw events anyway, warehouse/reads/exact.py) and days
backing off after a failure, and requests ONE run for up to max_days_per_run of them: a single-run range
(the aggregates' BackfillPolicy.single_run) whose `pulseops/days` tag lists the days to rebuild. The run key
is a digest of {day: data key} (landed versions, definitions stamp), so it names exactly the data the run
covers; whatever lands meanwhile is the next tick's run.

cold_export_sensor: exports each closed day to the cold tier (with its parity checks), and again whenever
its PostgreSQL data changed since (late data, a rebuild); one run per day, run key = day + summed versions.

Runs that cannot get lost: Dagster spends a run key once, so a run that failed or was killed would leave its
days waiting for new data. Both sensors settle every finished run of theirs (from a cursor on the runs'
update time): each covered day that is still due with the same data key is one more failure in the warehouse's
retry ledger (warehouse/runs.py), retried with exponential backoff under a new run key (attempt number) and
given up after retry_max_attempts until its data changes; the pipeline page and /metrics show those days.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg
import psycopg

from orchestration.jobs import cold_export_job, rebuild_aggregates_job, refresh_aggregates_job
from orchestration.partitions import DAYS_TAG, daily_partitions
from orchestration.resources import SettingsResource, TickConnections, WarehouseResource
from pulseops.settings import get_settings
from warehouse.aggregates import days_built_by, days_to_build
from warehouse.cold import days_to_export
from warehouse.runs import COLD_EXPORT, REBUILD, RunFailure, clear_failures, record_failure, run_failures

ACTIVE = [dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
          dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]  # fmt: skip
FINISHED = [dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED]
COVERS_TAG = "pulseops/covers"  # {day: data key}: what the run brings up to date
SENSOR_TAG = "pulseops/sensor"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
ASSET_JOB = "__ASSET_JOB"
MAX_RUNTIME_S = 3600  # run monitoring fails a run stuck longer (a lost worker), and the ledger retries it


# The sensors declare no resources: a tick of a sensor that does makes the code server build a DagsterInstance
# from dagster.yaml (storages included) and initialise the resources, ~70 % and ~25 % of an idle tick's CPU
# (cProfile of dagster._grpc.impl.get_external_sensor_execution: 14.7 ms a tick, one every 5 s). They take the
# warehouse from TickConnections (kept open between ticks) and settings from SettingsResource, or the resources
# a test's build_sensor_context passes; context.instance is built only when a tick has work.
_TICK_CONNECTIONS = TickConnections()


def _resources(
    context: dg.SensorEvaluationContext,
) -> tuple[WarehouseResource | TickConnections, SettingsResource]:
    given = context.resources
    warehouse = getattr(given, "warehouse", None) or _TICK_CONNECTIONS
    return warehouse, getattr(given, "pulseops", None) or SettingsResource()


def _covered_days(run: dg.DagsterRun) -> set[date]:
    """Days a run works on: its covers, else its partition or partition range."""
    tags = run.tags
    if COVERS_TAG in tags:
        return {date.fromisoformat(d) for d in json.loads(tags[COVERS_TAG])}
    if "dagster/partition" in tags:
        try:
            return {date.fromisoformat(tags["dagster/partition"])}
        except ValueError:
            return set()
    if RANGE_START in tags and RANGE_END in tags:
        first, last = date.fromisoformat(tags[RANGE_START]), date.fromisoformat(tags[RANGE_END])
        return {first + timedelta(days=i) for i in range((last - first).days + 1)}
    return set()


def _busy_days(
    instance: dg.DagsterInstance, jobs: list[str], conn: psycopg.Connection | None = None
) -> set[date]:
    """Days an active run of `jobs` covers. With `conn`, less the days such a run has already rebuilt: it is
    past them (its asset checks run after the rebuild), so new data of those days need not wait for its end.
    Two runs rebuilding one day take turns on the day's advisory lock (warehouse/aggregates.py day_build)."""
    covered: dict[str, set[date]] = {}
    for job in jobs:
        for rec in instance.get_run_records(dg.RunsFilter(job_name=job, statuses=ACTIVE), limit=1000):
            covered[rec.dagster_run.run_id] = _covered_days(rec.dagster_run)
    done = days_built_by(conn, list(covered)) if conn is not None else {}
    busy: set[date] = set()
    for run_id, days in covered.items():
        busy |= days - done.get(run_id, set())
    return busy


def _failure_message(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str:
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return "the run succeeded but left the day out of date"
    events = instance.all_logs(
        run.run_id, of_type={dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE}
    )
    messages = [e.message for e in events if e.message]
    return f"run {run.status.value}: " + (" | ".join(messages)[-1500:] or "no failure event (killed?)")


def settle_finished_runs(
    context: dg.SensorEvaluationContext,
    conn: psycopg.Connection,
    job: str,
    ledger_job: str,
    due: dict[date, str],
    records: list[dg.RunRecord],
    settings: SettingsResource,
) -> None:
    """Record in the retry ledger what each finished run left undone: covered days still due with the same
    data key failed once more; the others are up to date (or their data moved on) and are forgotten."""
    o = settings.orchestration()
    for rec in records:
        run = rec.dagster_run
        covers = {date.fromisoformat(d): k for d, k in json.loads(run.tags.get(COVERS_TAG, "{}")).items()}
        failed = {d: k for d, k in covers.items() if due.get(d) == k}
        clear_failures(conn, ledger_job, [d for d in covers if d not in failed])
        if failed:
            message = _failure_message(context.instance, run)
            context.log.warning(f"{job} run {run.run_id} left {sorted(map(str, failed))} undone: {message}")
            record_failure(
                conn, ledger_job, failed, run.run_id, message, o.retry_backoff_s, o.retry_max_attempts
            )


def finished_since(
    instance: dg.DagsterInstance, job: str, sensor: str, cursor: str | None
) -> tuple[list[dg.RunRecord], str | None]:
    """Finished runs this sensor launched, updated after the cursor (oldest first), and the new cursor."""
    after = datetime.fromisoformat(cursor) if cursor else None
    records = list(
        instance.get_run_records(
            dg.RunsFilter(job_name=job, tags={SENSOR_TAG: sensor}, statuses=FINISHED, updated_after=after),
            limit=200,
            order_by="update_timestamp",
            ascending=True,
        )
    )
    if records:
        cursor = max(r.update_timestamp for r in records).isoformat()
    return records, cursor


def _waiting(failure: RunFailure | None, key: str, now: datetime) -> bool:
    """Backing off (or given up) after failures for exactly this data."""
    if failure is None or failure.data_key != key:
        return False
    return failure.next_attempt_at is None or failure.next_attempt_at > now


def _attempt(failure: RunFailure | None, key: str) -> int:
    return failure.failures if failure is not None and failure.data_key == key else 0


@dg.sensor(
    job=refresh_aggregates_job,
    # The one setting read at import (Dagster takes the interval with the definition). The sensor daemon loops
    # every 5 s and evaluates a sensor once `minimum_interval_seconds` passed since its last tick *ended*: an
    # interval equal to the loop is met only every other loop (ticks 10 s apart in the daemon's log), hence -1.
    minimum_interval_seconds=max(1, get_settings().orchestration.sensor_interval_s - 1),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests one rebuild run for the closed days whose aggregates miss data (late data, never "
    "built, custom-metric definition edited since), retrying failed or killed runs with backoff.",
)
def late_data_sensor(context: dg.SensorEvaluationContext):
    warehouse, pulseops = _resources(context)
    o = pulseops.orchestration()
    now = datetime.now(UTC)
    start = daily_partitions.start.date()
    since = max(start, now.date() - timedelta(days=o.aggregates_retention_days - 1))
    before = (now - timedelta(seconds=o.close_grace_s)).date()  # days before it are closed + grace
    with warehouse.connection() as conn:
        due = [d for d in days_to_build(conn, since, before) if d.day >= start]
        if not due and not run_failures(conn, REBUILD):
            # The idle answer from two warehouse queries, without the Dagster run queries below (about half
            # of an idle code server's CPU, a tick every 5 s). Settling finished runs can wait: with nothing
            # due and nothing in the ledger it could only clear entries that do not exist, and the cursor
            # stays, so the next tick with work settles them against the then-current data keys.
            return dg.SkipReason("nothing to rebuild")
        records, cursor = finished_since(
            context.instance, refresh_aggregates_job.name, "late_data_sensor", context.cursor
        )
        # backfills (UI, `pulseops backfill`) run as Dagster's implicit asset job
        busy = _busy_days(
            context.instance, [refresh_aggregates_job.name, rebuild_aggregates_job.name, ASSET_JOB], conn
        )
        # read again after the runs: a day that a running run rebuilt meanwhile is neither busy nor due
        due = [d for d in days_to_build(conn, since, before) if d.day >= start]
        settle_finished_runs(
            context,
            conn,
            refresh_aggregates_job.name,
            REBUILD,
            {d.day: d.data_key for d in due},
            records,
            pulseops,
        )
        ledger = {f.day: f for f in run_failures(conn, REBUILD)}
    context.update_cursor(cursor)
    ready = [d for d in due if d.day not in busy and not _waiting(ledger.get(d.day), d.data_key, now)]
    if not ready:
        waiting = len(due) - len(ready)
        return dg.SkipReason(
            f"nothing to rebuild ({waiting} due days running or backing off)" if due else "nothing to rebuild"
        )
    first = ready[0].day
    chosen = [d for d in ready if (d.day - first).days < o.max_days_per_run]
    covers = {d.day.isoformat(): d.data_key for d in chosen}
    attempt = max(_attempt(ledger.get(d.day), d.data_key) for d in chosen)
    digest = hashlib.sha256(json.dumps(covers, sort_keys=True).encode()).hexdigest()[:16]
    tags = {
        COVERS_TAG: json.dumps(covers, sort_keys=True),
        DAYS_TAG: ",".join(covers),
        SENSOR_TAG: "late_data_sensor",
        "pulseops/reason": ",".join(sorted({r for d in chosen for r in d.reasons})),
        "pulseops/attempt": str(attempt),
        "dagster/max_runtime_seconds": str(MAX_RUNTIME_S),
    }
    last = chosen[-1].day.isoformat()
    run_key = f"rebuild:{first}..{last}:{digest}:{attempt}"
    if len(chosen) == 1:
        return dg.RunRequest(run_key=run_key, partition_key=first.isoformat(), tags=tags)
    return dg.RunRequest(run_key=run_key, tags={**tags, RANGE_START: first.isoformat(), RANGE_END: last})


@dg.sensor(
    job=cold_export_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a cold-tier export (with its parity checks) of each closed UTC day whose "
    "PostgreSQL data is not in Parquet as it is now: never exported, more data landed, or rebuilt since; "
    "failed or killed exports are retried with backoff.",
)
def cold_export_sensor(context: dg.SensorEvaluationContext):
    warehouse, pulseops = _resources(context)
    cold = pulseops.cold()
    if not cold.enabled:
        return dg.SkipReason("cold tier exports are off (PULSEOPS_COLD__ENABLED=false)")
    now = datetime.now(UTC)
    first = daily_partitions.start.date()
    records, cursor = finished_since(
        context.instance, cold_export_job.name, "cold_export_sensor", context.cursor
    )
    with warehouse.connection() as conn:
        # retry_after 0: the retry ledger paces retries of failed exports and checks
        days = days_to_export(
            conn,
            first,
            now.date() - timedelta(days=cold.export_after_days - 1),
            limit=500,
            retry_after=timedelta(0),
        )
        settle_finished_runs(
            context,
            conn,
            cold_export_job.name,
            COLD_EXPORT,
            {d.day: str(d.version) for d in days},
            records,
            pulseops,
        )
        ledger = {f.day: f for f in run_failures(conn, COLD_EXPORT)}
    context.update_cursor(cursor)
    busy = _busy_days(context.instance, [cold_export_job.name])
    requests = []
    for d in days:
        key, failure = str(d.version), ledger.get(d.day)
        if d.day in busy or _waiting(failure, key, now):
            continue
        attempt = _attempt(failure, key)
        day = d.day.isoformat()
        requests.append(
            dg.RunRequest(
                run_key=f"cold:{day}:{d.version}:{attempt}",
                partition_key=day,
                tags={
                    "pulseops/reason": "cold_export",
                    "pulseops/source_version": key,
                    "pulseops/queue": "cold",
                    "pulseops/attempt": str(attempt),
                    COVERS_TAG: json.dumps({day: key}),
                    SENSOR_TAG: "cold_export_sensor",
                    "dagster/max_runtime_seconds": str(MAX_RUNTIME_S),
                },
            )
        )
        if len(requests) >= cold.max_days_per_tick:
            break
    return requests or dg.SkipReason(
        f"{len(days)} days to export, all running or backing off" if days else "all exported"
    )
