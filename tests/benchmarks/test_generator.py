"""Tests for the seeded benchmark event generator, its ground truth, writers and HTTP sender."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest

from benchmarks.generator import (
    MAX_AGE_DAYS,
    GeneratedEvent,
    GeneratorConfig,
    GroundTruth,
    generate,
    ground_truth_for,
    main,
    read_jsonl,
    send_http,
    tiered_tenants,
    write_ground_truth,
    write_jsonl,
)

# Sub-millisecond end on purpose: window bounds must hold exactly, not just to the millisecond.
END = datetime(2026, 11, 20, 12, 30, 5, 123456, tzinfo=UTC)
N = 20_000


def _cfg(**kw: object) -> GeneratorConfig:
    base: dict[str, object] = {"seed": 42, "end": END, "days": 7, "total_events": N}
    base.update(kw)
    return GeneratorConfig(**base)  # type: ignore[arg-type]


def _ts(ev: GeneratedEvent) -> datetime:
    return datetime.fromisoformat(ev.payload["timestamp"])


@pytest.fixture(scope="module")
def events() -> list[GeneratedEvent]:
    return list(generate(_cfg()))


def test_same_seed_same_stream_other_seed_differs(events: list[GeneratedEvent]) -> None:
    again = list(generate(_cfg()))
    assert again == events
    other = list(generate(_cfg(seed=43)))
    assert [e.payload["event_id"] for e in other] != [e.payload["event_id"] for e in events]


def test_event_shape(events: list[GeneratedEvent]) -> None:
    assert len(events) == N
    for ev in events[:500] + events[-500:]:
        p = ev.payload
        assert set(p) == {"event", "distinct_id", "timestamp", "event_id", "properties"}
        assert uuid.UUID(p["event_id"]).version == 4
        assert p["timestamp"].endswith("+00:00") and len(p["timestamp"]) == len(
            "2026-11-20T13:05:11.123000+00:00"
        )
        assert {"path", "plan", "country", "device"} <= set(p["properties"])
    purchases = [e.payload for e in events if e.payload["event"] == "purchase"]
    assert purchases and all(isinstance(p["properties"]["amount"], float) for p in purchases)
    assert all("amount" not in e.payload["properties"] for e in events if e.payload["event"] != "purchase")


def test_duplicate_and_late_ratios(events: list[GeneratedEvent]) -> None:
    dups = [e for e in events if e.is_duplicate]
    distinct = [e for e in events if not e.is_duplicate]
    late = [e for e in distinct if e.is_late]
    assert abs(len(dups) / len(events) - 0.01) < 0.002
    assert abs(len(late) / len(distinct) - 0.05) < 0.005


def test_duplicates_are_exact_later_resends(events: list[GeneratedEvent]) -> None:
    first: dict[str, tuple[int, GeneratedEvent]] = {}
    for i, ev in enumerate(events):
        eid = ev.payload["event_id"]
        if ev.is_duplicate:
            j, orig = first[eid]  # the original was emitted earlier
            assert j < i and orig.tenant == ev.tenant and orig.payload == ev.payload
            assert orig.payload is not ev.payload
        else:
            assert eid not in first
            first[eid] = (i, ev)


def test_ground_truth_excludes_duplicates(events: list[GeneratedEvent]) -> None:
    gt = ground_truth_for(events)
    distinct_ids = {(e.tenant, e.payload["event_id"]) for e in events}
    assert gt.total == len(distinct_ids) == N - sum(e.is_duplicate for e in events)
    assert gt.duplicates == sum(e.is_duplicate for e in events)
    assert sum(gt.day_totals.values()) == sum(gt.event_counts.values()) == gt.total
    for (tenant, day), n in gt.day_totals.items():
        assert 0 < gt.unique_users(tenant, day) <= n
    expected = Counter(
        (e.tenant, e.payload["timestamp"][:10], e.payload["event"]) for e in events if not e.is_duplicate
    )
    assert gt.event_counts == dict(expected)
    # Re-adding the whole stream (a full replay) changes nothing.
    for ev in events:
        assert not gt.add(ev)
    assert gt.total == len(distinct_ids)


def test_timestamps_within_window_and_late_at_end(events: list[GeneratedEvent]) -> None:
    start = END - timedelta(days=7)
    assert all(start <= _ts(e) < END for e in events)
    late_idx = [i for i, e in enumerate(events) if e.is_late and not e.is_duplicate]
    ontime_idx = [i for i, e in enumerate(events) if not e.is_late and not e.is_duplicate]
    assert max(ontime_idx) < min(late_idx)  # late uploads arrive after live traffic
    for i in late_idx:
        age = END - _ts(events[i])
        assert timedelta(hours=1) <= age <= timedelta(days=3)
    # Live traffic is emitted in timestamp order.
    live = [events[i].payload["timestamp"] for i in ontime_idx]
    assert live == sorted(live)


def test_long_window_is_clamped_to_max_age() -> None:
    evs = list(generate(_cfg(days=90, total_events=5_000)))
    oldest = min(_ts(e) for e in evs)
    assert END - oldest <= timedelta(days=MAX_AGE_DAYS)
    assert END - oldest > timedelta(days=MAX_AGE_DAYS - 2)
    assert max(_ts(e) for e in evs) < END


def test_default_end_is_now_and_future_end_rejected() -> None:
    cfg = GeneratorConfig(total_events=1_000)
    now = datetime.now(UTC)
    assert all(_ts(e) <= now for e in generate(cfg))
    with pytest.raises(ValueError):
        GeneratorConfig(end=now + timedelta(hours=1))
    with pytest.raises(ValueError):
        GeneratorConfig(end=datetime(2026, 1, 1))  # naive


def test_hot_tier_gets_sixty_percent(events: list[GeneratedEvent]) -> None:
    shares = Counter(e.tenant for e in events)
    assert abs(shares["hot"] / N - 0.6) < 0.02
    assert abs(shares["quiet"] / N - 0.1) < 0.02
    many = list(generate(_cfg(tenants=tiered_tenants(hot=2, medium=3, quiet=5), total_events=10_000)))
    by_tier = Counter(e.tenant.split("-")[0] for e in many)
    assert len({e.tenant for e in many}) == 10
    assert abs(by_tier["hot"] / len(many) - 0.6) < 0.02


def test_skew_users_names_and_bursts(events: list[GeneratedEvent]) -> None:
    names = Counter(e.payload["event"] for e in events)
    assert names.most_common(1)[0][0] == "page_view" and len(names) >= 15
    per_user = sorted(Counter(e.payload["distinct_id"] for e in events if e.tenant == "hot").values())
    top = per_user[-len(per_user) // 10 :]
    assert sum(top) / sum(per_user) > 0.3  # top 10 % of users: well over their 10 % share
    hours = sorted(Counter(e.payload["timestamp"][:13] for e in events if not e.is_late).values())
    assert hours[-1] > 2.5 * hours[len(hours) // 2]  # burst hour
    seconds = Counter(e.payload["timestamp"][:19] for e in events)
    assert seconds.most_common(1)[0][1] >= 5  # burst second vs ~0.03 events/s on average


def test_jsonl_and_ground_truth_round_trip(tmp_path: Path, events: list[GeneratedEvent]) -> None:
    path = tmp_path / "events.jsonl"
    assert write_jsonl(events, path) == N
    first = orjson.loads(path.read_bytes().split(b"\n", 1)[0])
    assert set(first) == {"tenant", "payload"}
    assert list(read_jsonl(path)) == events
    gt = ground_truth_for(read_jsonl(path))
    write_ground_truth(gt, tmp_path / "gt.json")
    loaded = GroundTruth.from_json((tmp_path / "gt.json").read_text())
    assert loaded == gt and loaded.total == gt.total
    assert loaded.to_json() == gt.to_json()


def test_cli_writes_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    argv = ["--events", "3000", "--days", "30", "--seed", "5", "--out", str(out), "--end", END.isoformat()]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "events/s" in text and "3000 emitted" in text
    gt = GroundTruth.from_json((out / "ground_truth.json").read_bytes())
    assert gt == ground_truth_for(read_jsonl(out / "events.jsonl"))


# ---------------------------------------------------------------------------------------- HTTP sender


class FlakyIngest:
    """Tiny ASGI stand-in for /v1/batch: fails the first `fail_first` calls, then accepts."""

    def __init__(self, fail_first: int = 1, status: int = 503, retry_after: str | None = "0") -> None:
        self.fail_first, self.status, self.retry_after = fail_first, status, retry_after
        self.calls = 0
        self.bodies: list[dict] = []
        self.received: Counter[str] = Counter()
        self.keys: Counter[str] = Counter()

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        assert scope["type"] == "http" and scope["path"] == "/v1/batch" and scope["method"] == "POST"
        body = b""
        while True:
            msg = await receive()
            body += msg.get("body", b"")
            if not msg.get("more_body"):
                break
        self.calls += 1
        self.bodies.append(orjson.loads(body))
        headers = [(b"content-type", b"application/json")]
        if self.calls <= self.fail_first:
            if self.retry_after is not None:
                headers.append((b"retry-after", self.retry_after.encode()))
            await send({"type": "http.response.start", "status": self.status, "headers": headers})
            await send({"type": "http.response.body", "body": b'{"error":"busy"}'})
            return
        doc = orjson.loads(body)
        assert datetime.fromisoformat(doc["sent_at"]).tzinfo is not None
        key = dict(scope["headers"])[b"x-api-key"].decode()
        for ev in doc["batch"]:
            self.received[ev["event_id"]] += 1
            self.keys[key] += 1
        resp = orjson.dumps({"accepted": len(doc["batch"]), "rejected": []})
        await send({"type": "http.response.start", "status": 202, "headers": headers})
        await send({"type": "http.response.body", "body": resp})


KEYS = {"hot": "k-hot", "medium": "k-medium", "quiet": "k-quiet"}


def _send(app: FlakyIngest, evs: list[GeneratedEvent], **kw: object):  # type: ignore[no-untyped-def]
    async def run():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await send_http(evs, "http://ingest", KEYS, client=client, **kw)  # type: ignore[arg-type]

    return asyncio.run(run())


@pytest.mark.parametrize("status", [503, 429])
def test_send_http_retries_and_delivers_each_event_once(status: int) -> None:
    evs = list(generate(_cfg(total_events=3_000)))
    app = FlakyIngest(fail_first=1, status=status)
    report = _send(app, evs, batch_size=200, concurrency=4)
    assert report.retries == 1 and report.http_errors == 1 and report.status_counts[status] == 1
    assert report.batches_failed == 0 and report.batches == report.batches_ok
    assert report.accepted == report.events_sent == len(evs)
    # Every emitted event (duplicates are re-sends in the stream) arrived exactly as often as emitted.
    assert app.received == Counter(e.payload["event_id"] for e in evs)
    assert len(app.received) == ground_truth_for(evs).total
    assert app.keys == Counter(KEYS[e.tenant] for e in evs)


def test_retry_resends_same_events_with_fresh_sent_at() -> None:
    evs = list(generate(_cfg(total_events=300)))
    app = FlakyIngest(fail_first=1, status=503, retry_after="0.05")
    report = _send(app, evs, batch_size=1_000, concurrency=1)
    assert report.retries == 1 and report.accepted == len(evs)
    failed, retried = app.bodies[0], app.bodies[1]
    assert failed["batch"] == retried["batch"]
    assert datetime.fromisoformat(retried["sent_at"]) > datetime.fromisoformat(failed["sent_at"])


def test_send_http_does_not_retry_other_4xx() -> None:
    evs = list(generate(_cfg(total_events=500)))
    app = FlakyIngest(fail_first=10**9, status=400)
    report = _send(app, evs, batch_size=100)
    assert report.retries == 0 and report.batches_failed == report.batches == app.calls
    assert report.accepted == 0 and report.events_failed == len(evs)


def test_send_http_gives_up_when_retry_after_exceeds_budget() -> None:
    evs = list(generate(_cfg(total_events=100)))
    app = FlakyIngest(fail_first=10**9, status=503, retry_after="120")
    report = _send(app, evs, batch_size=1_000, max_retry_seconds=1.0)
    assert report.batches == report.batches_failed == app.calls == 3  # one batch per tenant, no retry
    assert "gave up" in report.errors[0]


def test_send_http_retries_connection_errors() -> None:
    evs = list(generate(_cfg(total_events=400)))
    app = FlakyIngest(fail_first=0)

    class DropFirst(httpx.AsyncBaseTransport):
        def __init__(self) -> None:
            self.inner, self.dropped = httpx.ASGITransport(app=app), 0

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if self.dropped < 2:
                self.dropped += 1
                raise httpx.ConnectError("connection refused", request=request)
            return await self.inner.handle_async_request(request)

    async def run():  # type: ignore[no-untyped-def]
        async with httpx.AsyncClient(transport=DropFirst()) as client:
            return await send_http(evs, "http://ingest/", KEYS, batch_size=100, concurrency=2, client=client)

    report = asyncio.run(run())
    assert report.connection_errors == 2 and report.retries == 2
    assert report.accepted == len(evs) and app.received == Counter(e.payload["event_id"] for e in evs)


def test_send_http_unknown_tenant_raises() -> None:
    evs = list(generate(_cfg(total_events=100)))
    app = FlakyIngest(fail_first=0)

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            await send_http(evs, "http://ingest", {"hot": "k-hot"}, client=client)

    with pytest.raises(KeyError, match="no API key"):
        asyncio.run(run())
