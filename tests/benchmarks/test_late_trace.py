"""benchmarks/late_trace.py splits a late-data sample into stages from the system's own timestamps."""

from pytest import approx

from benchmarks import late_trace


def _run(created: float, starting: float, start: float) -> dict:
    return {
        "job": "refresh_aggregates_job",
        "status": "SUCCESS",
        "created": created,
        "days": ["2026-12-01"],
        "events": {"PIPELINE_STARTING": starting, "PIPELINE_START": start, "PIPELINE_SUCCESS": start + 3},
        "steps": {"aggregates": {"start": start + 0.1, "end": start + 1.0}},
    }


def test_stages_add_up_to_the_sample() -> None:
    runs = {"r1": _run(created=102.0, starting=102.5, start=104.0)}
    sample = {"sent": 100.0, "took": 6.0, "landed": 100.4, "built": 104.3, "run_id": "r1"}
    (row,) = late_trace.stages([sample], runs)
    assert [row[k] for k in late_trace.STAGES] == approx([0.4, 1.6, 2.0, 0.3, 1.7])
    assert sum(row[k] for k in late_trace.STAGES) == approx(sample["took"])
    assert "  r1 " in late_trace.summary([row], runs)


def test_a_run_already_under_way_counts_from_the_landing() -> None:
    runs = {"r1": _run(created=90.0, starting=90.5, start=92.0)}
    sample = {"sent": 100.0, "took": 2.0, "landed": 100.2, "built": 101.0, "run_id": "r1"}
    (row,) = late_trace.stages([sample], runs)
    assert row["tick"] < 0 and row["start"] == 0.0 and row["rebuilt"] == approx(0.8)
