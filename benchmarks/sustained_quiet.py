"""When landing is idle, for benchmarks/sustained.py: the after-run must not share the machine with a backlog."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import psycopg

# Landing is idle once the ledger count held still this long (the worker commits several times a second
# while it has a backlog).
QUIET_S = 2.0


def wait_quiet(
    count: Callable[[], int], at_least: int, timeout: float, quiet_s: float = QUIET_S, poll_s: float = 0.2
) -> float | None:
    """Seconds until `count()` (landed events) reached `at_least` and then did not change for `quiet_s`, or
    None at the timeout. Reaching the acknowledged count is not enough: requests wrk abandons in flight when
    a run ends were accepted all the same and land with no 202 seen (the ledger check's "unacknowledged",
    ~1.8 M of 10 M in suite-medium-f), so a wait for the acknowledged count returned while that backlog grew
    round by round and the after-run measured ingest beside a landing worker still draining it."""
    started = time.monotonic()
    last, since = -1, started
    while True:
        n = count()
        now = time.monotonic()
        if n != last:
            last, since = n, now
        elif n >= at_least and now - since >= quiet_s:
            return now - started
        if now - started > timeout:
            return None
        time.sleep(poll_s)


@contextmanager
def ledger_counter(db_url: str, project: uuid.UUID) -> Iterator[Callable[[], int]]:
    """`count()` of the project's rows in the landing ledger, on one connection."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield lambda: conn.execute(
            "SELECT count(*) FROM event_ids WHERE project_id = %s", (project,)
        ).fetchone()[0]
