"""The asset checks against a real warehouse, executed by Dagster: the aggregates multi-asset and every check
materialised in process for one UTC day (or a range), then data broken on purpose."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta

import dagster as dg
import psycopg
import pytest

from orchestration.assets.aggregates import aggregates
from orchestration.checks import checks
from orchestration.checks.expectations import validate
from orchestration.resources import SettingsResource, WarehouseResource
from pulseops.settings import get_settings
from tests.utils.tenants import make_tenant
from warehouse.aggregates import rebuild_day
from warehouse.landing import DeadLetter, LandingRow, land_batch
from warehouse.quality import duplicate_event_ids, expectation_inputs

AGGREGATE_TABLES = "event_rollups, user_activity, daily_aggregates, metric_definitions"
CHECK_NAMES = {
    "no_duplicate_event_ids",
    "aggregates_reconcile_with_raw",
    "late_arrival_share_within_threshold",
    "dead_letter_rate_within_threshold",
    "great_expectations_suite",
}
TODAY = datetime.now(UTC).date()
D1 = TODAY - timedelta(days=6)
D2 = TODAY - timedelta(days=5)


@pytest.fixture
def tenant(db: psycopg.Connection) -> Iterator[dict]:
    db.execute(f"TRUNCATE {AGGREGATE_TABLES} CASCADE")  # not in the fixture's TABLES
    yield make_tenant(db)


def rows(
    tenant: dict,
    day: date,
    n: int,
    names: tuple[str, ...] = ("page_view", "signup"),
    users: int = 4,
    late: int = 0,
) -> list[LandingRow]:
    """n events spread over the day; the first `late` ones received two days after their event time."""
    out = []
    for i in range(n):
        when = datetime.combine(day, time(i % 24, (7 * i) % 60), tzinfo=UTC)
        received = when + (timedelta(days=2) if i < late else timedelta(seconds=2))
        out.append(
            (
                tenant["project_id"],
                when,
                uuid.uuid4(),
                tenant["org_id"],
                names[i % len(names)],
                f"user-{i % users}",
                received,
                json.dumps({"path": f"/p{i % 3}"}),
            )
        )
    return out


def run(
    database_url: str,
    day: date | None = None,
    *,
    only_checks: bool = False,
    range_: tuple[date, date] | None = None,
    instance: dg.DagsterInstance | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise the aggregates of `day` (or of a range, in one run) with every check, as the rebuild job
    does; `only_checks` runs the checks alone on the day's current tables."""
    resources = {"warehouse": WarehouseResource(database_url=database_url), "pulseops": SettingsResource()}
    partition_key = day.isoformat() if day else None
    tags = {}
    if range_:  # what a single-run backfill puts on its run
        tags = {
            "dagster/asset_partition_range_start": range_[0].isoformat(),
            "dagster/asset_partition_range_end": range_[1].isoformat(),
        }
    selection = None
    if only_checks:
        # dg.materialize(partition_key=...) validates the key against the PartitionsDefinition of the selected
        # *assets*; a checks-only selection has none (dagster 1.13 also drops a job-level partitions_def then),
        # so the partition goes on the run as its tag, which is what a launched run carries anyway.
        selection = dg.AssetSelection.checks(*checks)
        tags = {"dagster/partition": partition_key}
        partition_key = None
    return dg.materialize(
        [aggregates, *checks],
        partition_key=partition_key,
        tags=tags,
        selection=selection,
        resources=resources,
        instance=instance or dg.DagsterInstance.ephemeral(),
        raise_on_error=False,
    )


def evaluations(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    out = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(out) == CHECK_NAMES
    return out


def md(evaluation: dg.AssetCheckEvaluation, key: str):
    return evaluation.metadata[key].value


def failed(result: dg.ExecuteInProcessResult) -> set[str]:
    return {name for name, e in evaluations(result).items() if not e.passed}


def test_clean_days_pass(db: psycopg.Connection, tenant: dict, database_url: str) -> None:
    land_batch(db, rows(tenant, D1, 48))
    land_batch(db, rows(tenant, D2, 40))
    first = run(database_url, D1)
    assert first.success
    assert failed(first) == set()
    second = run(database_url, D2)
    assert second.success
    ev = evaluations(second)
    assert failed(second) == set()
    assert all(e.partition == D2.isoformat() for e in ev.values())

    dup = ev["no_duplicate_event_ids"]
    assert (md(dup, "events"), md(dup, "count"), md(dup, "samples")) == (40, 0, [])
    rec = ev["aggregates_reconcile_with_raw"]
    assert (md(rec, "raw_events"), md(rec, "projects_compared"), md(rec, "mismatch_count")) == (40, 1, 0)
    late = ev["late_arrival_share_within_threshold"]
    assert (md(late, "events"), md(late, "count"), md(late, "share")) == (40, 0, 0.0)
    dead = ev["dead_letter_rate_within_threshold"]
    assert (md(dead, "dead_letters"), md(dead, "rate")) == (0, 0.0)

    ge = ev["great_expectations_suite"]
    summary = md(ge, "results")
    assert summary["skipped"] == []  # D1 is history for both the volume and the names expectations
    assert summary["history_mean_events"] == 48
    assert summary["raw_rows_checked"] == summary["raw_rows_total"] == 40
    assert md(ge, "unsuccessful_expectations") == 0
    assert md(ge, "evaluated_expectations") == 6 + 7 + 2
    # the first day had no history: those two expectations were skipped, not failed
    first_summary = md(evaluations(first)["great_expectations_suite"], "results")
    assert len(first_summary["skipped"]) == 2


def test_duplicate_event_id_fails(db: psycopg.Connection, tenant: dict, database_url: str) -> None:
    batch = rows(tenant, D1, 20)
    land_batch(db, batch)
    project, when, event_id, org, name, distinct_id, received, _ = batch[5]
    # A second copy of an event, three minutes later the same day, written past the ledger.
    db.execute(
        "INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (project, when + timedelta(minutes=3), event_id, org, name, distinct_id, received),
    )
    result = run(database_url, D1)
    assert not result.success  # a blocking ERROR check fails its step
    ev = evaluations(result)
    assert failed(result) == {"no_duplicate_event_ids"}
    dup = ev["no_duplicate_event_ids"]
    assert dup.severity == dg.AssetCheckSeverity.ERROR
    assert (md(dup, "duplicate_keys"), md(dup, "extra_rows"), md(dup, "missing_from_ledger")) == (1, 1, 0)
    # the copy's time is not the one the ledger recorded: one row the ledger does not vouch for
    assert (md(dup, "ledger_time_mismatch"), md(dup, "count")) == (1, 1)
    assert dup.description.startswith("1 rows not accounted for")
    samples = md(dup, "samples")
    assert samples[0]["kind"] == "duplicate"
    assert samples[0]["event_id"] == str(event_id)
    assert samples[0]["rows"] == 2


def test_tampered_aggregate_fails_when_checks_rerun(
    db: psycopg.Connection, tenant: dict, database_url: str
) -> None:
    land_batch(db, rows(tenant, D1, 30))
    assert run(database_url, D1).success
    db.execute("UPDATE daily_aggregates SET value = value + 1 WHERE metric = 'events' AND date = %s", (D1,))

    result = run(database_url, D1, only_checks=True)
    assert result.get_asset_materialization_events() == []  # the aggregates were not rebuilt
    assert db.execute(
        "SELECT value FROM daily_aggregates WHERE metric = 'events' AND dimensions = '{}' AND date = %s",
        (D1,),
    ).fetchone() == (31.0,)
    assert not result.success
    assert failed(result) == {"aggregates_reconcile_with_raw"}
    rec = evaluations(result)["aggregates_reconcile_with_raw"]
    assert rec.severity == dg.AssetCheckSeverity.ERROR
    assert rec.partition == D1.isoformat()
    (mismatch,) = md(rec, "mismatches")
    assert mismatch["project_id"] == str(tenant["project_id"])
    assert (mismatch["raw_events"], mismatch["rollup_events"], mismatch["aggregate_events"]) == (30, 30, 31)


def test_data_landed_after_the_build_is_pending_not_a_mismatch(
    db: psycopg.Connection, tenant: dict, database_url: str
) -> None:
    land_batch(db, rows(tenant, D1, 30))
    assert run(database_url, D1).success
    land_batch(db, rows(tenant, D1, 5))  # late data: landed version > built version

    result = run(database_url, D1, only_checks=True)
    assert result.success
    rec = evaluations(result)["aggregates_reconcile_with_raw"]
    assert rec.passed
    assert (md(rec, "projects_compared"), md(rec, "pending_rebuild_count")) == (0, 1)
    (pending,) = md(rec, "pending_rebuild")
    assert (pending["reason"], pending["raw_events"], pending["aggregate_events"]) == ("late_data", 35, 30)


def test_late_events_warn_with_their_share(db: psycopg.Connection, tenant: dict, database_url: str) -> None:
    land_batch(db, rows(tenant, D1, 12, late=3))
    result = run(database_url, D1)
    assert result.success  # WARN does not fail the run
    assert failed(result) == {"late_arrival_share_within_threshold"}
    late = evaluations(result)["late_arrival_share_within_threshold"]
    assert late.severity == dg.AssetCheckSeverity.WARN
    assert (md(late, "events"), md(late, "count"), md(late, "share")) == (12, 3, 0.25)
    assert md(late, "threshold") == get_settings().orchestration.late_share_warn


def test_dead_letters_warn(db: psycopg.Connection, tenant: dict, database_url: str) -> None:
    dead = DeadLetter("schema", "bad json", b"{", "events-raw", 0, 7, tenant["org_id"], tenant["project_id"])
    land_batch(db, rows(tenant, TODAY, 9), dead=[dead])
    land_batch(db, rows(tenant, TODAY - timedelta(days=1), 1))  # landed today, event time yesterday
    result = run(database_url, TODAY)
    assert result.success
    assert failed(result) == {"dead_letter_rate_within_threshold"}
    rate = evaluations(result)["dead_letter_rate_within_threshold"]
    assert rate.severity == dg.AssetCheckSeverity.WARN
    assert (md(rate, "dead_letters"), md(rate, "landed"), md(rate, "rate")) == (1, 10, 1 / 11)
    assert md(rate, "by_reason") == {"schema": 1}


def test_day_without_data_succeeds(db: psycopg.Connection, tenant: dict, database_url: str) -> None:
    result = run(database_url, D1)
    assert result.success
    assert failed(result) == set()
    (mat,) = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key.path == ["daily_aggregates"]]  # fmt: skip
    assert mat.metadata["raw_events"].value == 0
    ge = evaluations(result)["great_expectations_suite"]
    assert md(ge, "raw_rows_total") == 0


def test_unknown_event_name_fails_expectations(
    db: psycopg.Connection, tenant: dict, database_url: str
) -> None:
    land_batch(db, rows(tenant, D1, 30))
    assert run(database_url, D1).success
    land_batch(db, rows(tenant, D2, 30, names=("page_view", "signup", "mystery_event")))
    result = run(database_url, D2)
    assert result.success  # not blocking
    assert failed(result) == {"great_expectations_suite"}
    ge = evaluations(result)["great_expectations_suite"]
    assert ge.severity == dg.AssetCheckSeverity.ERROR
    summary = md(ge, "results")
    (failure,) = summary["suites"]["event_names"]["failed"]
    assert failure["expectation"] == "expect_column_values_to_be_in_set"
    assert failure["unexpected_sample"] == ["mystery_event"]
    assert summary["suites"]["raw_events"]["success"] and summary["suites"]["daily_aggregates"]["success"]


def test_range_run_reports_every_day(db: psycopg.Connection, tenant: dict, database_url: str) -> None:
    """A single-run backfill of two days: each check reports each day under its own partition."""
    land_batch(db, rows(tenant, D1, 10))
    batch = rows(tenant, D2, 10)
    land_batch(db, batch)
    db.execute(
        "INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at) "
        "SELECT project_id, event_time + interval '1 minute', event_id, org_id, event_name, distinct_id, "
        "received_at FROM events WHERE event_id = %s",
        (batch[0][2],),
    )
    instance = dg.DagsterInstance.ephemeral()
    result = run(database_url, range_=(D1, D2), instance=instance)
    assert not result.success  # the blocking duplicate check failed on D2
    by_day = {(e.check_name, e.partition): e for e in result.get_asset_check_evaluations()}
    assert set(by_day) == {(name, day.isoformat()) for name in CHECK_NAMES for day in (D1, D2)}
    assert {k for k, e in by_day.items() if not e.passed} == {("no_duplicate_event_ids", D2.isoformat())}
    assert md(by_day["no_duplicate_event_ids", D1.isoformat()], "events") == 10
    assert md(by_day["no_duplicate_event_ids", D2.isoformat()], "duplicate_keys") == 1
    assert md(by_day["aggregates_reconcile_with_raw", D2.isoformat()], "raw_events") == 11
    # Dagster's per-partition check status sees both days, each against its latest materialisation.
    key = dg.AssetCheckKey(dg.AssetKey("event_rollups"), "no_duplicate_event_ids")
    infos = {i.partition_key: i for i in instance.event_log_storage.get_asset_check_partition_info([key])}
    assert infos[D1.isoformat()].latest_execution_status.value == "SUCCEEDED"
    assert infos[D2.isoformat()].latest_execution_status.value == "FAILED"
    assert all(infos[d.isoformat()].is_current for d in (D1, D2))


def test_big_day_is_sampled_but_names_and_volume_stay_exact(db: psycopg.Connection, tenant: dict) -> None:
    land_batch(db, rows(tenant, D1, 60, names=("page_view", "signup", "purchase")))
    inputs = expectation_inputs(db, [D1], cap=20)
    assert inputs.raw_total == 60 and inputs.raw_sampled
    assert 0 < len(inputs.raw_rows) <= 20
    assert [(day, name, n) for day, name, n, _known in inputs.names] == [
        (D1, "page_view", 20), (D1, "purchase", 20), (D1, "signup", 20)
    ]  # fmt: skip
    summary = validate(inputs)[D1]
    assert summary["success"]
    assert (summary["raw_sampled"], summary["raw_rows_total"]) == (True, 60)
    assert summary["raw_rows_checked"] == len(inputs.raw_rows)


def test_expectations_validate_a_range_in_one_batch_and_blame_the_right_day(
    db: psycopg.Connection, tenant: dict
) -> None:
    """Three days in one validation: the unknown name of the third day fails that day only."""
    d3 = D2 + timedelta(days=1)
    land_batch(db, rows(tenant, D1, 30))
    land_batch(db, rows(tenant, D2, 30))
    land_batch(db, rows(tenant, d3, 30, names=("page_view", "signup", "mystery_event")))
    for day in (D1, D2, d3):
        rebuild_day(db, day)
    summaries = validate(expectation_inputs(db, [D1, D2, d3]))
    assert [summaries[d]["success"] for d in (D1, D2, d3)] == [True, True, False]
    assert {s["days_in_batch"] for s in summaries.values()} == {3}
    (failure,) = summaries[d3]["suites"]["event_names"]["failed"]
    assert failure["unexpected_sample"] == ["mystery_event"]


def test_copy_on_another_day_is_caught_by_the_ledger(db: psycopg.Connection, tenant: dict) -> None:
    """A duplicate across midnight has no twin in its own day; the ledger's event time gives it away."""
    (event,) = rows(tenant, D1, 1)
    land_batch(db, [event])
    project, _, event_id, org, name, distinct_id, received, _ = event
    db.execute("SELECT ensure_events_partition(%s)", (D2,))  # landing would have created it
    db.execute(
        "INSERT INTO events (project_id, event_time, event_id, org_id, event_name, distinct_id, received_at) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (project, datetime.combine(D2, time(0, 1), tzinfo=UTC), event_id, org, name, distinct_id, received),
    )
    assert duplicate_event_ids(db, D1).ok
    report = duplicate_event_ids(db, D2)
    assert (report.duplicate_keys, report.missing_from_ledger, report.ledger_time_mismatch) == (0, 0, 1)
    assert not report.ok
    assert report.samples[0]["kind"] == "ledger_time_mismatch"


def test_checks_run_without_jit(
    db: psycopg.Connection, tenant: dict, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JIT compilation of a range statement cost more than running it (warehouse/quality.py disable_jit)."""
    import orchestration.checks.integrity as integrity

    seen = []
    measure = integrity.late_arrivals_days

    def spy(conn: psycopg.Connection, days: list[date], lag_s: float):
        seen.append(conn.execute("SHOW jit").fetchone()[0])
        return measure(conn, days, lag_s)

    monkeypatch.setattr(integrity, "late_arrivals_days", spy)
    land_batch(db, rows(tenant, D1, 4))
    assert run(database_url, D1).success
    assert seen == ["off"]


def test_range_checks_measure_their_days_in_parts_on_two_connections(
    db: psycopg.Connection, tenant: dict, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A range run's day-by-day checks measure contiguous parts of its days at once, one connection each
    (orchestration/checks/common.py CHECK_CONNECTIONS); the GE suite validates the whole range as one batch."""
    import orchestration.checks.expectations as expectations
    import orchestration.checks.integrity as integrity

    calls, inputs = [], []
    late, gx_inputs = integrity.late_arrivals_days, expectations.expectation_inputs

    def spy_late(conn: psycopg.Connection, days: list[date], lag_s: float):
        calls.append((conn.info.backend_pid, tuple(days)))
        return late(conn, days, lag_s)

    def spy_inputs(conn: psycopg.Connection, days: list[date], **kwargs):
        inputs.append(tuple(days))
        return gx_inputs(conn, days, **kwargs)

    monkeypatch.setattr(integrity, "late_arrivals_days", spy_late)
    monkeypatch.setattr(expectations, "expectation_inputs", spy_inputs)
    d0 = D1 - timedelta(days=1)
    for day in (d0, D1, D2):
        land_batch(db, rows(tenant, day, 4))
    result = run(database_url, range_=(d0, D2))
    assert result.success
    assert sorted(days for _, days in calls) == [(d0, D1), (D2,)]
    assert len({pid for pid, _ in calls}) == 2
    assert inputs == [(d0, D1, D2)]
    late_days = [e.partition for e in result.get_asset_check_evaluations() if e.check_name.startswith("late")]
    assert late_days == [d.isoformat() for d in (d0, D1, D2)]
