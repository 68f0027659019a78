"""The one Kafka producer of the system. `publish()` returns only after the broker acknowledged every message.

confluent-kafka delivers reports from `poll()`; a daemon thread polls and resolves one asyncio future per
request, so the event loop never blocks on the broker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Sequence

from confluent_kafka import KafkaError, Producer

from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time, or is known to be down: answer 503, never 202."""


class ProducerQueueFull(Exception):
    """The local producer queue has no room for the whole request: answer 503 before enqueuing any of it."""


class Publisher:
    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.topic = settings.topic_raw
        self._producer = Producer(
            {
                "bootstrap.servers": settings.servers,
                "acks": "all",
                "linger.ms": settings.linger_ms,
                "message.timeout.ms": settings.delivery_timeout_ms,
                "queue.buffering.max.messages": settings.queue_max_messages,
                "queue.buffering.max.kbytes": 512 * 1024,
                "batch.num.messages": 10_000,
                "socket.keepalive.enable": True,
                "reconnect.backoff.max.ms": 1000,
                "error_cb": self._on_error,
            }
        )
        self._down_since: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)
        self._thread.start()

    # -- broker state -------------------------------------------------------------------------------------
    def _on_error(self, err: KafkaError) -> None:
        if err.code() in (KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT) and self._down_since is None:
            log.warning("broker unreachable: %s", err)
            self._down_since = time.monotonic()

    def mark_down(self) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()

    @property
    def broker_down(self) -> bool:
        return self._down_since is not None

    def _probe(self) -> None:
        """While down, check once a second; on recovery recreate topics (an in-memory broker lost them)."""
        try:
            self._producer.list_topics(timeout=1.0)
            ensure_topics(self.settings, timeout=5.0)
        except Exception as exc:
            log.debug("broker still down: %s", exc)
            return
        log.warning("broker reachable again after %.1fs", time.monotonic() - (self._down_since or 0))
        self._down_since = None

    def _poll_loop(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            self._producer.poll(0.05)
            if self._down_since is not None and time.monotonic() - last_probe > 1.0:
                last_probe = time.monotonic()
                self._probe()

    def check_ready(self, timeout: float = 2.0) -> bool:
        if self.broker_down:
            return False
        try:
            md = self._producer.list_topics(self.topic, timeout=timeout)
        except Exception:
            return False
        t = md.topics.get(self.topic)
        return t is not None and t.error is None and len(t.partitions) > 0

    # -- publishing ---------------------------------------------------------------------------------------
    async def publish(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        """Send (key, value) pairs; return once all are acknowledged, else raise BrokerUnavailable."""
        if not messages:
            return
        if self.broker_down:
            raise BrokerUnavailable("broker unreachable")
        if len(self._producer) + len(messages) > self.settings.queue_max_messages:
            raise ProducerQueueFull("producer queue full")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[KafkaError | None] = loop.create_future()
        state = {"left": len(messages), "error": None}

        def on_delivery(err: KafkaError | None, _msg: object) -> None:
            # Runs on the poll thread only, so the counter needs no lock.
            if err is not None and state["error"] is None:
                state["error"] = err
            state["left"] -= 1
            if state["left"] == 0:
                loop.call_soon_threadsafe(_resolve, future, state["error"])

        produce = self._producer.produce
        topic = self.topic
        try:
            for key, value in messages:
                produce(topic, value, key, on_delivery=on_delivery)
        except BufferError as exc:
            # Some messages may already be queued; they are delivered or time out. The client retries the
            # whole request on 503; event ids make that retry land once.
            raise ProducerQueueFull(str(exc)) from exc
        try:
            error = await asyncio.wait_for(future, self.settings.delivery_timeout_ms / 1000 + 2)
        except TimeoutError as exc:
            raise BrokerUnavailable("no broker acknowledgement in time") from exc
        if error is not None:
            raise BrokerUnavailable(str(error))

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._producer.flush(timeout)


def _resolve(future: asyncio.Future, error: KafkaError | None) -> None:
    if not future.done():
        future.set_result(error)
