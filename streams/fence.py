"""The landing worker's guards against a replaced broker: never commit offsets read on another broker's log,
and never let a consumer of the old broker talk to its replacement.

Why: the embedded broker (Tansu) keeps its log in memory. When it restarts (a crash, or the keeper in
pulseops/broker.py recycling it to free memory) it comes back with empty partitions, a new topic id and no
committed offsets. Two things then go wrong for a worker that survives the restart:

1. Lost events. It keeps its fetch positions from the old log, and Tansu, unlike Kafka, never answers
   OFFSET_OUT_OF_RANGE: the worker waits until the new partitions grow past its old positions, lands from there
   and commits, so the records below were skipped and the spool then takes those commits as proof of landing.
   Measured before `TopicFence`: `python -m benchmarks.sustained --size small --recycle` lost 9,239 of 253,024
   acknowledged events (before the offset-gap check in streams/sink.py too, which explains part of it).
2. A crash (SIGSEGV). librdkafka fetches by topic id (Fetch v13+). Tansu 0.6 answers a fetch for an id it
   does not know with a zero topic id *and* a CurrentLeader tag; librdkafka 2.12 turns that tag into a
   metadata update looked up by topic name, which is NULL for a zero id, and strcmp(NULL) crashes its main
   thread (gdb attached to a worker while Tansu restarted under it, the scenario of
   tests/streams/test_broker_loss.py: rd_kafka_metadata_update_op -> rd_kafka_metadata_cache_find ->
   rd_avl_find_node -> strcmp; librdkafka's code there is unchanged up to 2.15). So any consumer that knew the
   old topic id and fetches once from the new broker may crash: 6 times in 7 recycles at medium
   (docs/benchmarks/2026-12-06-suite-medium-b.md), 3 in 3 at small (`python -m benchmarks.sustained --size
   small --recycle`).

`BrokerWatch` closes (2), and with it most of (1): it holds a plain TCP connection to the broker and replaces
the process (`exec`, same pid for supervisord) the moment that connection drops, i.e. when the old broker
dies, before a new one can answer: the keeper leaves the port closed for `RESTART_GAP_S` between the two
brokers (pulseops/broker.py), against the watch's reaction in milliseconds. So no librdkafka client of this
process ever meets the new broker; the fresh process learns the new topic ids from it. No librdkafka setting
avoids the path (the Fetch version is negotiated, the crash needs only one fetch), and stopping the workers
from the keeper would need a registry of worker processes the keeper does not otherwise know.

`TopicFence` stays for what the watch cannot see: a restart while the watch was not connected, or a watch on
another broker of a real cluster. Before every commit the sink compares the raw topic's id with the one it
started on and on a change replaces the worker the same way. Against Kafka or Redpanda a topic id changes only
when someone deletes and recreates the topic, where the same restart is right too; the watch there restarts
the worker when the one broker it watches restarts (a rejoin of the group, nothing lost).

Why `exec` and not Quix's close path: that path commits the checkpoint once more, at the old positions, on the
new broker. The fresh process joins the group on the new broker, finds no committed offsets and reads from the
start (`auto_offset_reset="earliest"`, streams/app.py); what the old log held unlanded the ingest spool
publishes again (api/ingest/reconcile.py). An exec in the middle of a landing transaction is a worker killed
mid-chunk: the (project, event_id) ledger makes the re-read land once (tests/faults/test_drills.py).

Left open: a restart in the milliseconds between the fence's check and Quix's commit request, when the watch
missed it. A real Kafka coordinator refuses that commit (the member's generation is unknown to a fresh
coordinator)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import struct
import sys
import threading
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


# Run before the process replaces itself: the worker stops the overflow lander it started (streams/__main__.py),
# which the fresh image starts again; exec runs no atexit handlers.
BEFORE_RESTART: list[Callable[[], None]] = []
# Exit with this code instead of replacing the process: set by the overflow lander (streams/__main__.py), which
# its worker starts again. An exec from the watch's thread would drop the parent-death signal the lander was
# started with (the kernel keeps it per thread), and a worker dying later would leave the lander behind.
EXIT_TO_RESTART: int | None = None


def restart_worker() -> None:
    """Replace this process by a fresh landing worker with the same arguments (same pid for supervisord)."""
    for hook in list(BEFORE_RESTART):
        try:
            hook()
        except Exception:  # the process must still go: it would meet the new broker otherwise
            logging.getLogger(__name__).exception("before-restart hook failed")
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    logging.shutdown()
    if EXIT_TO_RESTART is not None:
        os._exit(EXIT_TO_RESTART)
    os.execv(sys.executable, [sys.executable, "-m", "streams", *sys.argv[1:]])  # noqa: S606 (our own argv)


OnReplaced = Callable[[], None]

# A Kafka ApiVersions v0 request (header v1: api key 18, version 0, correlation id 0, client id), sent while
# the watch is idle: Kafka closes connections idle for connections.max.idle.ms (10 min by default), which the
# watch would take for a lost broker. Tansu keeps idle connections open.
_CLIENT_ID = b"pulseops-broker-watch"
_KEEPALIVE = struct.pack(">ihhih", 10 + len(_CLIENT_ID), 18, 0, 0, len(_CLIENT_ID)) + _CLIENT_ID


class BrokerWatch:
    """Calls `on_lost` (by default: replace the process) once the broker closes this watch's connection."""

    def __init__(self, servers: str, on_lost: OnReplaced = restart_worker, keepalive_s: float = 60.0) -> None:
        self.servers = servers
        self.on_lost = on_lost
        self.keepalive_s = keepalive_s
        self.address: tuple[str, int] | None = None
        self._sock: socket.socket | None = None
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout: float = 5.0) -> bool:
        """Connect to the first bootstrap address that answers and watch it from a daemon thread; False when
        none answered (then only the fence guards this process)."""
        for server in self.servers.split(","):
            host, _, port = server.strip().rpartition(":")
            try:
                self._sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
            except (OSError, ValueError) as exc:
                log.warning("broker watch: %s did not answer (%s)", server, exc)
                continue
            self.address = (host, int(port))
            self._thread = threading.Thread(target=self._run, name="broker-watch", daemon=True)
            self._thread.start()
            return True
        return False

    def stop(self) -> None:
        """Stop watching without calling `on_lost`."""
        self._stopped.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):  # already closed
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def _run(self) -> None:
        sock = self._sock
        assert sock is not None
        sock.settimeout(self.keepalive_s)
        reason = "closed by the broker"
        while not self._stopped.is_set():
            try:
                if sock.recv(65536):  # a keepalive's answer
                    continue
            except TimeoutError:
                try:
                    sock.sendall(_KEEPALIVE)
                except OSError as exc:
                    reason = str(exc)
                    break
                continue
            except OSError as exc:
                reason = str(exc)
            break
        sock.close()
        if self._stopped.is_set():
            return
        log.warning(
            "lost the connection to the broker at %s:%s (%s): restarting the worker before a new broker can "
            "answer its consumer (streams/fence.py)",
            *(self.address or ("?", "?")),
            reason,
        )
        self.on_lost()
