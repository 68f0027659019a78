"""The keeper (pulseops/broker.py) on an idle broker: full passes back off while nothing is stored, and ingest
that moves the broker's resident size brings them back at once (issue 16: no busy work when idle)."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Producer

from benchmarks.harness import free_port, wait_for
from pulseops.broker import EmbeddedBroker, Keeper
from tests.pulseops.test_broker import _settings


def test_idle_keeper_backs_off_and_wakes_on_ingest() -> None:
    port = free_port()
    settings = _settings(port, rss=8 * 1024**3, records=10**9)
    settings.kafka.embedded_check_interval_s = 0.2
    keeper = Keeper(settings, EmbeddedBroker(port))
    keeper.start()
    passes: list[float] = []
    check = keeper.check

    def counted() -> str:
        passes.append(time.monotonic())
        return check()

    keeper.check = counted  # type: ignore[method-assign]
    runner = threading.Thread(target=keeper.run, daemon=True)
    try:
        runner.start()
        time.sleep(4.0)
        # every 0.2 s that would be 20 passes; doubling from 0.2 s: 0.2, 0.4, 0.8, 1.6 s apart
        assert 3 <= len(passes) <= 7, passes
        quiet = len(passes)
        p = Producer({"bootstrap.servers": keeper.broker.bootstrap, "linger.ms": 5})
        start = time.monotonic()
        for _ in range(80):  # ~8 MiB: the resident size moves past RSS_WAKE_BYTES
            p.produce(settings.kafka.topic_raw, b"x" * 100_000)
        assert p.flush(10) == 0
        # the backed-off wait alone would put the next pass ~2 s out (3.2 s after the one before)
        wait_for(lambda: any(t > start for t in passes), 1.0, "a full pass within a second of ingest")
        assert len(passes) > quiet
    finally:
        keeper.stop()
        runner.join(10)
        keeper.broker.stop()
