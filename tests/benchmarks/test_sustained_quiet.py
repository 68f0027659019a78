"""benchmarks/sustained.py measures the after-run only once landing is idle, not merely once the acknowledged
count landed: events of requests wrk abandoned in flight land too, so the ledger reaches the acknowledged count
while a backlog is still draining (suite-medium-f: 1.4 M events landed during and after its after-run)."""

from __future__ import annotations

from benchmarks.sustained_quiet import wait_quiet


def _counter(values: list[int]):
    calls = iter(values)
    last = [values[0]]

    def count() -> int:
        last[0] = next(calls, last[0])
        return last[0]

    return count, last


def test_waits_for_the_backlog_past_the_acknowledged_count() -> None:
    # the acknowledged count (100) is reached at once, but unacknowledged events keep landing up to 160
    count, last = _counter([100, 110, 120, 130, 140, 150, 160])
    waited = wait_quiet(count, 100, timeout=5, quiet_s=0.05, poll_s=0.01)
    assert waited is not None
    assert last[0] == 160


def test_gives_up_when_the_acknowledged_count_never_lands() -> None:
    count, _ = _counter([5])
    assert wait_quiet(count, 100, timeout=0.1, quiet_s=0.01, poll_s=0.01) is None


def test_quiet_below_the_acknowledged_count_is_not_idle() -> None:
    # a stalled worker (no progress, acknowledged events missing) is not "landing idle"
    count, last = _counter([50, 50, 50, 50, 50, 50, 50, 50, 100])
    assert wait_quiet(count, 100, timeout=5, quiet_s=0.02, poll_s=0.01) is not None
    assert last[0] == 100


def test_cpu_per_request_tells_a_slower_api_from_a_busier_machine() -> None:
    from benchmarks.sustained import Sampler, _cpu_single

    smp = Sampler.__new__(Sampler)  # only phases and samples are read
    smp.phases = [
        (0.0, "single events, before"),
        (20.0, "batches"),
        (30.0, "single events, after"),
        (50.0, "x"),
    ]
    smp.samples = [
        {
            "t": float(t),
            "api_cpu_pct": 100.0 if t <= 20 else 60.0,
            "machine_busy_pct": 150.0 if t <= 20 else 200.0,
        }
        for t in range(60)
    ]
    cpu = _cpu_single(smp, {"rps": 5000.0}, {"rps": 3000.0})
    assert cpu["before"]["api_ms_per_request"] == cpu["after"]["api_ms_per_request"] == 0.2
    assert (cpu["before"]["machine_busy_pct"], cpu["after"]["machine_busy_pct"]) == (150.0, 200.0)
    assert cpu["after"]["landing_pct"] is None  # no sample carried it


def test_a_recycle_inside_the_after_run_is_reported() -> None:
    from datetime import UTC, datetime

    from benchmarks.sustained import SIZES, Sampler, _result, render

    smp = Sampler.__new__(Sampler)
    smp.phases = [
        (0.0, "single events, before"),
        (20.0, "batches"),
        (30.0, "single events, after"),
        (50.0, "x"),
    ]
    smp.restarts = []
    smp.samples = [{"t": float(t), "broker_pid": 1 if t < 35 else 2, "broker_rss": 1, "worker_rss": 1, "api_rss": 1}
                   for t in range(60)]  # fmt: skip
    run = {"ok_rps": 10.0, "rps": 10.0, "p50_ms": 1.0, "p95_ms": 1.0, "p99_ms": 1.0, "requests": 200,
           "statuses": {202: 200}, "seconds": 20.0}  # fmt: skip
    check = {"missing": 0, "duplicated": 0, "landed": 400, "acknowledged": 400}
    args = ("small", False, SIZES["small"], datetime.now(UTC), run, run, [], 1.0, check, smp, 30.0, [])
    r = _result(*args)
    assert r["broker_recycles"] == r["broker_recycles_in_after_run"] == 1
    assert "broker recycles during the after-run: 1" in render(r)
