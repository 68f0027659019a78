"""The ingest producer compresses its record batches (KafkaSettings.compression, api/ingest/publisher.py): the
embedded broker's CPU and memory go with the bytes it stores and serves, and a batch's events are mostly the
same keys and values. What a consumer reads back must be the bytes that were published."""

from __future__ import annotations

import asyncio
import uuid

from confluent_kafka import Consumer

from api.ingest import publisher as publisher_module
from api.ingest.publisher import Publisher
from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics


def test_the_producer_uses_the_configured_codec(monkeypatch) -> None:
    seen: list[dict] = []

    class Fake:
        def __init__(self, config: dict) -> None:
            seen.append(config)

        def poll(self, timeout: float) -> int:
            return 0

        def flush(self, timeout: float) -> int:
            return 0

    monkeypatch.setattr(publisher_module, "Producer", Fake)
    monkeypatch.setattr(publisher_module, "AdminClient", lambda config: None)
    assert KafkaSettings().compression == "lz4"  # the shipped default
    for codec in ("lz4", "none"):
        Publisher(KafkaSettings(bootstrap="127.0.0.1:1", compression=codec)).close()
        assert seen[-1]["compression.type"] == codec


def test_compressed_batches_round_trip_through_the_broker(broker: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = KafkaSettings(
        bootstrap=broker, topic_raw=f"raw-{suffix}", topic_dlq=f"dlq-{suffix}", compression="lz4"
    )
    ensure_topics(settings, 10)
    values = [
        b"["
        + b",".join(b'{"event":"page_view","distinct_id":"u-%d","n":%d}' % (i % 7, j) for j in range(i))
        + b"]"
        for i in range(1, 60)
    ]
    publisher = Publisher(settings)
    try:

        async def run() -> None:
            await asyncio.gather(*(publisher.publish([(b"k%d" % i, v)]) for i, v in enumerate(values)))

        asyncio.run(run())
    finally:
        publisher.close()
    consumer = Consumer(
        {"bootstrap.servers": broker, "group.id": f"g-{suffix}", "auto.offset.reset": "earliest"}
    )
    try:
        consumer.subscribe([settings.topic_raw])
        got: list[bytes] = []
        for _ in range(60):
            for msg in consumer.consume(100, 1.0):
                assert msg.error() is None, msg.error()
                got.append(msg.value())
            if len(got) >= len(values):
                break
    finally:
        consumer.close()
    assert sorted(got) == sorted(values)
