"""How soon the landing worker's consumer gets a message the broker already holds (streams/app.py).

Why: the embedded Tansu holds a fetch for its wait even when records are there at once (its fetch loop
sleeps after each pass), so under live traffic the worker receives a batch of messages about every half
fetch wait, and (until the sink's `tick` on empty polls, streams/sink.py) an early chunk was handed over only
when a message arrived. benchmarks/freshness.py at medium with streams/trace.py, fetch wait 200 ms: a batch
every ~105 ms, an early chunk handed at age ~100 ms (EARLY_AFTER_S is 50 ms): 202 -> added p50 72 ms plus
added -> handed to a lander p50 100 ms, of a 202 -> visible p50 ~256-409 ms.
"""

from __future__ import annotations

import threading
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from pulseops.settings import Settings
from streams.app import build_app
from tests.fixtures.system import make_settings

# Messages produced every PERIOD_S for SECONDS, live traffic of one partition as a hot project's.
PERIOD_S, SECONDS = 0.005, 3.0
# The wait the shipped one is compared with (the setting before 71946f7), and the ratio of median lags the
# shipped wait must stay under: about half a wait each, so ~0.5 at 100 ms and ~1.0 if it went back to 200.
# The median, not p95: on a slow, shared machine the tail is scheduling (CI of 2b5fe79: p50 32 vs 57 ms,
# p95 99 vs 105 ms), while the median still moves with the wait.
SLOW_WAIT_MS, SHIPPED_VS_200 = 200, 0.75


def _delivery_lags(bootstrap: str, consumer_config: dict) -> list[float]:
    """Seconds from produce to the consumer's poll returning it, for each message after the first second."""
    topic = f"cadence-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(10)
    consumer = Consumer(
        {
            **consumer_config,
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    lags: list[float] = []
    sent = 0
    stop = threading.Event()

    def consume() -> None:
        while not stop.is_set():
            msg = consumer.poll(0.05)
            if msg is not None and msg.error() is None:
                at = float(msg.value())
                if at > start + 1.0:  # past the group join and the first fetches
                    lags.append(time.time() - at)

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1})
    start = time.time()
    reader = threading.Thread(target=consume)
    reader.start()
    try:
        while time.time() - start < SECONDS:
            producer.produce(topic, str(time.time()).encode())
            producer.poll(0)
            sent += 1
            time.sleep(PERIOD_S)
        producer.flush(5)
        time.sleep(0.5)
    finally:
        stop.set()
        reader.join()
        consumer.close()
    assert sent > 100 and len(lags) > sent / 2, (sent, len(lags))
    return sorted(lags)


def test_the_workers_fetch_wait_bounds_how_long_a_live_message_waits_in_the_broker(
    database_url, broker, redis_url
) -> None:
    """The worker's own consumer settings (build_app): under continuous production a message reaches the
    consumer within about half a fetch wait, so the shipped wait must leave room in the 1 s freshness budget.

    Judged against the same measurement with a 200 ms wait (the setting before 71946f7), alternating in this
    test (shipped, 200, 200, shipped: a drift of the machine's load hits both alike), not against a fixed bound
    in ms that a slow, shared machine misses: the shipped median must stay below SHIPPED_VS_200 of the 200 ms
    one.
    Measured before, alone: 200 ms gave a lag p50 54 ms, p95 100 ms; 100 ms about half that."""
    settings = make_settings(database_url, broker, redis_url)
    app = build_app(settings)
    config = {
        k: v
        for k, v in app._config.consumer_extra_config.items()
        if k not in ("stats_cb", "statistics.interval.ms")
    }
    assert config["fetch.wait.max.ms"] == Settings().streams.fetch_wait_ms
    slow = {**config, "fetch.wait.max.ms": SLOW_WAIT_MS}
    shipped, old = [], []
    for runs, cfg in ((shipped, config), (old, slow), (old, slow), (shipped, config)):
        runs += _delivery_lags(broker, cfg)
    (p50, p95), (old_p50, old_p95) = _percentiles(shipped), _percentiles(old)
    figures = (
        f"delivery lag at fetch.wait.max.ms {config['fetch.wait.max.ms']}: p50 {p50 * 1000:.0f} ms, p95 "
        f"{p95 * 1000:.0f} ms; at {SLOW_WAIT_MS}: p50 {old_p50 * 1000:.0f} ms, p95 {old_p95 * 1000:.0f} ms"
    )
    assert p50 < SHIPPED_VS_200 * old_p50, figures


def _percentiles(lags: list[float]) -> tuple[float, float]:
    lags = sorted(lags)
    return lags[len(lags) // 2], lags[int(len(lags) * 0.95)]
