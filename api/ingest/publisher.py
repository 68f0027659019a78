"""The one Kafka producer of the system. `publish()` returns only after the broker acknowledged every message.

confluent-kafka delivers reports from `poll()`; a daemon thread polls and resolves one asyncio future per
request, so the event loop never blocks on the broker.

Record batches are what the embedded broker pays for: each fetch lists every stored batch of a partition
(pulseops/broker.py), so while the landing worker tails the topic Tansu's CPU grows with the batches it stores.
Single events hashed by key over 5 partitions with linger.ms=1 made about one batch per event: Tansu took 170 to
660 us of CPU per accepted event, more than both API processes together, and single-event ingest fell from
2,900 to 1,700 req/s within a minute (wrk, 2 API processes, landing running, fresh broker). So each process
writes the messages of one `partition_window_ms` window to one partition, rotating, and keeps one produce
request in flight: what arrives while it is out shares the next one's batch (group commit, as the spool's
fsync). Same runs: Tansu 34-48 us per event, 5,700-6,200 req/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, Producer, TopicCollection
from confluent_kafka.admin import AdminClient

from pulseops.settings import KafkaSettings
from pulseops.topics import ensure_topics

log = logging.getLogger(__name__)


class BrokerUnavailable(Exception):
    """The broker did not acknowledge in time, or is known to be down: answer 503, never 202."""


class ProducerQueueFull(Exception):
    """The local producer queue has no room for the whole request: answer 503 before enqueuing any of it."""


@dataclass(frozen=True)
class Delivery:
    topic_id: str
    offsets: dict[int, int]  # partition -> highest offset of the request
    topic: str = ""  # "" the raw topic, else the overflow topic (kafka.topic_overflow) the request went to


# While the broker is unreachable, how often to look for it again. The embedded broker's keeper restarts it in
# about a second to free its memory (a closed port, then Tansu's start: pulseops/broker.py); requests meanwhile
# wait for the next look that finds it (Publisher._await_broker). A look at a closed port gives up after
# PROBE_TIMEOUT_S, so the broker's return is seen within about PROBE_INTERVAL_S + PROBE_TIMEOUT_S.
PROBE_INTERVAL_S = 0.2
PROBE_TIMEOUT_S = 0.25
# How long one poll() of the delivery thread may block while the broker is up. poll() returns as soon as it
# served an event (a delivery report, an error), so this bounds nothing a request waits for; it only sets how
# often an idle thread wakes: 0.05 s was 20 wakeups/s per API process, most of an idle API's CPU (py-spy).
# While the broker is down the loop polls every 0.05 s to probe it every PROBE_INTERVAL_S.
POLL_IDLE_S = 0.5
# How often a request waiting out a broker outage (Publisher._await_broker) looks whether it is back.
OUTAGE_POLL_S = 0.02


class Publisher:
    """Produces with acks=all and reports where the broker put each request (for the spool's bookkeeping)."""

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings
        self.topic = settings.topic_raw
        self.overflow = settings.topic_overflow  # hot projects' topic ("": their reserved partitions instead)
        self._producer = self._new_producer("pulseops-ingest")
        # Hot projects' messages get a producer of their own, so a quiet project's request never waits for the
        # one produce request in flight to carry a hot project's batch. Beside a hot tenant at 3x its limit a
        # quiet request's broker ack waited p50 22-36 ms, p95 150 ms (2 / 4 ms alone; benchmarks/skew.py,
        # per-request timing in the API). Only with an overflow topic or partitions reserved for them.
        self._hot_producer = (
            self._new_producer("pulseops-ingest-hot")
            if self.overflow or settings.reserved_hot_partitions > 0
            else None
        )
        self._admin = AdminClient({"bootstrap.servers": settings.servers})
        self.topic_id = (
            ""  # id of the topic incarnation last seen; "" = unknown (records are then re-checked)
        )
        self.overflow_id = ""  # the same for the overflow topic
        self._down_since: float | None = None
        self._normal = self._hot = 0  # partitions for normal / hot projects; 0: librdkafka partitions
        # Window length and this process's offset: the API processes (consecutive pids under uvicorn
        # --workers) write different partitions in the same window instead of contending for one.
        self._window_ms = settings.partition_window_ms
        self._salt = os.getpid()
        self._done: list[_Pending] = []  # acknowledged requests not yet handed to their event loop
        self._hot_done: list[_Pending] = []  # the same for the hot producer (each list has one poll thread)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)]
        if self._hot_producer is not None:
            self._threads.append(threading.Thread(target=self._poll_hot, name="kafka-poll-hot", daemon=True))
        for thread in self._threads:
            thread.start()

    def _new_producer(self, client_id: str) -> Producer:
        settings = self.settings
        return Producer(
            {
                "bootstrap.servers": settings.servers,
                "client.id": client_id,
                "acks": "all",
                "linger.ms": settings.linger_ms,
                "compression.type": settings.compression,
                "message.timeout.ms": settings.delivery_timeout_ms,
                "queue.buffering.max.messages": settings.queue_max_messages,
                "queue.buffering.max.kbytes": 512 * 1024,
                "batch.num.messages": 10_000,
                # One produce request at a time: messages queued meanwhile share the next one's batch
                # (fewer, larger batches for the broker to store and list; see the module docstring).
                "max.in.flight.requests.per.connection": 1,
                "socket.keepalive.enable": True,
                "reconnect.backoff.max.ms": 1000,
                "error_cb": _weak(self._on_error),
            }
        )

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
        """While down, check every PROBE_INTERVAL_S; on recovery recreate topics (an in-memory broker lost them)."""
        try:
            self._producer.list_topics(timeout=PROBE_TIMEOUT_S)
            ensure_topics(self.settings, timeout=5.0)
            self.refresh_topic_id()
            self.refresh_partitions()
        except Exception as exc:
            log.debug("broker still down: %s", exc)
            return
        log.warning("broker reachable again after %.1fs", time.monotonic() - (self._down_since or 0))
        self._down_since = None

    def _poll_loop(self) -> None:
        last_probe = 0.0
        while not self._stop.is_set():
            self._producer.poll(POLL_IDLE_S if self._down_since is None else 0.05)
            if self._done:
                self._wake()
            if self._down_since is not None and time.monotonic() - last_probe > PROBE_INTERVAL_S:
                last_probe = time.monotonic()
                self._probe()

    def _poll_hot(self) -> None:
        """The hot producer's delivery reports (the main poll thread alone probes a broker that is down)."""
        producer, done = self._hot_producer, self._hot_done
        assert producer is not None
        while not self._stop.is_set():
            producer.poll(POLL_IDLE_S if self._down_since is None else 0.05)
            if done:
                self._wake(done)

    def _wake(self, done: list[_Pending] | None = None) -> None:
        done = self._done if done is None else done
        finished, done[:] = list(done), []
        by_loop: dict[asyncio.AbstractEventLoop, list[_Pending]] = {}
        for p in finished:
            by_loop.setdefault(p.loop, []).append(p)
        for loop, items in by_loop.items():
            # RuntimeError: that loop is closed (a test's client went away), nobody waits for these
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_all, items)

    def current_topic_id(self, timeout: float = 2.0, topic: str = "") -> str:
        """The topic's id on the broker now (the raw topic's, or `topic`'s): a broker that lost its log
        recreates the topic with a new id."""
        topic = topic or self.topic
        future = self._admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)
        return str(future[topic].result(timeout).topic_id)

    def committed_view(self, group: str, timeout: float = 2.0, topic: str = "") -> tuple[str, dict[int, int]]:
        """(topic id, partition -> committed offset of `group`) of the raw topic, or of `topic` (the overflow
        topic), read between two reads of the topic id so a broker replaced in between is noticed (its fresh
        offsets must not vouch for the old log)."""
        name = topic or self.topic
        before = self.current_topic_id(timeout, name)
        request = [ConsumerGroupTopicPartitions(group)]
        result = self._admin.list_consumer_group_offsets(request, request_timeout=timeout)[group]
        committed = {
            tp.partition: tp.offset
            for tp in result.result(timeout).topic_partitions
            if tp.topic == name and tp.error is None and tp.offset >= 0
        }
        after = self.current_topic_id(timeout, name)
        if before != after:
            raise BrokerUnavailable("topic recreated while reading offsets")
        if topic:
            self.overflow_id = after
        else:
            self.topic_id = after
        return after, committed

    def refresh_topic_id(self) -> None:
        try:
            self.topic_id = self.current_topic_id()
        except Exception as exc:
            log.debug("topic id unknown: %s", exc)
            self.topic_id = ""
        if self.overflow:
            try:
                self.overflow_id = self.current_topic_id(topic=self.overflow)
            except Exception as exc:
                log.debug("overflow topic id unknown: %s", exc)
                self.overflow_id = ""

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
    def refresh_partitions(self, timeout: float = 5.0) -> None:
        """Learn the raw topic's partition count: with `hot_partitions` reserved or `partition_window_ms` set,
        the publisher picks every message's partition itself (`_partition`)."""
        md = self._producer.list_topics(self.topic, timeout=timeout)
        t = md.topics.get(self.topic)
        n = len(t.partitions) if t is not None and t.error is None else 0
        hot = self.settings.reserved_hot_partitions
        if 0 < hot < n:
            self._normal, self._hot = n - hot, hot
        elif n > 0 and self._window_ms > 0:
            self._normal, self._hot = n, 0  # nothing reserved: hot projects share the normal ones
        else:
            self._normal, self._hot = 0, 0

    def _partition(self, key: bytes, hot: bool) -> int:
        """The partition of one message: the window's (the same for every message of this process in it), or
        crc32 of the key with `partition_window_ms` 0. Normal and hot projects keep their own partitions."""
        if self._window_ms > 0:
            w = int(time.monotonic() * 1000 / self._window_ms) + self._salt
            return self._normal + w % self._hot if hot and self._hot else w % self._normal
        if hot:
            return self._normal + zlib.crc32(key) % self._hot
        return zlib.crc32(key) % self._normal

    async def _await_broker(self) -> None:
        """Wait up to `outage_wait_ms` for an unreachable broker to return, else BrokerUnavailable (503).

        Why wait: a recycle of the embedded broker (pulseops/broker.py) closes its port for about a second. Each
        request answered 503 meanwhile costs its client a Retry-After of at least a second and a resend, and at
        6,000 single events/s one recycle made 753 of them (docs/benchmarks/2026-12-07-suite-medium.md,
        sustained). Waiting holds nothing but the request itself (its spool record is written, nothing is
        produced until the broker is back), and a real outage still answers 503 once the wait is over. Polled,
        not signalled: the poll thread notices the broker's return at most every PROBE_INTERVAL_S anyway."""
        deadline = time.monotonic() + self.settings.outage_wait_ms / 1000
        while self.broker_down:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrokerUnavailable("broker unreachable")
            await asyncio.sleep(min(OUTAGE_POLL_S, left))

    async def publish(self, messages: Sequence[tuple[bytes, bytes]], hot: bool = False) -> Delivery:
        """Send (key, value) pairs; return once all are acknowledged, else raise BrokerUnavailable. `hot`: to
        the overflow topic (kafka.topic_overflow), else to the partitions reserved for hot projects
        (api/ingest/hot.py)."""
        if not messages:
            return Delivery(self.topic_id, {})
        if self.broker_down:
            await self._await_broker()
        overflow = hot and bool(self.overflow) and self._hot_producer is not None
        producer, done = self._producer, self._done
        if overflow or (hot and self._hot and self._hot_producer is not None):
            producer, done = self._hot_producer, self._hot_done
        if len(producer) + len(messages) > self.settings.queue_max_messages:
            raise ProducerQueueFull("producer queue full")
        # Read before producing: if the broker is replaced meanwhile, the id is older than the incarnation
        # that took the messages, and the spool re-checks them in the ledger instead of trusting offsets.
        topic_id = self.overflow_id if overflow else self.topic_id
        pending = _Pending(asyncio.get_running_loop(), len(messages), done)
        produce = producer.produce
        topic = self.overflow if overflow else self.topic
        try:
            if overflow:  # its own partitions: librdkafka hashes the key over them
                for key, value in messages:
                    produce(topic, value, key, on_delivery=pending.on_delivery)
            elif self._normal:
                partition = self._partition
                for key, value in messages:
                    produce(topic, value, key, partition(key, hot), on_delivery=pending.on_delivery)
            else:  # partition count unknown or nothing reserved: librdkafka hashes the key
                for key, value in messages:
                    produce(topic, value, key, on_delivery=pending.on_delivery)
        except BufferError as exc:
            # Some messages may already be queued; they are delivered or time out. The client retries the
            # whole request on 503; event ids make that retry land once.
            raise ProducerQueueFull(str(exc)) from exc
        try:
            error = await asyncio.wait_for(pending.future, self.settings.delivery_timeout_ms / 1000 + 2)
        except TimeoutError as exc:
            raise BrokerUnavailable("no broker acknowledgement in time") from exc
        if error is not None:
            raise BrokerUnavailable(str(error))
        return Delivery(topic_id, pending.offsets, topic if overflow else "")

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)
        self._producer.flush(timeout)
        if self._hot_producer is not None:
            self._hot_producer.flush(timeout)
        for done in (self._done, self._hot_done):
            if done:
                self._wake(done)


def _weak(method: Callable[[KafkaError], None]) -> Callable[[KafkaError], None]:
    """`method` without a reference to its object. A client holding a bound method of the Publisher that
    holds the client is a cycle that only the garbage collector frees: until then librdkafka's threads live
    on, reconnecting to a broker that may be gone (seen at the end of test sessions)."""
    ref = weakref.WeakMethod(method)

    def call(err: KafkaError) -> None:
        if (bound := ref()) is not None:
            bound(err)

    return call


class _Pending:
    """One request's messages in flight. Delivery callbacks run on the poll thread only (no lock needed); a
    finished request is queued and the poll thread wakes the event loop once per poll() for all of them,
    instead of once per request (each wake-up is a syscall and a loop iteration)."""

    __slots__ = ("done", "error", "future", "left", "loop", "offsets")

    def __init__(self, loop: asyncio.AbstractEventLoop, left: int, done: list[_Pending]) -> None:
        self.loop = loop
        self.future: asyncio.Future[KafkaError | None] = loop.create_future()
        self.left = left
        self.error: KafkaError | None = None
        self.offsets: dict[int, int] = {}  # partition -> highest offset of the request
        self.done = done

    def on_delivery(self, err: KafkaError | None, msg) -> None:
        if err is not None:
            if self.error is None:
                self.error = err
        else:
            p, o = msg.partition(), msg.offset()
            if o > self.offsets.get(p, -1):
                self.offsets[p] = o
        self.left -= 1
        if self.left == 0:
            self.done.append(self)


def _resolve_all(finished: list[_Pending]) -> None:
    for p in finished:
        if not p.future.done():
            p.future.set_result(p.error)
