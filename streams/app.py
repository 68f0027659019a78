"""Wiring only: the Quix Application, its topic and the landing sink."""

from __future__ import annotations

from quixstreams import Application
from quixstreams.models import TopicConfig

from pulseops.settings import Settings
from pulseops.topics import topic_config
from streams import metrics
from streams.sink import PostgresLandingSink

# How long one consumer poll may block. Quix commits a due checkpoint (flush: the landing) only after the poll
# returns, so with its 1 s default the last events before a pause in traffic waited up to 1 s more to land:
# benchmarks/skew.py at small, quiet tenant alone, the last 4 of 80 events took 1.01-1.16 s (its p95 then
# swings between ~0.27 s and ~1 s from run to run); with 50 ms, none above 0.31 s in the run beside it.
# The price is up to 20 empty polls/s while idle.
POLL_TIMEOUT_S = 0.05


def build_app(settings: Settings) -> Application:
    k = settings.kafka
    app = Application(
        broker_address=k.servers,
        consumer_group=k.consumer_group,
        # Never skip events published before this group first joined (the earlier system lost those).
        auto_offset_reset="earliest",
        commit_interval=settings.streams.commit_interval_s,
        commit_every=settings.streams.batch_max_rows,
        consumer_extra_config={
            "session.timeout.ms": k.session_timeout_ms,
            "heartbeat.interval.ms": max(500, k.session_timeout_ms // 3),
            # librdkafka's 1 s default starves the fetcher between batches (measured: 3x throughput).
            "fetch.queue.backoff.ms": 10,
            # How long the broker may hold an empty fetch. Under load a fetch finds data at once; idle, each
            # answered fetch costs the embedded broker CPU: 200 ms instead of 50 ms takes about two thirds of
            # an idle Tansu's CPU for ~10 ms more 202 -> landed of a lone event (benchmarks/system_cpu.py
            # reports the broker's idle CPU).
            "fetch.wait.max.ms": settings.streams.fetch_wait_ms,
            # 8 MiB per partition per fetch (librdkafka: 1 MiB, ~28 packed messages of 100 events): Tansu lists
            # every stored batch per fetch, so fewer, larger fetches. Medium catch-up, one worker, separate
            # runs: 56k rows/s = 0.38x COPY with 1 MiB, 63k = 0.43x with 8 MiB (py-spy: the main thread then
            # polls the consumer ~4 % of its time, waits on the landing threads 54 %).
            "max.partition.fetch.bytes": 8 << 20,
            "statistics.interval.ms": 5000,
            "stats_cb": metrics.on_stats,
        },
        use_changelog_topics=False,
        loglevel="WARNING",
        broker_availability_timeout=24 * 3600,
        consumer_poll_timeout=min(POLL_TIMEOUT_S, settings.streams.commit_interval_s),
    )
    topic = app.topic(
        k.topic_raw,
        value_deserializer="bytes",
        key_deserializer="bytes",
        config=TopicConfig(
            num_partitions=k.partitions, replication_factor=k.replication_factor, extra_config=topic_config(k)
        ),
    )
    sink = PostgresLandingSink(settings)
    # Quix has no public handle on its consumer; the sink pauses hot partitions with it (streams/lanes.py).
    sink.attach_consumer(app._consumer)
    app.dataframe(topic).sink(sink)
    # After every poll, also an empty one: an early chunk lands without waiting for the next message
    # (streams/sink.py `tick`). Quix's registry of periodic tasks has no public handle on the Application.
    app._dataframe_registry.register_periodic_task(sink.tick)
    return app
