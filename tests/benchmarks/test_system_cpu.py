"""benchmarks/system_cpu.py runs against a real `pulseops up` and attributes CPU to the services it started.

Figures are not judged (a shared CI machine); what is: every service is found and charged, the ingest window
really carried load (202s, accepted events), and the machine's share is a share.
"""

from __future__ import annotations

import shutil

import pytest

from benchmarks import system_cpu
from tests.utils.tools import require, skip_unless_installed

pytestmark = pytest.mark.slow


@skip_unless_installed(shutil.which("wrk") is None, "wrk")
@pytest.mark.timeout(420)
def test_system_cpu_measures_each_service_idle_and_under_ingest():
    require(shutil.which("wrk") is None, "wrk")
    r = system_cpu.measure(idle_s=3, ingest_s=3, warmup_s=0)
    for window in (r["idle"], r["ingest"]):
        assert 0 <= window["machine_pct"] <= 100
        assert {"dagster", "ingest", "streams", "broker"} <= set(window["groups_cpu_s"]), window
    assert r["ingest"]["groups_cpu_s"]["ingest"] > 0
    assert r["wrk"]["statuses"].get(202, 0) > 0
    # the rest of the machine is attributed too: the landing writes into PostgreSQL during the ingest window
    assert r["ingest"]["others_pct"].get("postgres", 0) > 0, r["ingest"]["others_pct"]
    # the benchmark is charged by pid, apart from the system and from the machine's other processes: wrk (its
    # child) carried the ingest window's load
    assert r["ingest"]["benchmark_pct"] > 0, r["ingest"]["others_pct"]
    # ...because the window lies inside wrk's run: a wrk exiting during the end snapshot would be lost to it
    assert r["wrk"]["seconds"] >= r["ingest"]["seconds"] + 1.5, (r["wrk"]["seconds"], r["ingest"]["seconds"])
    assert "wrk" not in r["ingest"]["others_pct"], r["ingest"]["others_pct"]
    for window in (r["idle"], r["ingest"]):
        ours = sum(window["groups_pct"].values())
        parts = ours + window["postgres_pct"] + window["postgres_exited_pct"] + window["redis_pct"]
        assert window["system_pct"] == pytest.approx(parts)
    assert r["ingest"]["postgres_pct"] > 0
    text = system_cpu.render(r)
    assert "idle, no traffic" in text
    assert "The rest of the machine, per process name" in text
    assert "The idle verdict judges the idle system" in text
