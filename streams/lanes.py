"""The landing work of one Quix checkpoint, cut into lanes (streams/sink.py lands them).

Why lanes: a hot project's messages go to partitions reserved for it (kafka.hot_partitions, api/ingest/hot.py),
and with one chunk per checkpoint a quiet project's rows shared a chunk, a transaction or at least the early
landing's wait for the previous chunk with thousands of the hot project's rows (issue 17). A lane's chunks
hold only its own partitions' messages and its early landing waits only on its own chunks.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from concurrent.futures import Future

from confluent_kafka import TopicPartition

from streams.decode import Window
from warehouse.landing import DeadLetter, LandingRow


class Lane:
    """The open chunk of one lane and the chunks of it still landing.

    Two lanes per checkpoint: messages of the partitions reserved for hot projects (kafka.hot_partitions,
    api/ingest/hot.py) and those of every other partition. A lane's chunks hold only its own messages and its
    early landing waits only on its own chunks, so a quiet project's rows are never in, or queued behind, a hot
    project's transaction (issue 17)."""

    __slots__ = (
        "adds",
        "dead",
        "events",
        "inflight",
        "limit",
        "live",
        "name",
        "opened",
        "per_project",
        "rows",
    )

    def __init__(self, name: str, limit: int) -> None:
        self.name = name
        self.limit = limit  # chunks of this lane landing at once
        self.rows: dict[tuple[int, int], LandingRow] = {}
        self.per_project: dict[int, int] = {}  # project (UUID.int) -> events decoded into `rows`
        self.dead: list[DeadLetter] = []
        self.events = 0
        self.inflight: deque[Future] = deque()
        self.adds: list[tuple[float, float]] = []  # (added, Kafka CreateTime), only while tracing (trace.py)
        self.opened = 0.0  # monotonic time the chunk got its first event (0: empty)
        self.live = False  # the lane's last message was live traffic (EARLY_AFTER_S, LIVE_S)


class Checkpoint:
    """The landing work of one Quix checkpoint: per lane, the chunk being decoded and those being landed."""

    __slots__ = ("error", "hot", "normal", "window")

    def __init__(self, landers: int, hot_landers: int) -> None:
        self.normal = Lane("normal", landers)
        self.hot = Lane("hot", hot_landers)
        self.error: BaseException | None = None
        self.window: Window | None = None

    def lanes(self) -> tuple[Lane, Lane]:
        return self.normal, self.hot


class HotPause:
    """Pauses a hot partition's consumption instead of letting the consumer's thread wait for the hot lane.

    While live traffic comes through the other partitions, waiting in `add()` for a hot chunk to commit (or
    fetching further hot messages ahead of the quiet ones in the consumer's queue) holds every quiet message
    back with it. Pausing leaves the hot backlog in the broker: librdkafka drops what it prefetched of the
    partition and, on resume, fetches again from the message after the last one handed to the worker, so
    nothing is skipped or read twice. Resumed as soon as the hot chunk in flight committed (or failed), from
    that landing thread: librdkafka's pause/resume are thread-safe."""

    def __init__(self, consumer: object) -> None:
        self._consumer = consumer  # Quix's consumer (pause/resume of confluent_kafka TopicPartitions)
        self._lock = threading.Lock()
        self._paused: set[tuple[str, int]] = set()
        self.pauses = 0

    def pause_until(self, topic: str, partition: int, landing: Future) -> None:
        with self._lock:
            if (topic, partition) in self._paused:
                return
            self._paused.add((topic, partition))
            self.pauses += 1
        with contextlib.suppress(Exception):  # not assigned any more: nothing to pause
            self._consumer.pause([TopicPartition(topic, partition)])
        landing.add_done_callback(lambda _f: self.resume())

    def resume(self) -> None:
        with self._lock:
            paused, self._paused = self._paused, set()
        if paused:
            with contextlib.suppress(Exception):  # revoked meanwhile: a new assignment starts unpaused
                self._consumer.resume([TopicPartition(t, p) for t, p in paused])

    def forget(self) -> None:
        """Quix paused and will resume every partition itself (its backpressure)."""
        with self._lock:
            self._paused.clear()
