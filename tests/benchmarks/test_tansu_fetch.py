"""benchmarks/tansu_fetch.py: the producers offer the rate asked for, and the consumer's fetches are reported
once it tails (a probe whose consumer never fetched would read Tansu's CPU as produce alone)."""

from __future__ import annotations

import re

from benchmarks.tansu_fetch import probe


def test_the_probe_produces_at_its_rate_and_reports_the_consumer_s_fetches() -> None:
    lines = list(probe(rate=500, window_ms=20, produce_only_s=4, seconds=25, min_bytes=1))
    samples = [line for line in lines if " s  produce" in line]
    assert len(samples) == 5 and "produce only" in samples[0] and "produce + tail" in samples[-1], lines
    sent = int(re.search(r"([\d,]+) messages sent", samples[-1]).group(1).replace(",", ""))
    assert sent >= 500 * 24, lines
    fetched = [line for line in lines if "Fetch requests" in line]
    received = [int(re.search(r"; ([\d,]+) messages received", f).group(1).replace(",", "")) for f in fetched]
    assert received and received[-1] > 0, lines
