"""benchmarks/catchup_cpu.py: a drain's CPU per process group from /proc, and the two-worker target judged only
when one worker left CPU for a second one (issue 17: "two workers >= 1.6x one" on a 2-core machine)."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.catchup_cpu import ProcMark, breakdown, scaling_verdict

BURN = (
    "import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.4: pass\nsys.stdin.read()\n"
)


def _one(busy: float, rows_per_s: float = 50_000.0) -> dict:
    # 36 us of pipeline CPU per row on 2 cores: at most 55,556 rows/s
    cpu = {"cores": 2, "machine_busy": busy, "pipeline_us_per_row": 36.0, "machine_us_per_row": 38.0}
    cpu["pipeline_ceiling_rows_per_s"] = 2 * 1e6 / 36.0
    return {"workers": 1, "rows_per_s": rows_per_s, "cpu": cpu}


def test_a_saturated_machine_is_not_judged_and_says_why() -> None:
    v = scaling_verdict(_one(0.93), 1.12)
    assert v["met"] is None
    assert v["text"].startswith("not judged on this machine")
    assert "93% busy" in v["text"] and "55,556 rows/s = 1.11x one worker" in v["text"]


def test_with_idle_cpu_left_the_target_is_judged() -> None:
    assert scaling_verdict(_one(0.6), 1.12)["met"] is False
    assert scaling_verdict(_one(0.6), 1.12)["text"].startswith("missed")
    assert scaling_verdict(_one(0.6), 1.7)["met"] is True


def test_the_two_worker_drain_s_busy_share_and_other_users_are_named() -> None:
    two = {"workers": 2, "cpu": {"machine_busy": 0.97, "others_share": 0.21}}
    text = scaling_verdict(_one(0.6), 0.86, two)["text"]
    assert "two-worker drain the machine was 97% busy" in text and "took 21% of it" in text


def test_no_figures_is_not_measured() -> None:
    assert scaling_verdict(_one(0.5), None)["text"].startswith("not measured")
    assert scaling_verdict({"workers": 1, "rows_per_s": 1.0}, 1.7)["met"] is None


def test_breakdown_charges_a_worker_its_cpu_and_counts_per_row() -> None:
    child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE)
    try:
        a = ProcMark.take()
        # the child burns 0.4 s of CPU after the first mark, then waits on stdin
        while ProcMark.take().procs[child.pid].own_s < 0.35:
            pass
        b = ProcMark.take()
        cpu = breakdown(a, b, [child.pid], "no-such-database", "127.0.0.1:1", rows=100_000)
    finally:
        child.kill()
        child.wait()
    assert 0.25 <= cpu["groups_cpu_s"]["worker 0"] <= 0.6, cpu["groups_cpu_s"]
    assert abs(cpu["us_per_row"]["worker 0"] - cpu["groups_cpu_s"]["worker 0"] * 10) < 1e-6
    assert cpu["pipeline_cpu_s"] >= cpu["groups_cpu_s"]["worker 0"]
    assert 0.0 < cpu["machine_busy"] <= 1.0 + 1e-9
    assert cpu["machine_cpu_s"] >= cpu["groups_cpu_s"]["worker 0"] - 0.05
    assert 0.0 <= cpu["others_share"] <= 1.0 + 1e-9


def test_the_suite_table_judges_two_workers_by_the_scaling_verdict():
    from benchmarks.adapters import catchup_targets
    from benchmarks.verdict import verdict

    def result(met: bool | None, text: str) -> dict:
        runs = [{"workers": 1, "rows_per_s": 50_000.0, "drain_s": 20.0},
                {"workers": 2, "rows_per_s": 70_000.0, "drain_s": 14.0}]  # fmt: skip
        proof = {"sent": 1, "acknowledged": 1, "landed": 1, "duplicated": 0, "missing": 0, "unexpected": 0}
        scaling = {"runs": runs, "acknowledged": 1_000_000, "two_vs_one_verdict": {"met": met, "text": text}}
        return {"scaling": scaling, "proof": proof}

    rows = {v: catchup_targets(result(*v))[1] for v in [(True, "met: 1.7x"), (False, "missed: 1.40x; busy")]}
    assert verdict(rows[True, "met: 1.7x"]) == "met"
    assert verdict(rows[False, "missed: 1.40x; busy"]) == "missed"
    assert "1.40x; busy" in rows[False, "missed: 1.40x; busy"]["measured"]
    unjudged = catchup_targets(result(None, "not judged on this machine: one worker kept it 95% busy"))[1]
    assert verdict(unjudged) == "not judged on this machine"
    assert "95% busy" in unjudged["measured"]
