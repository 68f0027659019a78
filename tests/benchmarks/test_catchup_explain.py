"""Catch-up/scaling/offset proof and query-plan capture run end to end at small size (CI smoke test).

The figures are not judged here; the exact counts of the offset/retry proof are, and every dashboard
question must come back with a captured plan.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.fixtures.system import ROOT

pytestmark = pytest.mark.slow


def test_catchup_benchmark_proves_exact_counts_at_small_size():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.catchup", "--size", "small", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    for line in (
        "== Worker catch-up",
        "== Scaling",
        "== Offset / retry proof",
        "SIGTERM worker",
        "SIGKILL worker",
    ):
        assert line in text
    assert "duplicated 0 missing 0 unexpected 0" in text
    sent = re.search(
        r"^sent ([\d,]+) acknowledged ([\d,]+) .* landed ([\d,]+) \(ledger ([\d,]+)\)$", text, re.M
    )
    assert sent and len({sent.group(i) for i in (1, 2, 3, 4)}) == 1, text[-2000:]
    assert re.search(r"landed [\d,]+ == acknowledged [\d,]+: True, duplicated 0", text)
    rows = re.findall(r"^\s+(\d) +[\d.]+ +[\d.]+ +[\d,]+ +[\d.]+x +[\d,]+ +0  ", text, re.M)
    assert rows == ["1", "2"], text[-2000:]


def test_explain_benchmark_captures_a_plan_for_every_question_at_small_size():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.explain", "--size", "small", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    text = out.stdout
    assert "questions with a plan: 10/10" in text and "NO PLAN CAPTURED" not in text
    for name in (
        "eventCounts DAY 30d",
        "activeUsers DAU 30d",
        "breakdown plan 7d (raw)",
        "metrics overview 30d",
    ):
        assert f"== {name}:" in text
    # raw questions read day partitions of `events`, and only those of their range
    assert re.search(r"events partitions scanned 7/\d+ \(pruned \d+\)", text)
