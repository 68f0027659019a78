"""Prunes the ingest spool, and re-publishes what a broker lost.

Every `reconcile_interval_s`, each ingest process goes through the sealed segments it can lock: its own once
sealed, and those of writers that are gone (a killed process's flocks, its segment's and its owner lock in
`<dir>/owners`, are released by the kernel). A live peer's sealed segments are left to the peer's own
reconciler: reading each segment in both API processes cost each one a second read of every journaled byte
(5 % of an API process's py-spy samples under batch load). For each record:

- aborted (answered 503): nothing to do;
- acknowledged on the topic incarnation the broker has now: landed once the consumer group's committed offset
  passed it (the landing worker commits only after PostgreSQL did);
- anything else (the topic has a new id because the broker lost its log, the id was unknown, or the process
  died between publish and marker): ask the warehouse ledger which events neither landed nor were
  dead-lettered, publish those again, and note where they went.

A segment whose records are all settled is deleted; one that keeps failing is moved to `<dir>/stuck`.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
from psycopg_pool import ConnectionPool
from starlette.concurrency import run_in_threadpool

from api import metrics
from api.ingest.publisher import BrokerUnavailable, ProducerQueueFull, Publisher
from api.ingest.service import pack
from api.ingest.spool import (
    ACK,
    OWNERS,
    SUFFIX,
    Abort,
    Ack,
    Data,
    DataHead,
    Spool,
    append_record,
    frame,
    prune_owner_locks,
    read_records,
    segment_owner,
)
from pulseops.settings import Settings
from warehouse.events import split_message
from warehouse.landing import unlanded

log = logging.getLogger(__name__)


class _Ids(msgspec.Struct):
    project_id: uuid.UUID
    event_id: uuid.UUID
    distinct_id: str


_decode_ids = msgspec.json.Decoder(_Ids).decode


@dataclass
class _Record:
    data: Data | DataHead
    ack: Ack | None = None
    aborted: bool = False


@dataclass(frozen=True)
class _Summary:
    """A sealed segment whose records were all settled or acknowledged on the topic ids named, as last read."""

    size: int
    topic_ids: dict[str, str]  # topic ("" the raw one, else the overflow topic) -> its id when read
    highest: dict[str, dict[int, int]]  # topic -> partition -> highest acknowledged offset


# topic ("" the raw one, else the overflow topic) -> (its id now, partition -> its landing group's committed offset),
# or None: the broker did not say (that topic's acknowledged records then wait, neither trusted nor re-checked)
Views = dict[str, tuple[str, dict[int, int]] | None]


def _committed(views: Views, topic: str) -> dict[int, int]:
    view = views.get(topic)
    return view[1] if view is not None else {}


def _passed(highest: dict[int, int], committed: dict[int, int]) -> bool:
    return all(off < committed.get(p, 0) for p, off in highest.items())


@dataclass
class PassResult:
    pruned: int = 0
    pending: int = 0
    replayed_events: int = 0
    stuck: int = 0
    bytes_left: int = 0


class Reconciler:
    def __init__(self, spool: Spool, publisher: Publisher, settings: Settings, pool: ConnectionPool) -> None:
        self.spool = spool
        self.publisher = publisher
        self.settings = settings
        self.pool = pool
        self._summaries: dict[Path, _Summary] = {}

    async def run_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.spool.reconcile_interval_s)
            try:
                await self.run_once()
            except Exception as exc:
                log.warning("spool reconcile pass failed: %s", exc)

    async def run_once(self) -> PassResult:
        result = PassResult()
        self.spool.seal_idle()
        paths = sorted(self.spool.directory.glob(f"*{SUFFIX}"))
        for gone in self._summaries.keys() - set(paths):
            del self._summaries[gone]
        alive: dict[str, bool] = {}
        ours: list[Path] = []
        for path in paths:
            if self.spool.owns(path):  # counted by spool.open_bytes()
                continue
            owner = segment_owner(path)
            if owner not in alive:
                alive[owner] = self.spool.owner_alive(owner)
            if alive[owner]:  # a live writer's segments: its own reconciler's
                result.bytes_left += _size(path)
            else:
                ours.append(path)
        views: Views | None = None
        if ours:
            # The broker is asked only when a segment needs settling: idle, each pass of each API process cost
            # three admin requests to the broker every second for nothing (issue 16).
            try:
                views = await run_in_threadpool(self._views)
            except Exception as exc:
                log.debug("broker not answering, spool kept as is: %s", exc)
        for path in ours:
            if views is None:
                result.bytes_left += _size(path)
                continue
            try:
                await self._segment(path, views, result)
            except (BrokerUnavailable, ProducerQueueFull) as exc:
                log.warning("spool re-publication paused: %s", exc)
                result.bytes_left += _size(path)
                break
        left = {segment_owner(p) for p in self.spool.directory.glob(f"*{SUFFIX}")}
        prune_owner_locks(self.spool.directory / OWNERS, {*left, self.spool.owner})
        self.spool.note_disk_usage(result.bytes_left)
        metrics.SPOOL_BYTES.set(result.bytes_left + self.spool.open_bytes())
        return result

    def _views(self) -> Views:
        """The raw topic against the landing group and, when set, the overflow topic against its own group."""
        k = self.settings.kafka
        views: Views = {"": self.publisher.committed_view(k.consumer_group)}
        if k.topic_overflow:
            try:
                views[k.topic_overflow] = self.publisher.committed_view(
                    k.overflow_group, topic=k.topic_overflow
                )
            except Exception as exc:  # the raw topic's records are settled all the same
                log.debug("overflow topic's offsets unknown: %s", exc)
                views[k.topic_overflow] = None
        return views

    async def _segment(self, path: Path, views: Views, result: PassResult) -> None:
        fd = _try_lock(path)
        if fd is None:  # another process holds it: its writer, or another reconciler
            result.bytes_left += _size(path)
            return
        try:
            size = _size(path)
            known = self._summaries.get(path)
            if (
                known is not None
                and known.size == size
                and all((v := views.get(t)) is not None and v[0] == i for t, i in known.topic_ids.items())
            ):
                # Unchanged since it was read and fully acknowledged on these topics: offsets decide alone,
                # without reading (a stalled landing group must not cost a re-read of the spool per pass).
                pending = not all(_passed(h, _committed(views, t)) for t, h in known.highest.items())
            else:
                pending = await self._settle(fd, path, views, result)
            if pending is None:  # set aside
                return
            if pending:
                result.pending += 1
                result.bytes_left += _size(path)
            else:
                path.unlink()
                self._summaries.pop(path, None)
                metrics.SPOOL_PRUNED.inc()
                result.pruned += 1
        finally:
            os.close(fd)

    async def _settle(self, fd: int, path: Path, views: Views, result: PassResult) -> bool | None:
        """Read the segment, re-publish what the broker lost; pending?, or None if the segment was set aside."""
        records = await run_in_threadpool(_fold, path)
        pending = False
        uncertain: list[_Record] = []
        for rec in records.values():
            if rec.aborted:
                continue
            ack = rec.ack
            view = views.get(ack.topic) if ack is not None else None
            if ack is not None and ack.topic in views and view is None:  # that topic's broker view is unknown
                pending = True
                continue
            if ack is not None and view is not None and view[0] and ack.topic_id == view[0]:
                if not _passed(ack.offsets, view[1]):
                    pending = True
                continue
            uncertain.append(rec)
        if uncertain:  # their events are needed now: read the segment again, messages and all
            full = await run_in_threadpool(_fold, path, True)
            uncertain = [full[rec.data.seq] for rec in uncertain]
            since = _segment_time(path) - timedelta(hours=1)
            missing = await run_in_threadpool(self._unlanded, uncertain, since)
            if missing:
                replayed = await self._republish(fd, path, missing, result)
                if replayed is None:
                    return None
                pending = pending or replayed
        else:
            highest: dict[str, dict[int, int]] = {}
            for rec in records.values():
                if rec.ack is not None and not rec.aborted:
                    of_topic = highest.setdefault(rec.ack.topic, {})
                    for p, off in rec.ack.offsets.items():
                        of_topic[p] = max(off, of_topic.get(p, -1))
            seen = {t: v for t in highest if (v := views.get(t)) is not None}
            if len(seen) == len(highest):  # a topic whose view was unknown: read again next pass
                self._summaries[path] = _Summary(_size(path), {t: v[0] for t, v in seen.items()}, highest)
        return pending

    async def _republish(
        self,
        fd: int,
        path: Path,
        missing: list[tuple[_Record, list[tuple[bytes, bytes]]]],
        result: PassResult,
    ) -> bool | None:
        """Publish the unlanded records again, journaling each new ack; True, or None if the segment was set aside.

        One log line per segment, however many records: a line per record made ~600 lines per broker recycle."""
        events_total = records = 0
        try:
            for rec, messages in missing:
                replay = (rec.ack.replay if rec.ack else 0) + 1
                if replay > self.settings.spool.max_replays:
                    _set_aside(path)
                    metrics.SPOOL_STUCK.inc()
                    result.stuck += 1
                    log.error("spool segment %s set aside: record %d never landed", path.name, rec.data.seq)
                    return None
                # a hot project's record goes back to the overflow topic, not to the quiet projects' worker
                delivery = await self.publisher.publish(messages, hot=bool(rec.ack and rec.ack.topic))
                ack = Ack(rec.data.seq, delivery.topic_id, delivery.offsets, replay, delivery.topic)
                await run_in_threadpool(append_record, fd, frame(ACK, ack))
                events = sum(len(split_message(v)) for _k, v in messages)
                metrics.SPOOL_REPLAYED.inc(events)
                result.replayed_events += events
                events_total += events
                records += 1
        finally:
            if records:
                log.warning(
                    "spool: %d acknowledged events in %d records of %s were not landed; published again",
                    events_total, records, path.name,
                )  # fmt: skip
        return True

    def _unlanded(
        self, records: list[_Record], since: datetime
    ) -> list[tuple[_Record, list[tuple[bytes, bytes]]]]:
        """Per record, the messages that carry its events that neither landed nor were dead-lettered (packed
        anew: a record journaled in either message format is re-published in format 2)."""
        items, owners = [], []
        for rec in records:
            for _key, value in rec.data.messages:
                for event in split_message(value):
                    ids = _decode_ids(event)
                    items.append((ids.project_id, ids.event_id, event))
                    owners.append((rec, ids, event))
        missing: dict[int, tuple[_Record, list[_Ids], list[bytes]]] = {}
        with self.pool.connection() as conn:
            for start in range(0, len(items), 10_000):
                for i in unlanded(conn, items[start : start + 10_000], since):
                    rec, ids, event = owners[start + i]
                    entry = missing.setdefault(rec.data.seq, (rec, [], []))
                    entry[1].append(ids)
                    entry[2].append(event)
        out = []
        for rec, ids, events in missing.values():
            out.append((rec, pack(ids[0].project_id, [i.distinct_id for i in ids], events)))
        return out


def _fold(path: Path, full: bool = False) -> dict[int, _Record]:
    """Records by sequence number, each with its latest ack (a re-publication appends a newer one). Without
    `full`, Data records are DataHead: most passes only need to know every record was acknowledged."""
    out: dict[int, _Record] = {}
    for r in read_records(path, heads=not full):
        if isinstance(r, Data | DataHead):
            out[r.seq] = _Record(r)
        elif r.seq in out:
            if isinstance(r, Abort):
                out[r.seq].aborted = True
            else:
                out[r.seq].ack = r
    return out


def _try_lock(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if not path.exists():  # pruned by the previous holder between our open and lock
        os.close(fd)
        return None
    return fd


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _segment_time(path: Path) -> datetime:
    try:
        return datetime.fromtimestamp(int(path.name.split("-", 1)[0]) / 1e9, UTC)
    except ValueError:
        return datetime.fromtimestamp(0, UTC)


def _set_aside(path: Path) -> None:
    path.rename(path.parent / "stuck" / path.name)
