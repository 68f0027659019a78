"""The single-event A/B harness's own arithmetic (benchmarks/single_ab.py); its runs need wrk and a machine."""

from __future__ import annotations

import subprocess
import sys

from benchmarks import single_ab


def _run(root: str, case: str, rps: float, statuses: dict[int, int], p50: float, machine_ms: float) -> dict:
    n = sum(statuses.values())
    return {"root": root, "case": case, "round": 1, "rps": rps, "requests": n, "sent": n, "seconds": n / rps,
            "statuses": statuses, "p50_ms": p50, "p99_ms": 3 * p50, "machine_ms": machine_ms}  # fmt: skip


def test_summary_compares_accepted_single_events_with_healthz_of_the_same_root() -> None:
    runs = [
        _run("/a", "healthz", 10_000, {200: 50_000}, 5.0, 0.2),
        _run("/a", "event", 4_000, {202: 19_000, 503: 1_000}, 12.0, 0.5),
        _run("/b", "healthz", 8_000, {200: 40_000}, 6.0, 0.2),
        _run("/b", "event", 4_000, {202: 20_000}, 9.0, 0.4),
    ]
    a, b = single_ab.summary(runs)
    assert a.startswith("/a:") and "202 3,800/s" in a and "= 0.38x" in a and "p50 max 12.00 ms" in a
    assert b.startswith("/b:") and "202 4,000/s" in b and "= 0.50x" in b and "machine 0.400 ms" in b


def test_machine_busy_grows_while_the_machine_works() -> None:
    before = single_ab.machine_busy_s()
    subprocess.run([sys.executable, "-c", "sum(i * i for i in range(3_000_000))"], check=True)
    assert single_ab.machine_busy_s() - before > 0.05


def test_fdatasync_count_is_read_from_perf_stat_csv() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stderr.write('1234,,syscalls:sys_enter_fdatasync,1000,100.00,,\\n')"],
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert single_ab.fdatasyncs(proc) == 1234
    assert single_ab.fdatasyncs(None) is None
