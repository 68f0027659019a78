"""Contiguous offsets: the landing sink never commits past a message the fetch skipped.

Split out of streams/sink.py, which lands what this module lets through: one concern each (which offsets
must be read, and how they land)."""

from __future__ import annotations

import logging

from confluent_kafka import TopicPartition

from streams import metrics

log = logging.getLogger("pulseops.streams")

TP = tuple[str, int]


class OffsetGap(Exception):
    """A partition's messages skipped offsets: re-read instead of committing past them.

    Why: the embedded broker (Tansu, in memory) can answer a fetch at offset P with the batch after P while a
    concurrent producer's batch at P is not stored yet; the consumer moves past P and never sees it, and the
    next commit would move the group past events that were acknowledged but never landed. Reproduced:
    2 API processes + Dagster's daemon, 1.1 M events, 5 acknowledged events missing from the ledger that were
    in the topic at consecutive offsets below the group's committed offset. The raw topic is neither
    compacted nor transactional, so its offsets are contiguous and a gap always means a skipped message."""


class ContiguousOffsets:
    """Per partition, the offset the next message must have, and where a gap's re-read must start."""

    def __init__(self) -> None:
        # The last offset added per partition (cleared after a gap; without one, `_start_of` says).
        self._last: dict[TP, int] = {}
        self._rewind: dict[TP, int] = {}  # where a gap's re-read starts
        self._consumer: object | None = None
        self._quix_backpressure = None  # Quix's consumer.trigger_backpressure, wrapped by `attach`

    def attach(self, consumer: object) -> None:
        """Wrap the Quix consumer's trigger_backpressure so that a gap's re-read starts where landing stopped."""
        self._consumer = consumer
        self._quix_backpressure = getattr(consumer, "trigger_backpressure", None)  # None: a test's stand-in
        if self._quix_backpressure is not None:
            consumer.trigger_backpressure = self._backpressure  # type: ignore[attr-defined]

    def check(self, topic: str, partition: int, offset: int) -> OffsetGap | None:
        """Take the message at `offset`, or return the gap before it (the checkpoint must then be re-read)."""
        tp = (topic, partition)
        last = self._last.get(tp)
        if last is None:
            last = self._start_of(topic, partition)
        if last is not None and offset > last + 1:
            metrics.OFFSET_GAPS.inc()
            log.warning("%s[%d]: offsets %d..%d skipped by the fetch; re-reading", topic, partition, last + 1,
                        offset - 1)  # fmt: skip
            self._rewind[tp] = min(last + 1, self._rewind.get(tp, last + 1))
            self._last.clear()
            return OffsetGap(f"{topic}[{partition}] jumped from {last} to {offset}")
        self._last[tp] = offset
        return None

    def forget(self) -> None:
        """The checkpoint is dropped: Quix seeks back, and the re-read sets each partition's baseline."""
        self._last.clear()

    def _backpressure(self, offsets_to_seek: dict[TP, int], resume_after: float) -> None:
        """Quix seeks each partition back to the first offset its checkpoint processed, taking it for the
        committed one; after a skip at a partition's first message of the checkpoint that is past the hole,
        and the next commit lost the skipped message (tests/streams/test_offset_gap_rewind.py). So seek to the
        offset after the last one added before the gap, and each re-read must start where it was sought."""
        for tp, offset in self._rewind.items():
            offsets_to_seek[tp] = min(offset, offsets_to_seek.get(tp, offset))
        self._rewind.clear()
        self._last.update({tp: offset - 1 for tp, offset in offsets_to_seek.items()})
        self._quix_backpressure(offsets_to_seek=offsets_to_seek, resume_after=resume_after)  # type: ignore[misc]

    def _start_of(self, topic: str, partition: int) -> int | None:
        """The offset before the first one a partition without a baseline must hand over (committed, or the
        log's start): a fresh worker on a recycled broker whose first fetch skips has a gap too. None: unknown."""
        tp = TopicPartition(topic, partition)
        try:  # no Quix consumer (a test's stand-in) or no answer: the first message is the baseline, as before
            committed = self._consumer.committed([tp], timeout=5)[0].offset  # type: ignore[union-attr]
            low = self._consumer.get_watermark_offsets(tp, timeout=5, cached=False)[0]  # type: ignore[union-attr]
        except Exception:
            return None
        return max(committed, low) - 1 if low >= 0 else None
