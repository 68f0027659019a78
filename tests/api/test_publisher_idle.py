"""The ingest publisher's delivery thread (api/ingest/publisher.py) sleeps while nothing is in flight, yet a
delivery still resolves at once: poll() returns as soon as it served an event (issue 16: no busy work)."""

from __future__ import annotations

import asyncio
import time
import uuid

from api.ingest.publisher import Publisher
from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics


def test_idle_delivery_thread_wakes_rarely_and_deliveries_stay_prompt(broker: str) -> None:
    suffix = uuid.uuid4().hex[:6]
    settings = KafkaSettings(bootstrap=broker, topic_raw=f"raw-{suffix}", topic_dlq=f"dlq-{suffix}")
    ensure_topics(settings, 10)
    publisher = Publisher(settings)
    try:
        polls: list[float] = []
        real = publisher._producer

        class Counting:
            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

            def __len__(self) -> int:
                return len(real)

            def poll(self, timeout: float) -> int:
                polls.append(time.monotonic())
                return real.poll(timeout)

        publisher._producer = Counting()  # type: ignore[assignment]
        time.sleep(2.0)
        assert len(polls) <= 6, f"{len(polls)} polls in 2 s idle (every 0.05 s would be 40)"

        async def publish_one() -> float:
            start = time.monotonic()
            await publisher.publish([(b"k", b"v")])
            return time.monotonic() - start

        took = asyncio.run(publish_one())
        assert took < 0.3, f"one delivery took {took:.3f} s with the thread asleep"
    finally:
        publisher.close()
