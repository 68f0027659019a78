"""Steady load for fault drills, and the accounting every drill asserts on.

The client behaves as a careful user of the API: every event carries its own id; a request that got 429 or
503 is retried after `Retry-After`, and one without an answer (connection refused or cut, timeout) is retried
after a short pause, always with the same bytes. So every event it sends is acknowledged in the end, and
whatever the system does under a fault must leave acknowledged == landed and nothing twice.

The load mixes the three ingest protocols in turn (issue 13: the drills must hold with the SDK paths in the
mix): the native `/v1/batch` (202), the PostHog `/batch/` and Segment's `/v1/batch` (200, api/ingest/compat).
Each compat event carries a client-chosen UUID (PostHog `uuid`, Segment `messageId`), which
api/ingest/compat/common.py `event_id_for` keeps as the event_id, so the ledger check compares the same ids
for every protocol. The PostHog requests vary the key's place (body `api_key` or `Authorization: Bearer`)
and the encoding (JSON, `Content-Encoding: gzip`, posthog-js's `?compression=gzip-js`); Segment's vary
between Basic auth with gzip and `writeKey` in the body with analytics.js-style non-UUID `messageId`s (mapped
to their uuid5 event ids, when the drill gives the project id).
"""

from __future__ import annotations

import base64
import contextlib
import gzip
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import psycopg

from api.ingest.compat.common import ID_NAMESPACE
from tests.fixtures.system import ROOT, wait_until

REPORT = ROOT / "test-output" / "drills.jsonl"
PROTOCOLS = ("native", "posthog", "segment")


@dataclass(frozen=True)
class Request:
    """One prepared request: a retry sends exactly these bytes again, as the SDKs do."""

    protocol: str
    path: str
    content: bytes
    headers: dict[str, str]
    ok: int  # the success status: 202 native, 200 PostHog and Segment


@dataclass
class Load:
    """Batches of `batch` events, `rate` requests per second in all, from one background thread per protocol
    (as separate SDKs would send): a fault meets a request of every protocol in flight, and each is retried
    by its own protocol's rules."""

    url: str
    key: str
    batch: int = 50
    rate: float = 20.0
    event_time: datetime | None = None  # default: now (a drill may send late data)
    give_up_after_s: float = 120.0
    protocols: tuple[str, ...] = PROTOCOLS
    project_id: uuid.UUID | None = None  # known: half of the Segment batches carry non-UUID messageIds
    sent: set[uuid.UUID] = field(default_factory=set)
    acknowledged: set[uuid.UUID] = field(default_factory=set)
    protocol_of: dict[uuid.UUID, str] = field(default_factory=dict)
    # the first event of every request links two fresh ids (identify): event id -> the pair it links
    links: dict[uuid.UUID, tuple[str, str]] = field(default_factory=dict)
    statuses: Counter = field(default_factory=Counter)
    statuses_by_protocol: dict[str, Counter] = field(default_factory=dict)  # what each protocol's retries saw
    retry_after_missing: int = 0
    failures: list[str] = field(default_factory=list)  # a thread stopped by an unexpected answer
    timeline: list[tuple[float, int | str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        unknown = set(self.protocols) - set(PROTOCOLS)
        assert self.protocols and not unknown, f"unknown protocols {unknown}"

    def start(self) -> Load:
        for protocol in self.protocols:
            thread = threading.Thread(
                target=self._run, args=(protocol,), name=f"drill-{protocol}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        return self

    def stop(self) -> None:
        """Stop starting new batches; the one in flight is retried until acknowledged."""
        self._stop.set()
        for thread in self._threads:
            thread.join(self.give_up_after_s + 30)

    def wait_for_acks(self, n: int, timeout: float = 60) -> None:
        wait_until(lambda: len(self.acknowledged) >= n, timeout, f"{n} events acknowledged")

    def _request(self, protocol: str, variant: int) -> tuple[Request, set[uuid.UUID]]:
        ts = (self.event_time or datetime.now(UTC)).isoformat()
        now = datetime.now(UTC).isoformat()
        ids = [uuid.uuid4() for _ in range(self.batch)]
        anon, user = f"anon-{ids[0].hex[:16]}", f"user-{ids[0].hex[:16]}"
        if protocol == "native":
            events = [
                {"event": "drill", "distinct_id": f"u-{i % 97}", "event_id": str(e), "timestamp": ts}
                for i, e in enumerate(ids)
            ]
            events[0] |= {
                "event": "$identify",
                "distinct_id": user,
                "properties": {"$anon_distinct_id": anon},
            }
            body = json.dumps({"batch": events}).encode()
            headers = {"X-API-Key": self.key, "Content-Type": "application/json"}
            req = Request(protocol, "/v1/batch", body, headers, 202)
        elif protocol == "posthog":
            events = [
                {"event": "drill", "distinct_id": f"u-{i % 97}", "uuid": str(e), "timestamp": ts,
                 "properties": {"$lib": "pulseops-drill"}}
                for i, e in enumerate(ids)
            ]  # fmt: skip
            events[0] |= {
                "event": "$identify",
                "distinct_id": user,
                "properties": {"$anon_distinct_id": anon},
                "$set": {"drill": True},
            }
            envelope: dict = {"batch": events, "sent_at": now}
            headers, path = {"Content-Type": "application/json"}, "/batch/"
            match variant % 3:
                case 0:  # posthog-python: key in the body, plain JSON
                    body = json.dumps({"api_key": self.key, **envelope}).encode()
                case 1:  # key as Bearer, gzip by Content-Encoding
                    headers |= {"Authorization": f"Bearer {self.key}", "Content-Encoding": "gzip"}
                    body = gzip.compress(json.dumps(envelope).encode())
                case _:  # posthog-js: gzip-js, a gzip body sent as text/plain
                    headers["Content-Type"] = "text/plain"
                    path = f"/batch/?compression=gzip-js&_={int(time.time() * 1000)}"
                    body = gzip.compress(json.dumps({"api_key": self.key, **envelope}).encode())
            req = Request(protocol, path, body, headers, 200)
        else:
            message_ids = [str(e) for e in ids]
            if variant % 2 == 1 and self.project_id is not None:
                # analytics.js's "ajs-next-..." ids are no UUIDs: the server keeps uuid5(namespace,
                # "<project>/<id>") as the event id (api/ingest/compat/common.py), the same on every retry
                message_ids = [f"ajs-next-{e.hex}" for e in ids]
                ids = [uuid.uuid5(ID_NAMESPACE, f"{self.project_id}/{m}") for m in message_ids]
            messages = [
                {"type": "track", "event": "drill", "userId": f"u-{i % 97}", "messageId": m,
                 "timestamp": ts, "properties": {"n": i}}
                for i, m in enumerate(message_ids)
            ]  # fmt: skip
            messages[0] = {
                "type": "identify",
                "userId": user,
                "anonymousId": anon,
                "messageId": message_ids[0],
                "traits": {"drill": True},
                "timestamp": ts,
            }
            envelope = {"batch": messages, "sentAt": now, "context": {"library": {"name": "pulseops-drill"}}}
            headers = {"Content-Type": "application/json"}
            if variant % 2 == 0:  # analytics-python with gzip: Basic auth, write key as the user name
                basic = base64.b64encode(f"{self.key}:".encode()).decode()
                headers |= {"Authorization": f"Basic {basic}", "Content-Encoding": "gzip"}
                body = gzip.compress(json.dumps(envelope).encode())
            else:  # the write key in the body
                body = json.dumps({"writeKey": self.key, **envelope}).encode()
            req = Request(protocol, "/v1/batch", body, headers, 200)
        with self._lock:
            self.links[ids[0]] = (anon, user)
        return req, set(ids)

    def _run(self, protocol: str) -> None:
        rate = self.rate / len(self.protocols)
        start = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=10) as client:
            n = 0
            while not self._stop.is_set():
                due = start + n / rate
                if (pause := due - time.monotonic()) > 0:
                    time.sleep(pause)
                req, ids = self._request(protocol, n)
                n += 1
                try:
                    self._deliver(client, req, ids, start)
                except AssertionError as exc:
                    with self._lock:
                        self.failures.append(f"{protocol}: {exc}")
                    return

    def _deliver(self, client: httpx.Client, req: Request, ids: set[uuid.UUID], start: float) -> None:
        with self._lock:
            self.sent |= ids
            self.protocol_of.update(dict.fromkeys(ids, req.protocol))
            seen = self.statuses_by_protocol.setdefault(req.protocol, Counter())
        deadline = time.monotonic() + self.give_up_after_s
        while time.monotonic() < deadline:
            try:
                resp = client.post(req.path, content=req.content, headers=req.headers)
            except httpx.HTTPError as exc:
                self._saw(seen, type(exc).__name__, start)
                time.sleep(0.2)
                continue
            self._saw(seen, resp.status_code, start)
            if resp.status_code == req.ok:
                answer = resp.json()
                acked = {uuid.UUID(i) for i in answer["event_ids"]}
                assert acked == ids, f"a {req.protocol} success must acknowledge exactly the events sent"
                assert not answer.get("rejected"), answer["rejected"]
                if req.protocol == "posthog":
                    assert answer["status"] == 1, answer
                elif req.protocol == "segment":
                    assert answer["success"] is True, answer
                with self._lock:
                    self.acknowledged |= acked
                return
            if resp.status_code in (429, 503):
                retry = resp.headers.get("Retry-After")
                if retry is None:
                    with self._lock:
                        self.retry_after_missing += 1
                time.sleep(min(float(retry or 1), 5))
                continue
            raise AssertionError(f"unexpected {resp.status_code} on {req.protocol}: {resp.text[:300]}")

    def saw(self, status: int | str) -> dict[str, int]:
        """How often each protocol's requests got `status` (an HTTP status or an httpx exception name)."""
        with self._lock:
            return {p: self.statuses_by_protocol.get(p, Counter())[status] for p in self.protocols}

    def _saw(self, seen: Counter, status: int | str, start: float) -> None:
        with self._lock:
            self.statuses[status] += 1
            seen[status] += 1
            self.timeline.append((time.monotonic() - start, status))


@dataclass
class Tally:
    sent: int
    acknowledged: int
    landed: int
    duplicated: int
    missing: int  # acknowledged, not landed
    links_acknowledged: int  # identify events acknowledged
    links_missing: int  # ... whose link is not in identity_links (with that event as its origin)


@dataclass
class Accounting:
    sent: int
    acknowledged: int
    landed: int
    duplicated: int
    missing: int  # acknowledged, not landed
    unacknowledged_landed: int  # landed although never acknowledged (only after a client gave up)
    protocols: dict[str, Tally] = field(default_factory=dict)

    def line(self, drill: str) -> str:
        per = "; ".join(
            f"{p} {t.sent}/{t.acknowledged}/{t.landed}/{t.duplicated} "
            f"(links {t.links_acknowledged}, missing {t.links_missing})"
            for p, t in self.protocols.items()
        )
        return (
            f"drill {drill}: sent {self.sent} acknowledged {self.acknowledged} landed {self.landed} "
            f"duplicated {self.duplicated} missing {self.missing} "
            f"(sent/acknowledged/landed/duplicated: {per})"
        )


def landed_counts(database_url: str, project_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Rows per landed event id of the project."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, count(*) FROM events WHERE project_id = %s GROUP BY event_id", (project_id,)
        ).fetchall()
    return {r[0]: r[1] for r in rows}


def recorded_links(database_url: str, project_id: uuid.UUID) -> dict[uuid.UUID, tuple[str, str]]:
    """The project's identity links by the event that made each (warehouse/identity.py)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT event_id, id_a, id_b FROM identity_links WHERE project_id = %s", (project_id,)
        ).fetchall()
    return {r[0]: (r[1], r[2]) for r in rows}


def landed_ids(database_url: str, project_id: uuid.UUID) -> tuple[set[uuid.UUID], int]:
    """Distinct event ids landed for the project, and how many rows exceed one per event id."""
    counts = landed_counts(database_url, project_id)
    return set(counts), sum(c - 1 for c in counts.values())


def settle(
    load: Load, database_url: str, project_id: uuid.UUID, drill: str, timeout: float = 120
) -> Accounting:
    """Wait until every acknowledged event landed (or the timeout), then account and record the result,
    in total and per protocol."""

    def all_landed() -> bool:
        return load.acknowledged <= landed_ids(database_url, project_id)[0]

    with contextlib.suppress(TimeoutError):  # the assertions on the accounting say what is missing
        wait_until(all_landed, timeout, "every acknowledged event landed", interval=0.5)
    time.sleep(1.0)  # anything landing twice would show up now
    counts = landed_counts(database_url, project_id)
    ids = set(counts)
    links = recorded_links(database_url, project_id)
    per: dict[str, Tally] = {}
    for protocol in load.protocols:
        sent = {i for i, p in load.protocol_of.items() if p == protocol}
        acked = load.acknowledged & sent
        per[protocol] = Tally(
            sent=len(sent),
            acknowledged=len(acked),
            landed=len(sent & ids),
            duplicated=sum(counts[i] - 1 for i in sent & ids),
            missing=len(acked - ids),
            links_acknowledged=len(acked & load.links.keys()),
            links_missing=sum(links.get(i) != load.links[i] for i in acked & load.links.keys()),
        )
    acc = Accounting(
        sent=len(load.sent),
        acknowledged=len(load.acknowledged),
        landed=len(ids),
        duplicated=sum(c - 1 for c in counts.values()),
        missing=len(load.acknowledged - ids),
        unacknowledged_landed=len(ids - load.acknowledged),
        protocols=per,
    )
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a") as f:
        entry = {"drill": drill, "at": datetime.now(UTC).isoformat(), **acc.__dict__}
        entry["protocols"] = {p: t.__dict__ for p, t in per.items()}
        entry["statuses"] = {
            p: {str(k): v for k, v in seen.items()} for p, seen in load.statuses_by_protocol.items()
        }
        f.write(json.dumps(entry) + "\n")
    print(acc.line(drill), entry["statuses"])
    return acc


def assert_exact(acc: Accounting, load: Load) -> None:
    assert not load.failures, load.failures
    assert acc.acknowledged > 0
    assert acc.missing == 0, acc
    assert acc.duplicated == 0, acc
    assert acc.landed == acc.acknowledged, acc
    assert acc.sent == acc.acknowledged, f"the client gave up on some events: {acc}"
    assert load.retry_after_missing == 0, "a 429/503 came without Retry-After"
    for protocol, tally in acc.protocols.items():
        assert tally.acknowledged > 0, f"no {protocol} request was acknowledged: the mix did not run"
        assert tally.missing == tally.duplicated == 0, (protocol, tally)
        assert tally.landed == tally.acknowledged == tally.sent, (protocol, tally)
        assert tally.links_acknowledged > 0 and tally.links_missing == 0, (protocol, tally)
