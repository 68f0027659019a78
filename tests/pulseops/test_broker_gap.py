"""The keeper's closed-port gap between an old broker and its replacement (pulseops/broker_gap.py): it lasts
until every client of the old broker closed its connection (plus a margin), never longer than RESTART_GAP_S,
against a real Tansu killed the way the keeper kills it."""

from __future__ import annotations

import socket
import threading
import time

from benchmarks.harness import free_port
from pulseops.broker import EmbeddedBroker
from pulseops.broker_gap import GAP_MARGIN_S, RESTART_GAP_S, clients_closing, wait_for_clients
from streams.fence import BrokerWatch


def _killed_with_client(close_after: float | None) -> tuple[EmbeddedBroker, float]:
    """Kill a broker that has one client; the client closes `close_after` s later (None: never, until the end)."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    sock = socket.create_connection((broker.host, broker.port))
    time.sleep(0.2)  # Tansu accepted it (one still in the listen backlog is reset, not left in CLOSE_WAIT)
    try:
        broker.stop()
        time.sleep(0.05)  # the FIN arrives
        assert clients_closing(broker.port) == 1
        if close_after is not None:
            threading.Timer(close_after, sock.close).start()
        return broker, wait_for_clients(broker.port)
    finally:
        time.sleep(0.01)
        sock.close()


def test_the_gap_follows_the_clients() -> None:
    _, waited = _killed_with_client(0.0)
    assert GAP_MARGIN_S - 0.01 <= waited < GAP_MARGIN_S + 0.15  # closed at once: the margin only
    broker, waited = _killed_with_client(0.25)
    assert 0.25 + GAP_MARGIN_S - 0.02 <= waited <= RESTART_GAP_S + 0.05
    assert clients_closing(broker.port) == 0
    _, waited = _killed_with_client(None)  # a client that never closes: the old fixed gap
    assert RESTART_GAP_S - 0.01 <= waited <= RESTART_GAP_S + 0.1


def test_a_watching_worker_is_gone_before_the_new_broker_answers() -> None:
    """The landing worker's watch (streams/fence.py) fires before anything listens on the port again."""
    broker = EmbeddedBroker(free_port())
    broker.start()
    fired: list[float] = []
    watch = BrokerWatch(broker.bootstrap, on_lost=lambda: fired.append(time.monotonic()))
    assert watch.start()
    time.sleep(0.2)
    killed = time.monotonic()
    broker.stop()
    wait_for_clients(broker.port)
    broker.start()
    up = time.monotonic()
    try:
        assert fired and fired[0] < up - GAP_MARGIN_S + 0.01
        assert up - killed < RESTART_GAP_S  # shorter than the old fixed gap
    finally:
        broker.stop()
