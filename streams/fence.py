"""The landing worker's fence against a replaced broker: never commit offsets read on another broker's log.

Why: the embedded broker (Tansu) keeps its log in memory. When it restarts (a crash, or the keeper in
pulseops/broker.py recycling it to free memory) it comes back with empty partitions, a new topic id and no
committed offsets. A consumer that survives the restart keeps its fetch positions from the old log, and
Tansu, unlike Kafka, never answers OFFSET_OUT_OF_RANGE: the worker waits until the new partitions grow past
its old positions, lands from there and commits, so the records below were skipped and the spool then takes
those commits as proof of landing. Measured before this fence: `python -m benchmarks.sustained --size small
--recycle` lost acknowledged events (see below).

So before every commit the sink compares the raw topic's id with the one it started on. On a change the
worker replaces itself (`exec`) without letting Quix run its close path: that path commits the checkpoint
once more, at the old positions, on the new broker. The fresh process joins the group on the new broker, finds
no committed offsets and reads from the start (`auto_offset_reset="earliest"`, streams/app.py); what the old
log held unlanded the ingest spool publishes again (api/ingest/reconcile.py). Against Kafka or Redpanda a
topic id changes only when someone deletes and recreates the topic, where the same restart is right too.

Evidence, honestly: recycles lost events before (`python -m benchmarks.sustained --size small --recycle`:
9,239 of 253,024 acknowledged, measured before the offset-gap check in streams/sink.py, which explains at
least part of it). On 2026-12-06, with that check, two such runs without this fence lost none either: at most of the
recycles librdkafka crashed the worker (SIGSEGV), and its restart did what the fence does. The fence
closes the path where the worker survives; tests/faults/test_drills.py restarts the broker under a running
worker and checks that the worker restarted itself and lost nothing.

Left open: a restart in the milliseconds between this check and Quix's commit request. A real Kafka
coordinator refuses that commit (the member's generation is unknown to a fresh coordinator)."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from confluent_kafka import TopicCollection
from confluent_kafka.admin import AdminClient

log = logging.getLogger(__name__)


class TopicFence:
    """Remembers the raw topic's id at start and tells whether the broker still holds that same topic."""

    def __init__(self, servers: str, topic: str, timeout: float = 2.0) -> None:
        self.topic = topic
        self.timeout = timeout
        self._admin = AdminClient({"bootstrap.servers": servers})
        self.started_on: str | None = None

    def current(self) -> str:
        """The topic's id on the broker now (raises when the broker does not answer in time)."""
        future = self._admin.describe_topics(TopicCollection([self.topic]), request_timeout=self.timeout)
        return str(future[self.topic].result(self.timeout).topic_id)

    def arm(self) -> None:
        """Record the id the worker starts on (best effort: an unreachable broker is read at the first check)."""
        try:
            self.started_on = self.current()
        except Exception as exc:
            log.warning("raw topic id unknown at start (%s); read at the first commit", exc)

    def replaced(self) -> bool:
        """True when the topic now has another id than at start. Raises when the broker does not answer:
        the caller must not commit then either."""
        now = self.current()
        if self.started_on is None:
            self.started_on = now
            return False
        return now != self.started_on


def restart_worker() -> None:
    """Replace this process by a fresh landing worker with the same arguments (same pid for supervisord)."""
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    os.execv(sys.executable, [sys.executable, "-m", "streams", *sys.argv[1:]])  # noqa: S606 (our own argv)


OnReplaced = Callable[[], None]
