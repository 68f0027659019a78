"""The benchmarks run end to end at small size (CI smoke test: they must work, the figures are not judged)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.fixtures.system import ROOT

pytestmark = pytest.mark.slow


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed (.ci/run installs it)")
def test_ingest_benchmark_runs_at_small_size():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.ingest", "--size", "small", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for line in (
        "1 event/request",
        "100 events/request",
        "1,000 events/request",
        "landing / COPY",
        "202 -> visible",
    ):
        assert line in out.stdout
    assert "non-2xx" in out.stdout and "unseen 0" in out.stdout


def test_orchestration_benchmark_runs_at_small_size():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.orchestration", "--size", "small", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for line in (
        "backfill (one",
        "plain SQL GROUP BY",
        "rebuild of one day",
        "late event landed -> corrected",
    ):
        assert line in out.stdout


def test_query_benchmark_runs_at_small_size():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.queries", "--size", "small", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for line in ("eventCounts DAY 30d", "activeUsers DAU 30d", "breakdown plan 7d (raw)", "cached mix"):
        assert line in out.stdout


def test_cold_tier_benchmark_runs_at_small_size():
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.cold", "--size", "small", "--no-report"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    for line in (
        "export to zstd Parquet",
        "parity check",
        "size: Parquet",
        "-day aggregate",
        "rebuild one day",
    ):
        assert line in out.stdout
    assert "results identical across engines: True" in out.stdout and "days failed: 0" in out.stdout
