"""Landing lag as the broker sees it: messages of `events-raw` not yet committed by the landing group, plus
those of the overflow topic (`kafka.topic_overflow`, when set) not yet committed by the overflow group.

Plain Kafka calls (committed offsets and high watermarks), so it reads the same from Tansu, Kafka or
Redpanda. Cached for a few seconds per process: health pages poll, the broker should not feel it.
"""

from __future__ import annotations

import logging
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition

from pulseops.settings import KafkaSettings
from pulseops.topics import landed_topics

log = logging.getLogger(__name__)


class ConsumerLag:
    def __init__(self, kafka: KafkaSettings, ttl_s: float = 3.0, timeout_s: float = 2.0) -> None:
        self._kafka = kafka
        self._ttl = ttl_s
        self._timeout = timeout_s
        self._lock = threading.Lock()
        self._value: int | None = None
        self._at = 0.0
        self._consumers: dict[str, Consumer] = {}  # group -> a consumer reading that group's commits

    def __call__(self) -> int | None:
        with self._lock:
            if time.monotonic() - self._at < self._ttl:
                return self._value
            try:
                self._value = self._measure()
            except (KafkaException, RuntimeError) as exc:
                log.warning("consumer lag unavailable: %s", exc)
                self._value = None
            self._at = time.monotonic()
            return self._value

    def _measure(self) -> int:
        """The raw topic's lag against its group, plus the overflow topic's against the overflow group."""
        return sum(self._topic_lag(topic, group) for topic, group in landed_topics(self._kafka).items())

    def _topic_lag(self, topic: str, group: str) -> int:
        consumer = self._consumers.get(group)
        if consumer is None:
            consumer = self._consumers[group] = Consumer(
                {
                    "bootstrap.servers": self._kafka.servers,
                    "group.id": group,  # committed() reads this group's commits; never subscribes
                    "enable.auto.commit": False,
                }
            )
        meta = consumer.list_topics(topic, timeout=self._timeout).topics.get(topic)
        if meta is None or meta.error is not None:
            raise RuntimeError(f"topic {topic} not found")
        parts = [TopicPartition(topic, p) for p in meta.partitions]
        committed = consumer.committed(parts, timeout=self._timeout)
        lag = 0
        for tp in committed:
            _low, high = consumer.get_watermark_offsets(tp, timeout=self._timeout, cached=False)
            lag += max(0, high - max(tp.offset, 0)) if tp.offset >= 0 else high - _low
        return lag

    def close(self) -> None:
        with self._lock:
            for consumer in self._consumers.values():
                consumer.close()
            self._consumers.clear()
