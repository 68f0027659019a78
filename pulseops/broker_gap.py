"""How long the keeper (pulseops/broker.py) leaves the broker's port closed between an old Tansu and its
replacement: until every client of the old one closed its connection, plus a margin, at most RESTART_GAP_S.

Why: a librdkafka 2.12 consumer that knew the old topic ids crashes on its first fetch from a new broker, so
the landing worker replaces itself (exec) as soon as its watch connection is closed by the broker
(streams/fence.py, BrokerWatch), and no broker may answer before it did. A fixed 0.5 s was the whole gap;
ingest answers 503 throughout it, and librdkafka's reconnect backoff (100 ms, doubling with each refused
attempt) adds more while the port stays closed. The kernel shows when the clients noticed: a client's socket
to the killed broker stays in CLOSE_WAIT (the broker's FIN received) until the client closes it, and the
watch closes its socket right before it execs. So the gap ends once no socket to the port is in CLOSE_WAIT,
plus GAP_MARGIN_S for the exec itself (librdkafka waits at least ~75 ms before its first reconnect anyway);
a client that never closes (an idle one not polling) leaves the gap at RESTART_GAP_S, as before.
"""

from __future__ import annotations

import time
from pathlib import Path

# Seconds the port stays closed at most (the former fixed gap), and at least after the last client closed.
RESTART_GAP_S = 0.5
GAP_MARGIN_S = 0.15
_CLOSE_WAIT = "08"  # st column of /proc/net/tcp


def clients_closing(port: int) -> int:
    """Sockets on this host connected to `port` that got the peer's FIN but were not closed yet."""
    n = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 3 and f[3] == _CLOSE_WAIT and int(f[2].rsplit(":", 1)[1], 16) == port:
                n += 1
    return n


def wait_for_clients(port: int, max_s: float = RESTART_GAP_S, margin_s: float = GAP_MARGIN_S) -> float:
    """Block until the old broker's clients closed their connections plus `margin_s`, at most `max_s`
    (call it right after the broker died); returns the seconds waited."""
    started = time.monotonic()
    deadline = started + max_s
    while time.monotonic() < deadline and clients_closing(port):
        time.sleep(0.01)
    time.sleep(max(0.0, min(margin_s, deadline - time.monotonic())))
    return time.monotonic() - started
