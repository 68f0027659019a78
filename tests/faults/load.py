"""Steady load for fault drills, and the accounting every drill asserts on.

The client behaves as a careful user of the API: every event carries its own `event_id`; a request that got
429 or 503 is retried after `Retry-After`, and one without an answer (connection refused or cut, timeout) is
retried after a short pause, always with the same events. So every event it sends is acknowledged in the end,
and whatever the system does under a fault must leave acknowledged == landed and nothing twice.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg

from tests.fixtures.system import ROOT, wait_until

REPORT = ROOT / "test-output" / "drills.jsonl"


@dataclass
class Load:
    """Batches of `batch` events, `rate` requests per second, from a background thread."""

    url: str
    key: str
    batch: int = 50
    rate: float = 20.0
    event_time: datetime | None = None  # default: now (a drill may send late data)
    give_up_after_s: float = 120.0
    sent: set[uuid.UUID] = field(default_factory=set)
    acknowledged: set[uuid.UUID] = field(default_factory=set)
    statuses: Counter = field(default_factory=Counter)
    retry_after_missing: int = 0
    timeline: list[tuple[float, int | str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> Load:
        self._thread = threading.Thread(target=self._run, name="drill-load", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop starting new batches; the one in flight is retried until acknowledged."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.give_up_after_s + 30)

    def wait_for_acks(self, n: int, timeout: float = 60) -> None:
        wait_until(lambda: len(self.acknowledged) >= n, timeout, f"{n} events acknowledged")

    def _events(self) -> list[dict]:
        ts = (self.event_time or datetime.now(UTC)).isoformat()
        return [
            {"event": "drill", "distinct_id": f"u-{i % 97}", "event_id": str(uuid.uuid4()), "timestamp": ts}
            for i in range(self.batch)
        ]

    def _run(self) -> None:
        start = time.monotonic()
        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                due = start + n / self.rate
                if (pause := due - time.monotonic()) > 0:
                    time.sleep(pause)
                n += 1
                self._deliver(client, self._events(), start)

    def _deliver(self, client: httpx.Client, events: list[dict], start: float) -> None:
        ids = {uuid.UUID(e["event_id"]) for e in events}
        self.sent |= ids
        body = {"batch": events}
        deadline = time.monotonic() + self.give_up_after_s
        while time.monotonic() < deadline:
            try:
                resp = client.post("/v1/batch", json=body)
            except httpx.HTTPError as exc:
                self.statuses[type(exc).__name__] += 1
                self.timeline.append((time.monotonic() - start, type(exc).__name__))
                time.sleep(0.2)
                continue
            self.statuses[resp.status_code] += 1
            self.timeline.append((time.monotonic() - start, resp.status_code))
            if resp.status_code == 202:
                acked = {uuid.UUID(i) for i in resp.json()["event_ids"]}
                assert acked == ids, "a 202 must acknowledge exactly the events sent"
                self.acknowledged |= acked
                return
            if resp.status_code in (429, 503):
                retry = resp.headers.get("Retry-After")
                if retry is None:
                    self.retry_after_missing += 1
                time.sleep(min(float(retry or 1), 5))
                continue
            raise AssertionError(f"unexpected {resp.status_code}: {resp.text[:300]}")


@dataclass
class Accounting:
    sent: int
    acknowledged: int
    landed: int
    duplicated: int
    missing: int  # acknowledged, not landed
    unacknowledged_landed: int  # landed although never acknowledged (only after a client gave up)

    def line(self, drill: str) -> str:
        return (
            f"drill {drill}: sent {self.sent} acknowledged {self.acknowledged} landed {self.landed} "
            f"duplicated {self.duplicated} missing {self.missing}"
        )


def landed_ids(database_url: str, project_id: uuid.UUID) -> tuple[set[uuid.UUID], int]:
    """Distinct event ids landed for the project, and how many rows exceed one per event id."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, count(*) FROM events WHERE project_id = %s GROUP BY event_id", (project_id,)
        ).fetchall()
    return {r[0] for r in rows}, sum(r[1] - 1 for r in rows)


def settle(
    load: Load, database_url: str, project_id: uuid.UUID, drill: str, timeout: float = 120
) -> Accounting:
    """Wait until every acknowledged event landed (or the timeout), then account and record the result."""

    def all_landed() -> bool:
        return load.acknowledged <= landed_ids(database_url, project_id)[0]

    with contextlib.suppress(TimeoutError):  # the assertions on the accounting say what is missing
        wait_until(all_landed, timeout, "every acknowledged event landed", interval=0.5)
    time.sleep(1.0)  # anything landing twice would show up now
    ids, duplicated = landed_ids(database_url, project_id)
    acc = Accounting(
        sent=len(load.sent),
        acknowledged=len(load.acknowledged),
        landed=len(ids),
        duplicated=duplicated,
        missing=len(load.acknowledged - ids),
        unacknowledged_landed=len(ids - load.acknowledged),
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as f:
        entry = {"drill": drill, "at": datetime.now(UTC).isoformat(), **acc.__dict__}
        f.write(json.dumps({**entry, "statuses": {str(k): v for k, v in load.statuses.items()}}) + "\n")
    print(acc.line(drill), dict(load.statuses))
    return acc


def assert_exact(acc: Accounting, load: Load) -> None:
    assert acc.acknowledged > 0
    assert acc.missing == 0, acc
    assert acc.duplicated == 0, acc
    assert acc.landed == acc.acknowledged, acc
    assert acc.sent == acc.acknowledged, f"the client gave up on some events: {acc}"
    assert load.retry_after_missing == 0, "a 429/503 came without Retry-After"
