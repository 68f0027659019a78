"""PostgresLandingSink: a Quix Streams BatchingSink that lands events with binary COPY as they arrive.

Quix commits Kafka offsets only after `flush()` returned, and `flush()` returns only after every chunk of
the checkpoint committed in PostgreSQL: offsets move only after the database commits. A failed landing
raises SinkBackpressureError: Quix drops the checkpoint, pauses, seeks back to the committed offsets and
re-reads them; the (project, event_id) ledger makes the replay land once.

How the work is cut, for throughput (measured by draining 400k packed events with one worker, variants
alternating in one run; figures are rows/s on the shared 2-core machine, noisy by +-10 %):
- Messages are decoded in `add()`, as Quix hands them over: a packed (format 2) message is one msgspec call
  for its ~100 events (streams/decode.py). Once `pipeline_rows` events are decoded they go to a landing
  thread as one transaction (ledger COPY + events COPY, warehouse/landing.py), which mostly waits on PostgreSQL, while the
  main thread goes on consuming and decoding; `flush()` lands the rest and waits. At the default 0.25 s
  checkpoints a checkpoint holds under 20k events, so this is mostly one transaction per checkpoint, landed
  in `flush()`: decoding at flush time instead measured the same (42-46k vs 43-58k). It stays because it
  keeps no SinkItems (one row tuple per event, deduplicated by integer keys that hash in C) and overlaps
  the landing whenever a checkpoint holds more than one chunk. Live traffic does not wait for the
  checkpoint: a chunk of recent messages lands once it is EARLY_AFTER_S old and the one before it committed
  (freshness; a backlog still fills chunks).
- Chunk size: 5k-event transactions (more overlap) landed 45k, 10k 47-48k, 20k 49-56k: a transaction's fixed
  cost (round trips, commit flush, landed_days upsert) outweighs the overlap, so PIPELINE_ROWS = 20k.
- Up to LANDERS = 2 chunks are in flight, each on its own connection and thread (warehouse/landing.py makes
  two transactions landing the same event safe): the chunk a flush() lands no longer waits behind the one
  still committing, and PostgreSQL works on two backends while the main thread decodes. A slow database still
  blocks `add()` once both are busy, which pauses consumption. Medium catch-up (1M events), one worker, 2
  landers: 56k rows/s = 0.38x the COPY measured in the same run, 63k = 0.43x with 8 MiB fetches
  (streams/app.py); 1 vs 2 landers at small size (100k, 2 s drains, too short to call): 48k vs 54k rows/s.
Where the time goes now (py-spy --idle, that 63k run): the main thread waits on the landing threads 54 % of
its time, decodes 23 %, polls the broker ~10 %; the landing threads mostly wait on PostgreSQL. Per landed
row: PostgreSQL ~8.4 us of CPU (plain COPY 6.4 us), the worker ~9 us (~1 core at 100k rows/s). The machine
was ~75 % busy: two cores hold PostgreSQL, the worker and the broker, so two workers add 1.4x, not 2x.
Before the landing used two COPYs (temp table + INSERT ... SELECT): the main thread waited on the landing
thread ~65 % of the time and on the broker ~20 %; PostgreSQL spent ~12 us of CPU per landed row.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import psycopg
from confluent_kafka import Producer
from quixstreams.models import HeadersTuples
from quixstreams.sinks import BatchingSink, SinkBackpressureError, SinkBatch

from pulseops.settings import Settings
from streams import metrics, trace
from streams.decode import Window, decode_message
from streams.fence import OnReplaced, TopicFence, restart_worker
from streams.lanes import Checkpoint, HotPause, Lane
from streams.offsets import ContiguousOffsets, OffsetGap
from warehouse.db import connect
from warehouse.landing import DeadLetter, LandingRow, PartitionCache, land_batch
from warehouse.partitions import ensure_window

log = logging.getLogger(__name__)

RETRYABLE = (psycopg.OperationalError, psycopg.errors.DeadlockDetected, psycopg.errors.SerializationFailure)

# Events per landing transaction while a checkpoint is open (measured above); batch_max_rows still caps it.
PIPELINE_ROWS = 20_000
# Landing transactions in flight per worker, each on its own connection (measured above).
LANDERS = 2
# Live traffic (messages produced under LIVE_S ago) is landed once its chunk is EARLY_AFTER_S old and the
# previous chunk committed, not only when the checkpoint ends: at 20,000 events/s an event otherwise waited a
# p50 213 ms for its 0.25 s checkpoint to end, then for a transaction of ~8k rows (108 ms); benchmarks/freshness.py
# with streams/trace.py. One early chunk at a time: under the load a transaction is small, its fixed cost
# is paid a few times a second more, and a backlog still lands in full chunks on both landers.
EARLY_AFTER_S = 0.05
LIVE_S = 2.0
# A project with more events than this in one chunk is busy (a hot tenant): the chunk's other projects land
# first, in their own small transaction on the other landing connection, so a quiet tenant's rows commit
# without waiting for the COPY of a hot tenant's thousands (issue 17, item 4; tests/streams/test_sink.py).
BUSY_PROJECT_ROWS = 1_000
# Chunks of the hot lane (the partitions reserved for hot projects) landing at once. Landing threads and
# connections are LANDERS + HOT_LANDERS, so a hot chunk never takes the lander a quiet chunk needs.
HOT_LANDERS = 1
# Chunks of the hot lane landing at once while no live traffic came through the other partitions for LIVE_S:
# no quiet chunk then needs a free lander, and with one hot chunk at a time a backlog on the hot partitions
# landed one transaction after the other. In the medium ingest suite every tenant is hot
# (> ingest.hot_project_events_per_s), so the drain after the API stops is nearly all hot lane: py-spy of
# the worker at 691705e, its main thread waited on a landing future 69 % of the time and the three landing
# threads were busy ~1.05 threads together; PostgreSQL had 1.14 active landing backends on average, 1.36
# with this (pg_stat_activity samples). Live quiet traffic keeps the hot lane at HOT_LANDERS.
HOT_BACKLOG_LANDERS = 2
# While live traffic comes through the other partitions, a hot chunk lands at this many events and the hot
# partition is paused (streams/lanes.py HotPause) rather than the consumer waiting for the hot lane: in the
# medium skew run at e64a3ee the worker fell ~12 s behind the hot tenant, its chunks grew to 20k rows and
# 0.5-1.7 s transactions, and quiet messages waited behind them in add(), flush() and the fetch queue.
HOT_LIVE_ROWS = 4_000


class _DlqUnavailable(Exception):
    pass


class PostgresLandingSink(BatchingSink):
    def __init__(self, settings: Settings, on_broker_replaced: OnReplaced = restart_worker) -> None:
        """`on_broker_replaced` runs when the raw topic's id changed under the worker (streams/fence.py); the
        default replaces the process, tests pass their own."""
        super().__init__()
        self.settings = settings
        self._fence = TopicFence(settings.kafka.servers, settings.kafka.topic_raw)
        self._on_broker_replaced = on_broker_replaced
        self.pipeline_rows = max(1, min(settings.streams.batch_max_rows, PIPELINE_ROWS))
        self.landers = LANDERS
        threads = self.landers + HOT_LANDERS
        self._conns: list[psycopg.Connection | None] = [None] * threads
        self._partitions = [PartitionCache() for _ in range(threads)]
        self._slots: queue.SimpleQueue[int] = queue.SimpleQueue()
        for slot in range(threads):
            self._slots.put(slot)
        self._dlq: Producer | None = None
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="landing")
        self._failures = 0
        self._open = Checkpoint(self.landers, HOT_LANDERS)
        # Partitions from this one on are reserved for hot projects (the publisher's rule, api/ingest/publisher.py);
        # learned from the broker in setup(), None: no hot lane.
        self._first_hot: int | None = None
        self._hot_pause: HotPause | None = None  # set by attach_consumer() (streams/app.py)
        self._quiet_live_until = 0.0  # monotonic: live traffic came through the normal lane until then
        self._offsets = ContiguousOffsets()  # never commits past a message the fetch skipped
        self._added = False  # a message came since the last tick(): its add() already routed the lanes

    def setup(self) -> None:
        self._dlq = Producer(
            {
                "bootstrap.servers": self.settings.kafka.servers,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": 10_000,
            }
        )
        for slot in range(len(self._conns)):
            self._connection(slot)
        self._first_hot = self._hot_partitions_from()
        self._fence.arm()

    def _hot_partitions_from(self) -> int | None:
        """The first partition reserved for hot projects: ingest reserves the last `kafka.hot_partitions` of the
        raw topic's partitions (api/ingest/publisher.py), counted on the broker as ingest counts them."""
        k = self.settings.kafka
        n = k.partitions
        try:
            assert self._dlq is not None
            topic = self._dlq.list_topics(k.topic_raw, timeout=5).topics.get(k.topic_raw)
            if topic is not None and topic.error is None and topic.partitions:
                n = len(topic.partitions)
        except Exception as exc:  # the broker answers later; the configured count is ingest's fallback too
            log.warning("raw topic's partition count unknown (%s); assuming %d", exc, n)
        hot = k.reserved_hot_partitions
        return n - hot if 0 < hot < n else None

    def attach_consumer(self, consumer: object) -> None:
        """The consumer feeding this sink, so that the hot lane can pause its partitions (HOT_LIVE_ROWS) and a
        gap's re-read starts where landing stopped (streams/offsets.py)."""
        self._hot_pause = HotPause(consumer)
        self._offsets.attach(consumer)

    def _connection(self, slot: int = 0) -> psycopg.Connection:
        conn = self._conns[slot]
        if conn is None or conn.closed:
            conn = self._conns[slot] = connect(self.settings.db.url, connect_timeout=5, autocommit=True)
            self._partitions[slot].reset()
            # Partitions ahead are created on every (re)connect; missing days are still created on demand.
            ensure_window(
                conn,
                datetime.now(UTC).date(),
                back_days=1,
                ahead_days=self.settings.warehouse.partitions_ahead_days,
            )
        return conn

    # -- Quix entry points --------------------------------------------------------------------------------
    def add(
        self,
        value: object,
        key: object,
        timestamp: int,
        headers: HeadersTuples,
        topic: str,
        partition: int,
        offset: int,
    ) -> None:
        """Decode one message into the open checkpoint; hand a full chunk to the landing thread.

        Never raises: a failure is kept and raised by `flush()` as backpressure, which re-reads the
        checkpoint; until then the rest of the checkpoint is not decoded (it will be read again)."""
        cp = self._open
        if cp.error is not None:
            return
        lane = cp.hot if self._first_hot is not None and partition >= self._first_hot else cp.normal
        tp = (topic, partition)
        gap = self._offsets.check(topic, partition, offset)
        if gap is not None:
            cp.error = gap
            return
        if trace.PATH is not None:
            lane.adds.append((trace.now(), timestamp / 1000))
        if cp.window is None:
            cp.window = Window(self.settings.warehouse.raw_retention_days, self.settings.ingest.max_future_s)
        out = decode_message(value if isinstance(value, bytes) or value is None else b"", cp.window)
        metrics.MESSAGES.inc()
        rows = lane.rows
        for row in out.rows:
            rows.setdefault((row[0].int, row[2].int), row)  # int keys hash in C, UUIDs in Python
        if out.rows:  # counted per message (one request, one project): a split hint, not a row count
            project = out.rows[0][0].int
            lane.per_project[project] = lane.per_project.get(project, 0) + len(out.rows)
        for index, payload, rejected in out.rejected:
            detail = rejected.detail[:2000]
            if index is not None:
                detail = f"event {index} of a packed message: {detail}"[:2000]
            lane.dead.append(
                DeadLetter(
                    rejected.reason.value, detail, payload, topic, partition, offset, source_index=index
                )
            )
        lane.events += out.events
        if lane.events and not lane.opened:
            lane.opened = time.monotonic()
        self._added = True
        self._route(cp, lane, timestamp, tp)

    def tick(self) -> None:
        """Hand over an early chunk that became ready with no message after it (EARLY_AFTER_S passed, or the
        lane's previous chunk committed): otherwise it waited for the next message or the checkpoint's end.
        Quix runs it after every poll of its loop (streams/app.py), so it acts on the polls that came back
        empty; the consumer's poll timeout paces it (no loop of its own)."""
        if self._added:
            self._added = False
            return
        cp = self._open
        if cp.error is not None:
            return
        for lane in cp.lanes():
            if self._land_early(lane, None):
                self._submit(cp, lane)

    def _route(self, cp: Checkpoint, lane: Lane, timestamp: int, tp: tuple[str, int]) -> None:
        """Hand the lane's chunk over when full or ready early, the other lane's when ready by its age; a hot
        chunk beside live traffic is full at HOT_LIVE_ROWS and pauses its partition instead of waiting."""
        now = time.monotonic()
        if lane is cp.normal and time.time() - timestamp / 1000 <= LIVE_S:
            self._quiet_live_until = now + LIVE_S
        if lane is cp.hot and self._hot_pause is not None and now < self._quiet_live_until:
            if lane.events >= HOT_LIVE_ROWS:
                if lane.inflight and not lane.inflight[-1].done():
                    self._hot_pause.pause_until(tp[0], tp[1], lane.inflight[-1])
                else:
                    self._submit(cp, lane)
            elif self._land_early(lane, timestamp):
                self._submit(cp, lane)
        elif lane.events >= self.pipeline_rows or self._land_early(lane, timestamp):
            self._submit(cp, lane)
        other = cp.hot if lane is cp.normal else cp.normal
        if self._land_early(other, None):  # its last message came before this one: ready by its age alone
            self._submit(cp, other)

    def _land_early(self, lane: Lane, timestamp: int | None) -> bool:
        """Whether to land the lane's open chunk now, before the checkpoint ends: it is EARLY_AFTER_S old, no
        chunk of the lane is still landing, and the message is live traffic (produced under LIVE_S ago; None:
        the lane's chunk was live when its messages came, checked then)."""
        if timestamp is not None:  # recorded on every message, so that tick() knows it with none after it
            lane.live = time.time() - timestamp / 1000 <= LIVE_S
        if not lane.live:  # a backlog: full chunks, both landers (catch-up throughput)
            return False
        if not lane.events or time.monotonic() - lane.opened < EARLY_AFTER_S:
            return False
        return all(f.done() for f in lane.inflight)

    def write(self, batch: SinkBatch) -> None:
        """BatchingSink's per-partition entry point (unused by `flush()` here): lands one batch on its own."""
        cp, self._open = self._open, Checkpoint(self.landers, HOT_LANDERS)
        try:
            for item in batch:
                self.add(item.value, item.key, item.timestamp, item.headers, batch.topic, batch.partition,
                         item.offset)  # fmt: skip
            self._finish(self._open)
        finally:
            self._open = cp

    def flush(self) -> None:
        """Land what the checkpoint still holds and wait for every chunk of it to commit.

        The checkpoint is swapped out first: on a rebalance Quix may run this in another thread and, if it
        takes too long, go on consuming into the next checkpoint meanwhile."""
        cp, self._open = self._open, Checkpoint(self.landers, HOT_LANDERS)
        self._batches.clear()
        flushed = trace.now() if trace.PATH is not None else 0.0
        self._finish(cp)
        self._check_broker()
        if flushed:
            trace.write({"flush": flushed, "done": trace.now()})

    def _check_broker(self) -> None:
        """Let Quix commit only offsets of the log the worker started on (streams/fence.py)."""
        try:
            replaced = self._fence.replaced()
        except Exception as exc:
            delay = self._backoff()
            log.warning("broker did not name the raw topic's id (%s); re-reading in %.1fs", exc, delay)
            raise SinkBackpressureError(retry_after=delay) from exc
        if replaced:
            metrics.BROKER_REPLACED.inc()
            log.error(
                "the broker's raw topic was replaced (started on id %s): restarting the worker so that it "
                "reads the new log from its start instead of committing old positions on it",
                self._fence.started_on,
            )
            self._on_broker_replaced()
            raise SinkBackpressureError(retry_after=1.0)

    def on_paused(self) -> None:
        """Backpressure elsewhere: drop what was decoded; Quix re-reads it from the committed offsets."""
        self._open = Checkpoint(self.landers, HOT_LANDERS)
        self._offsets.forget()
        if self._hot_pause is not None:
            self._hot_pause.forget()
        super().on_paused()

    # -- landing --------------------------------------------------------------------------------------------
    def _submit(self, cp: Checkpoint, lane: Lane) -> None:
        """Start landing the lane's decoded chunk: the rows of quiet projects first, on their own, when a busy
        one shares the chunk (BUSY_PROJECT_ROWS); each part once one of the lane's landers is free."""
        rows, dead, n = list(lane.rows.values()), lane.dead, lane.events
        busy = {p for p, k in lane.per_project.items() if k > BUSY_PROJECT_ROWS}
        split = busy and len(busy) < len(lane.per_project)
        lane.rows, lane.dead, lane.events, lane.per_project, lane.opened = {}, [], 0, {}, 0.0
        adds, lane.adds = lane.adds, []
        if split:
            quiet = [r for r in rows if r[0].int not in busy]
            rows = [r for r in rows if r[0].int in busy]
            metrics.QUIET_FIRST.inc()
            self._start(cp, lane, quiet, [], len(quiet), adds)
            n -= len(quiet)  # in-chunk repeats stay counted with the busy part (duplicates metric)
        self._start(cp, lane, rows, dead, n, adds)

    def _start(
        self,
        cp: Checkpoint,
        lane: Lane,
        rows: list[LandingRow],
        dead: list[DeadLetter],
        n: int,
        adds: list | None = None,
    ) -> None:
        """Hand one transaction's rows to a landing thread once one of the lane's is free (`lane.limit`)."""
        if cp.error is not None:
            return
        limit = lane.limit
        if lane is cp.hot and time.monotonic() >= self._quiet_live_until:
            limit = max(limit, HOT_BACKLOG_LANDERS)
        try:
            while len(lane.inflight) >= limit:
                lane.inflight.popleft().result()
            if dead:
                self._publish_dead_letters(dead)
        except Exception as exc:  # raised again by flush(), as backpressure when retryable
            cp.error = exc
            return
        handed = trace.now() if adds else 0.0
        lane.inflight.append(self._pool.submit(self._land_chunk, rows, dead, n, adds, handed, lane.name))

    def _finish(self, cp: Checkpoint) -> None:
        # The hot lane's last chunk lands beside the one still in flight (a third landing thread is free: the
        # normal lane's chunks are small or done), so the checkpoint waits for about one hot transaction, not
        # two in a row: quiet messages are not polled while flush() waits.
        cp.hot.limit += 1
        for lane in cp.lanes():
            if cp.error is None and (lane.events or lane.dead):
                self._submit(cp, lane)
        for lane in cp.lanes():
            while lane.inflight:
                try:
                    lane.inflight.popleft().result()
                except Exception as exc:
                    cp.error = cp.error or exc
        if cp.error is None:
            self._failures = 0
            return
        exc = cp.error
        if isinstance(exc, RETRYABLE):
            self._drop_connection()
            metrics.DB_RETRIES.inc()
            delay = self._backoff()
            log.warning("landing failed (%s); re-reading from committed offsets in %.1fs", exc, delay)
            raise SinkBackpressureError(retry_after=delay) from exc
        if isinstance(exc, OffsetGap):
            self._offsets.forget()
            raise SinkBackpressureError(retry_after=0.2) from exc
        if isinstance(exc, _DlqUnavailable):
            delay = self._backoff()
            log.warning("dead-letter topic unavailable (%s); retrying in %.1fs", exc, delay)
            raise SinkBackpressureError(retry_after=delay) from exc
        # Any other failure is backpressure too, never an exception out of flush(): an exception leaves
        # Quix's checkpoint with its stored offsets, and the revoke while the consumer closes commits that
        # same checkpoint again, after flush() already swapped its rows out, so the offsets would move past
        # events that never landed. Backpressure seeks back and re-reads; a failure that persists shows as
        # a worker that keeps retrying (logged, pulseops_landing_db_retries_total), not as lost events.
        self._drop_connection()
        metrics.DB_RETRIES.inc()
        delay = self._backoff()
        log.error("landing failed (%r); re-reading from committed offsets in %.1fs", exc, delay)
        raise SinkBackpressureError(retry_after=delay) from exc

    def _backoff(self) -> float:
        """Exponential backoff from db_retry_after_s up to 30 s while PostgreSQL stays down."""
        self._failures += 1
        return min(30.0, self.settings.streams.db_retry_after_s * 2 ** (self._failures - 1))

    def _land_chunk(
        self,
        rows: list[LandingRow],
        dead: list[DeadLetter],
        n: int,
        adds: list | None = None,
        handed: float = 0,
        lane: str = "normal",
    ) -> None:
        started = time.perf_counter()
        slot = self._slots.get()  # never waits: as many slots as landing threads
        try:
            began = trace.now()
            result = land_batch(self._connection(slot), rows, dead, self._partitions[slot])
            if adds:
                trace.write({"adds": adds, "handed": handed, "began": began, "committed": trace.now(),
                             "rows": len(rows), "lane": lane})  # fmt: skip
        finally:
            self._slots.put(slot)
        metrics.LANDED.inc(result.landed)
        if result.links or result.person_properties:
            metrics.IDENTITY.labels(kind="links").inc(result.links)
            metrics.IDENTITY.labels(kind="properties").inc(result.person_properties)
        metrics.DUPLICATES.inc(n - len(dead) - result.landed)  # in-chunk repeats + already in the ledger
        for d in dead:
            metrics.DEAD_LETTERS.labels(reason=d.reason).inc()
        metrics.BATCH_SIZE.observe(n)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - started)
        if rows:
            newest = max(r[6] for r in rows)
            metrics.SECONDS_BEHIND.set((datetime.now(UTC) - newest).total_seconds())

    def _publish_dead_letters(self, dead: list[DeadLetter]) -> None:
        """The bad event's own bytes as the value, the reason in headers (Kafka Connect's DLQ convention);
        an event from a packed message also names its position in it."""
        assert self._dlq is not None
        failures: list[str] = []

        def on_delivery(err, _msg) -> None:
            if err is not None:
                failures.append(str(err))

        for d in dead:
            headers = [
                ("pulseops.dlq.reason", d.reason.encode()),
                ("pulseops.dlq.detail", d.detail.encode()),
                ("pulseops.dlq.source", f"{d.source_topic}/{d.source_partition}/{d.source_offset}".encode()),
            ]
            if d.source_index is not None:
                headers.append(("pulseops.dlq.index", str(d.source_index).encode()))
            self._dlq.produce(
                self.settings.kafka.topic_dlq, d.payload, headers=headers, on_delivery=on_delivery
            )
        remaining = self._dlq.flush(10)
        if remaining or failures:
            raise _DlqUnavailable(failures[0] if failures else f"{remaining} undelivered")

    def _drop_connection(self) -> None:
        """Close every landing connection (only while no chunk is in flight)."""
        for slot, conn in enumerate(self._conns):
            if conn is not None:
                with contextlib.suppress(Exception):  # already broken
                    conn.close()
            self._conns[slot] = None
