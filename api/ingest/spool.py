"""The ingest spool: a write-ahead journal of accepted requests on the ingest host's disk.

Order of a request: append its messages to the journal and fdatasync (one sync covers every request that
wrote meanwhile: group commit), publish, record the broker's acknowledgement (topic id, highest offset per
partition) or an abort, then answer 202 or 503. A segment is deleted only once the landing workers' committed
offsets passed every acknowledged record of it, on the same topic incarnation; anything else (a broker that
came back empty, a process killed between publish and ack) is checked against the warehouse ledger and the
missing events are published again (`api.ingest.reconcile`). So a 202 survives the broker losing its log as
long as this disk survives; landing is idempotent per (project, event_id), so a re-publication never counts
twice.

Why hand-written: no maintained Python library offers a group-committed append log with per-record markers
that several processes can hand over through file locks; the format is a length + CRC32 frame around msgpack.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import logging
import mmap
import os
import struct
import time
import uuid
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

log = logging.getLogger(__name__)

SUFFIX = ".seg"
OWNERS = "owners"  # <dir>/owners/<pid>-<token>.lock: flock'ed for as long as that writer lives
_HEADER = struct.Struct("<IIB")  # payload length, crc32 of type byte + payload, record type
DATA, ACK, ABORT = 1, 2, 3

Message = tuple[bytes, bytes]  # (Kafka key, value)

_encoder = msgspec.msgpack.Encoder()
_encode = _encoder.encode
_KIND_CRC = {kind: zlib.crc32(bytes([kind])) for kind in (1, 2, 3)}  # crc32 of the type byte, to continue


class Data(msgspec.Struct, array_like=True):
    seq: int
    messages: list[tuple[bytes, bytes]]


class Ack(msgspec.Struct, array_like=True):
    seq: int
    topic_id: str
    offsets: dict[int, int]  # partition -> highest acknowledged offset
    replay: int = 0
    # "": the raw topic; else the overflow topic's name (kafka.topic_overflow). Last and defaulted, so that
    # markers written before it existed read as the raw topic's.
    topic: str = ""


class Abort(msgspec.Struct, array_like=True):
    seq: int


class DataHead(msgspec.Struct, array_like=True):
    """A Data record without its messages: what the reconciler needs of a record whose ack settles it
    (msgspec skips the messages without copying them)."""

    seq: int


_DECODERS = {
    DATA: msgspec.msgpack.Decoder(Data),
    ACK: msgspec.msgpack.Decoder(Ack),
    ABORT: msgspec.msgpack.Decoder(Abort),
}
_HEAD_DECODERS = {**_DECODERS, DATA: msgspec.msgpack.Decoder(DataHead)}


class SpoolUnavailable(Exception):
    """The journal could not take the request (disk full, I/O error, size cap): answer 503, publish nothing."""


def frame(kind: int, record: msgspec.Struct) -> bytearray:
    """Header + msgpack payload, encoded in place behind the header (a Data record carries the request's
    events: no copy of them is made here)."""
    buf = bytearray(_HEADER.size)
    _encoder.encode_into(record, buf, _HEADER.size)
    payload = memoryview(buf)[_HEADER.size :]
    _HEADER.pack_into(buf, 0, len(payload), zlib.crc32(payload, _KIND_CRC[kind]), kind)
    payload.release()
    return buf


def read_records(path: Path, heads: bool = False) -> Iterator[Data | DataHead | Ack | Abort]:
    """Every intact record; stops at the first torn or corrupt frame (a crash mid-write leaves only a tail).
    `heads`: Data records come as DataHead (seq only).

    The segment is mapped, not read into a bytes object: the reconciler reads each sealed segment (up to a
    second of ingest, tens of MiB under batch load) in a worker thread, and glibc kept every such buffer in
    that thread's malloc arena after it was freed. Over 10 M events in batches the API processes' RSS grew
    from 216 to 588 MiB, all of it in up to 16 arenas of ~20 MiB each (docs/benchmarks/2026-12-06-suite-
    medium-f.md, sustained). Decoded records copy what they keep (msgspec), so nothing outlives the map."""
    decoders = _HEAD_DECODERS if heads else _DECODERS
    with path.open("rb") as f:
        end = os.fstat(f.fileno()).st_size
        if end == 0:
            return
        with mmap.mmap(f.fileno(), end, access=mmap.ACCESS_READ) as buf, memoryview(buf) as view:
            pos = 0
            while pos + _HEADER.size <= end:
                length, crc, kind = _HEADER.unpack_from(buf, pos)
                start = pos + _HEADER.size
                with view[start : start + length] as payload:
                    if (
                        len(payload) < length
                        or kind not in decoders
                        or zlib.crc32(payload, _KIND_CRC[kind]) != crc
                    ):
                        if start + length < end:
                            log.error(
                                "spool segment %s is corrupt at byte %d; records after it are not read",
                                path,
                                pos,
                            )
                        return
                    record = decoders[kind].decode(payload)
                yield record
                pos = start + length


def append_record(fd: int, data: bytes | bytearray) -> None:
    """Write all of `data` at the end of the file, or restore the file's length and raise OSError."""
    start = os.lseek(fd, 0, os.SEEK_END)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    except OSError:
        try:
            os.ftruncate(fd, start)  # frees space, so it works on a full disk too
        except OSError as exc:
            log.error("could not cut a torn spool record: %s", exc)
        raise


@dataclass
class Segment:
    path: Path
    fd: int
    opened: float
    size: int = 0
    synced: int = 0
    inflight: int = 0
    sealed: bool = False
    sync_task: asyncio.Future | None = None
    sync_error: OSError | None = None  # a failed fdatasync: nothing written before it and unsynced is durable
    closed: bool = False
    marks: bytearray = field(default_factory=bytearray)  # ACK markers waiting for Spool.write_marks
    marked: int = 0  # entries whose marker is in `marks`: still counted in `inflight` until written

    def close(self) -> None:
        self.closed = True
        os.close(self.fd)  # releases the flock: another process's reconciler may take the segment now


@dataclass
class Entry:
    """One request in the journal: where its record is, so the ack or abort goes next to it."""

    segment: Segment
    seq: int
    end: int  # segment size right after the record: synced past this = durable


@dataclass
class Spool:
    """One process's writer. Appends happen on the event loop thread (a few KiB, page cache); syncs run in a
    thread. The open segment is flock'ed, so other processes' reconcilers leave it alone until sealed."""

    directory: Path
    fsync: bool = True
    segment_max_bytes: int = 64 * 1024**2
    segment_max_age_s: float = 1.0
    max_bytes: int = 4 * 1024**3
    _active: Segment | None = None
    _open: dict[Path, Segment] = field(default_factory=dict)
    _seq: int = 0
    _others_bytes: int = 0  # what the last reconcile pass found on disk, outside this process's open files
    owner: str = ""  # `<pid>-<token>`, in the name of every segment this Spool writes
    _owner_fd: int | None = None
    _marking: list[Segment] = field(default_factory=list)  # segments with markers not yet written
    _marks_due: asyncio.Handle | None = None

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "stuck").mkdir(exist_ok=True)
        self.owner, self._owner_fd = _claim_owner(self.directory / OWNERS)

    def owner_alive(self, owner: str) -> bool:
        """Whether another live Spool writes `owner`'s segments: its own reconciler settles them, so this
        process leaves them alone (both API processes used to read every segment, each once)."""
        return owner != self.owner and _held(self.directory / OWNERS / f"{owner}.lock")

    # -- writing ------------------------------------------------------------------------------------------
    async def append(self, messages: list[Message]) -> Entry:
        """Journal the request durably; raise SpoolUnavailable if that is not possible."""
        entry = self.write(messages)
        await self.sync(entry)
        return entry

    def write(self, messages: list[Message]) -> Entry:
        """Append the request's record (page cache only); `sync(entry)` makes it durable.

        The sync is asked for after the broker's acknowledgement (api/ingest/service.py): every request
        written during that round trip (milliseconds) shares one fdatasync (a fraction of a millisecond).
        Starting a sync per write instead cost one thread-pool hop per request on a fast disk."""
        if self._others_bytes + self.open_bytes() > self.max_bytes:
            raise SpoolUnavailable(f"spool holds more than {self.max_bytes:,} unlanded bytes")
        try:
            segment = self._segment()
            self._seq += 1
            data = frame(DATA, Data(self._seq, messages))
            append_record(segment.fd, data)
        except OSError as exc:
            if self._active is not None:
                self._seal(self._active)
            raise SpoolUnavailable(f"spool write failed: {exc.strerror or exc}") from None
        segment.size += len(data)
        segment.inflight += 1
        return Entry(segment, self._seq, segment.size)

    async def sync(self, entry: Entry) -> None:
        """Wait until the entry's record is on disk; on failure the entry is aborted and SpoolUnavailable
        raised."""
        if not self.fsync:
            return
        segment = entry.segment
        try:
            await self._sync(segment, entry.end)
        except OSError as exc:
            # After a failed fsync the page cache may be dropped: the record is not known durable.
            self.abort(entry)
            self._seal(segment)
            raise SpoolUnavailable(f"spool sync failed: {exc.strerror or exc}") from None

    def acknowledge(self, entry: Entry, topic_id: str, offsets: dict[int, int], topic: str = "") -> None:
        """Record where the broker put the request (`topic`: "" the raw topic, else the overflow topic). Not
        synced: losing it only costs a ledger check.

        Written at the end of this pass of the event loop (`write_marks`), not at once: the requests that one
        fdatasync released resume in the same pass, so their markers share one write() instead of one each
        (a second syscall per request otherwise). Until then the entry counts as in flight, so its segment is
        neither released nor handed to a reconciler. Without a running loop it is written at once."""
        segment = entry.segment
        segment.marks += frame(ACK, Ack(entry.seq, topic_id, offsets, 0, topic))
        segment.marked += 1
        if segment.marked == 1:
            self._marking.append(segment)
        if self._marks_due is None:
            try:
                self._marks_due = asyncio.get_running_loop().call_soon(self.write_marks)
            except RuntimeError:
                self.write_marks()

    def write_marks(self) -> None:
        """Append every buffered ACK marker, one write() per segment."""
        self._marks_due = None
        while self._marking:  # one at a time: if a release raises, the rest stay listed for the next pass
            segment = self._marking.pop()
            data, count = segment.marks, segment.marked
            segment.marks, segment.marked = bytearray(), 0
            self._settle(segment, data, count)

    def abort(self, entry: Entry) -> None:
        """The request was answered 503: it must never be published again."""
        self._mark(entry, frame(ABORT, Abort(entry.seq)))

    def forget(self, entry: Entry) -> None:
        """Outcome unknown (the request was cancelled mid-publish): no marker, the reconciler checks the ledger."""
        self._mark(entry, b"")

    def _mark(self, entry: Entry, data: bytes) -> None:
        self._settle(entry.segment, data, 1)

    def _settle(self, segment: Segment, data: bytes | bytearray, entries: int) -> None:
        """Write the markers of `entries` requests; they are no longer in flight."""
        try:
            # Closed by Spool.close(): its descriptor number may be another file's now.
            if data and not segment.closed:
                append_record(segment.fd, data)
                segment.size += len(data)
        except OSError as exc:
            log.warning("spool marker not written (%s); the reconciler will check the ledger instead", exc)
        segment.inflight -= entries
        if segment.sealed and segment.inflight == 0:
            self._release(segment)

    async def _sync(self, segment: Segment, upto: int) -> None:
        while segment.synced < upto:
            if segment.closed:
                # Spool.close() released it (shutdown while a request still ran): its descriptor number may
                # be another file's now, and an fdatasync of that one would vouch for nothing.
                raise OSError(errno.EBADF, "spool closed")
            if segment.sync_error is not None:
                # After a failed fdatasync the kernel may have dropped the dirty pages, and a later one may
                # succeed without writing them: a request that asks only after the failure must fail too.
                raise segment.sync_error
            task = segment.sync_task
            if task is None or task.done():
                task = _start_sync(segment)
            await asyncio.shield(task)  # a failed sync fails every request that waited for it

    def _segment(self) -> Segment:
        seg = self._active
        now = time.monotonic()
        if seg is not None and (
            seg.size >= self.segment_max_bytes
            or now - seg.opened >= self.segment_max_age_s
            or seg.sync_error is not None
        ):
            self._seal(seg)
            seg = None
        if seg is None:
            name = f"{time.time_ns():020d}-{self.owner}{SUFFIX}"
            path = self.directory / name
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            seg = self._active = Segment(path, fd, now)
            self._open[path] = seg
            if self.fsync:
                _sync_dir(self.directory)  # the new name itself must survive a crash
        return seg

    def _seal(self, segment: Segment) -> None:
        segment.sealed = True
        if self._active is segment:
            self._active = None
        if segment.inflight == 0:
            self._release(segment)

    def _release(self, segment: Segment) -> None:
        if self._open.pop(segment.path, None) is not None:
            task = segment.sync_task
            if task is not None and not task.done():
                segment.closed = True  # no further syncs; the fd is closed once the running one returns
                task.add_done_callback(lambda _t: os.close(segment.fd))  # never under a running fdatasync
            else:
                segment.close()

    def seal_idle(self) -> None:
        """Called by the reconciler: an idle open segment is sealed so that it can be pruned."""
        seg = self._active
        if seg is not None and time.monotonic() - seg.opened >= self.segment_max_age_s:
            self._seal(seg)

    def owns(self, path: Path) -> bool:
        return path in self._open

    def open_bytes(self) -> int:
        return sum(s.size for s in self._open.values())

    def note_disk_usage(self, others_bytes: int) -> None:
        self._others_bytes = others_bytes

    def close(self) -> None:
        if self._marks_due is not None:
            self._marks_due.cancel()
        self.write_marks()
        for seg in list(self._open.values()):
            self._release(seg)
        self._active = None
        if self._owner_fd is not None:  # sealed segments left behind are now any reconciler's
            (self.directory / OWNERS / f"{self.owner}.lock").unlink(missing_ok=True)
            os.close(self._owner_fd)
            self._owner_fd = None


def segment_owner(path: Path) -> str:
    """`<pid>-<token>` of a segment named `<time_ns>-<pid>-<token>.seg` (the writer's `Spool.owner`)."""
    return path.name.removesuffix(SUFFIX).partition("-")[2]


def _claim_owner(owners: Path) -> tuple[str, int]:
    """This writer's owner id and the flock'ed `<owners>/<id>.lock` that says it is alive (the kernel drops the
    lock when the process dies). Locked before it gets its name, so a visible lock file is never unlocked
    while its writer lives."""
    owners.mkdir(exist_ok=True)
    owner = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = owners / f".{owner}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    tmp.rename(owners / f"{owner}.lock")
    return owner, fd


def _held(lock: Path) -> bool:
    """Someone holds `lock`'s flock. A missing file (a segment of an older spool or a closed writer) is not."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def prune_owner_locks(owners: Path, keep: set[str]) -> None:
    """Delete the lock files of dead writers (killed, so `close` did not) that own no segment any more."""
    for lock in owners.glob("*.lock"):
        owner = lock.name.removesuffix(".lock")
        if owner not in keep and not _held(lock):
            lock.unlink(missing_ok=True)


def _start_sync(segment: Segment) -> asyncio.Future:
    task = segment.sync_task = asyncio.ensure_future(_sync_once(segment))
    # Requests that await the task get its error through the shield in Spool._sync; retrieving it here keeps
    # a task whose waiters were all cancelled from logging "exception never retrieved".
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


async def _sync_once(segment: Segment) -> None:
    target = segment.size
    try:
        await asyncio.get_running_loop().run_in_executor(None, os.fdatasync, segment.fd)
    except OSError as exc:
        segment.sync_error = exc
        raise
    segment.synced = max(segment.synced, target)


def _sync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
