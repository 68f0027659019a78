"""Per-key rate limits: through the API (real Redis, and the in-process fallback when Redis is down) and
the RateLimiter itself against real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator

import httpx
import psycopg
import pytest
from fastapi.testclient import TestClient
from redis.asyncio import Redis

from api.main import create_app
from api.ratelimit import HOLD_S, LEASE_S, RateLimiter, retry_after_header
from tests.fixtures.system import make_settings
from tests.utils.tenants import make_tenant, new_event
from warehouse.tenants import create_api_key

RATE, BURST = 5, 10


def limited_key(db: psycopg.Connection, tenant: dict) -> str:
    _, key = create_api_key(
        db,
        org_id=tenant["org_id"],
        project_id=tenant["project_id"],
        kind="ingest",
        rate_per_s=RATE,
        burst=BURST,
    )
    return key


def send(client: TestClient, key: str, n: int = 1) -> httpx.Response:
    if n == 1:
        return client.post("/v1/events", json=new_event(), headers={"X-API-Key": key})
    return client.post(
        "/v1/batch", json={"batch": [new_event() for _ in range(n)]}, headers={"X-API-Key": key}
    )


def assert_rate_limited(resp: httpx.Response) -> int:
    """429 with an integer Retry-After >= 1 and the JSON error naming X-API-Key; returns Retry-After."""
    assert resp.status_code == 429, resp.text
    retry_after = resp.headers["Retry-After"]
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    body = resp.json()
    assert body["error"] == "rate_limited"
    assert [d["field"] for d in body["detail"]] == ["X-API-Key"]
    assert "5 events/s" in body["detail"][0]["reason"]
    return int(retry_after)


@pytest.fixture
def app_client(db: psycopg.Connection, database_url: str, broker: str, redis_url: str) -> Iterator[tuple]:
    tenant = make_tenant(db)
    with TestClient(create_app(make_settings(database_url, broker, redis_url))) as client:
        yield client, tenant


def test_burst_passes_then_429_with_retry_after_then_passes_again(app_client: tuple, db) -> None:
    client, tenant = app_client
    key = limited_key(db, tenant)
    resp = send(client, key, BURST)
    assert resp.status_code == 202, resp.text
    assert resp.json()["accepted"] == BURST
    wait = assert_rate_limited(send(client, key))
    assert_rate_limited(send(client, key, 2))  # batches are limited too
    time.sleep(wait)
    assert send(client, key).status_code == 202


def test_exhausted_key_is_refused_before_its_body_is_read(app_client: tuple, db) -> None:
    """A key known to be empty gets its 429 before any request work: a body that would be a 422 (or a 413)
    is not even read, so a hot tenant over its limit costs one lookup per request."""
    client, tenant = app_client
    key = limited_key(db, tenant)
    assert send(client, key, BURST).status_code == 202
    wait = assert_rate_limited(send(client, key))  # this process learns the bucket is empty
    garbage = {"X-API-Key": key, "Content-Type": "application/json"}
    assert_rate_limited(client.post("/v1/events", content=b"{not json", headers=garbage))
    assert_rate_limited(client.post("/v1/batch", content=b"x" * (2 * 1024**2), headers=garbage))
    # Other keys are not affected, and the key itself passes once its bucket refilled.
    assert send(client, tenant["ingest_key"]).status_code == 202
    time.sleep(wait)
    bad = client.post("/v1/events", content=b"{not json", headers=garbage)
    assert bad.status_code == 422, bad.text


def test_a_refused_batch_keeps_its_repeats_cheap_until_it_could_pass(app_client: tuple, db) -> None:
    """A batch sender over its limit sends the same batch again: each repeat is refused before its body is
    read until the bucket could pay for the refused batch (not merely for one event), and never longer than
    the Retry-After it was given."""
    client, tenant = app_client
    key = limited_key(db, tenant)
    assert send(client, key, BURST).status_code == 202
    refused_at = time.monotonic()
    retry_after = assert_rate_limited(send(client, key, 5))  # 5 events at 5/s: about 1 s until it could pass
    time.sleep(0.4)  # two tokens back: a single event would pass, the refused batch would not
    garbage = {"X-API-Key": key, "Content-Type": "application/json"}
    assert time.monotonic() - refused_at < 0.9
    assert_rate_limited(client.post("/v1/batch", content=b"{not json", headers=garbage))  # body never read
    time.sleep(max(0.0, refused_at + min(retry_after, 1.0) + 0.1 - time.monotonic()))
    bad = client.post("/v1/batch", content=b"{not json", headers=garbage)
    assert bad.status_code == 422, bad.text  # read again once the refused batch could pass
    assert send(client, key, 5).status_code == 202


def test_limits_are_per_key(app_client: tuple, db) -> None:
    client, tenant = app_client
    first, second = limited_key(db, tenant), limited_key(db, tenant)
    assert send(client, first, BURST).status_code == 202
    assert_rate_limited(send(client, first))
    # The other key of the same project still has its whole burst.
    assert send(client, second, BURST).status_code == 202
    assert_rate_limited(send(client, second))
    # A key without its own limits uses the (large) defaults.
    assert send(client, tenant["ingest_key"], 50).status_code == 202


def test_batch_larger_than_burst_is_charged_for_every_event(app_client: tuple, db) -> None:
    client, tenant = app_client
    key = limited_key(db, tenant)
    accepted = 0
    for attempt in range(2):
        if attempt:
            time.sleep(BURST / RATE + 0.2)  # a full bucket's refill
        resp = send(client, key, 100)
        if resp.status_code == 202:
            accepted += resp.json()["accepted"]
    # Over ~2.2 s a 5/s key with burst 10 may pass about 21 events, however it slices them. Even a
    # limiter that lets one oversized batch through on credit must then block the key for 18 s.
    assert accepted <= 100


def test_redis_down_falls_back_to_a_local_limit(
    db: psycopg.Connection, database_url: str, broker: str
) -> None:
    tenant = make_tenant(db)
    settings = make_settings(database_url, broker, "redis://127.0.0.1:1/0")  # nothing listens on port 1
    key = limited_key(db, tenant)
    with TestClient(create_app(settings)) as client:
        resp = send(client, tenant["ingest_key"])
        assert resp.status_code == 202, resp.text
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"]["rate_limiter"] == "fallback"
        # The fallback still limits.
        assert send(client, key, BURST).status_code == 202
        wait = assert_rate_limited(send(client, key))
        time.sleep(wait)
        assert send(client, key).status_code == 202


# -- RateLimiter against real Redis ------------------------------------------------------------------------


def run_with_redis(redis_url: str, scenario) -> None:
    async def main() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await scenario(redis)
        finally:
            await redis.aclose()

    asyncio.run(main())


def test_redis_bucket_refills_over_time(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        limiter = RateLimiter(redis)
        key = uuid.uuid4().hex
        rate, burst = 4, 2
        assert [await limiter.acquire(key, 1, rate, burst) for _ in range(2)] == [0.0, 0.0]
        wait = await limiter.acquire(key, 1, rate, burst)
        assert 0.15 < wait <= 0.25  # one token at 4/s
        assert not limiter.using_fallback
        assert await redis.exists(f"pulseops:rl:{key}")
        await asyncio.sleep(0.3)  # 1.2 tokens back
        assert await limiter.acquire(key, 1, rate, burst) == 0.0
        wait = await limiter.acquire(key, 1, rate, burst)
        assert 0 < wait <= 0.25
        await asyncio.sleep(1.0)  # 4 tokens' worth of time, but the bucket holds 2
        assert await limiter.acquire(key, 2, rate, burst) == 0.0
        assert await limiter.acquire(key, 1, rate, burst) > 0

    run_with_redis(redis_url, scenario)


def test_redis_bucket_is_shared_by_api_processes(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        first, second = RateLimiter(redis), RateLimiter(redis)  # two API processes, one Redis
        key = uuid.uuid4().hex
        assert await first.acquire(key, 4, 2, 4) == 0.0
        wait = await second.acquire(key, 1, 2, 4)
        assert 0.3 < wait <= 0.5
        other = uuid.uuid4().hex
        assert await second.acquire(other, 4, 2, 4) == 0.0  # another key has its own bucket

    run_with_redis(redis_url, scenario)


def test_redis_bucket_expires_once_it_would_be_full(redis_url: str) -> None:
    async def scenario(redis: Redis) -> None:
        limiter = RateLimiter(redis)
        key = uuid.uuid4().hex
        assert await limiter.acquire(key, 1, 10, 5) == 0.0
        ttl_ms = await redis.pttl(f"pulseops:rl:{key}")
        assert 0 < ttl_ms <= 5 / 10 * 1000 + 1000

    run_with_redis(redis_url, scenario)


def test_limiter_without_redis_limits_in_process() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(None)
        assert limiter.using_fallback
        assert await limiter.acquire("k", 2, 10, 2) == 0.0
        wait = await limiter.acquire("k", 1, 10, 2)
        assert 0.05 < wait <= 0.1
        await asyncio.sleep(0.15)
        assert await limiter.acquire("k", 1, 10, 2) == 0.0

    asyncio.run(scenario())


def test_known_wait_follows_the_last_refusal() -> None:
    async def scenario() -> None:
        limiter = RateLimiter(None)
        assert limiter.known_wait("k") == 0.0  # never refused: unknown, so not refused cheaply
        assert await limiter.acquire("k", 2, 10, 2) == 0.0
        assert limiter.known_wait("k") == 0.0  # granted: nothing known to be empty
        wait = await limiter.acquire("k", 2, 10, 2)  # a refused batch of 2 ...
        assert 0.15 < wait <= 0.2
        # ... is refused cheaply until the bucket could pay for it again: the client sends the same again
        assert wait - 0.01 < limiter.known_wait("k") <= wait
        assert limiter.known_wait("other") == 0.0
        await asyncio.sleep(0.11)  # one token back: still known too short for the refused batch
        assert 0 < limiter.known_wait("k") <= wait - 0.1
        await asyncio.sleep(wait - 0.1)
        assert limiter.known_wait("k") == 0.0
        assert await limiter.acquire("k", 2, 10, 2) == 0.0

    asyncio.run(scenario())


# -- cheap refusals: the hold after a refusal ------------------------------------------------------------


class CountingLimiter(RateLimiter):
    """A RateLimiter that counts its Redis script calls (the round trips a refusal should not need)."""

    def __init__(self, redis: Redis | None) -> None:
        super().__init__(redis)
        self.calls = 0
        script = self._script

        async def counted(**kwargs):
            self.calls += 1
            return await script(**kwargs)

        self._script = counted


def test_a_refusal_holds_the_key_for_hold_s_without_redis(redis_url: str) -> None:
    """A refused 1-event request could pass again after 10 ms (100/s); its key's later requests are refused
    without a Redis call for HOLD_S (well under the Retry-After of 1 s), then its budget returns."""

    async def scenario(redis: Redis) -> None:
        limiter = CountingLimiter(redis)
        key, rate, burst = uuid.uuid4().hex, 100, 20
        assert await limiter.acquire(key, 20, rate, burst) == 0.0
        wait = await limiter.acquire(key, 1, rate, burst)
        assert 0 < wait <= 0.011
        assert retry_after_header(wait) == "1"
        calls = limiter.calls
        assert HOLD_S - 0.01 < limiter.known_wait(key) <= HOLD_S
        assert await limiter.acquire(key, 1, rate, burst) > 0  # refused from the note, not from Redis
        assert limiter.calls == calls
        await asyncio.sleep(HOLD_S + 0.01)
        assert limiter.known_wait(key) == 0.0
        assert await limiter.acquire(key, 1, rate, burst) == 0.0  # the key's budget returned
        assert limiter.calls == calls + 1

    run_with_redis(redis_url, scenario)


def test_the_hold_never_lets_a_small_bucket_overflow(redis_url: str) -> None:
    """A bucket that refills in under two holds (burst 2 at 100/s: 20 ms) is held for half its refill only."""

    async def scenario(redis: Redis) -> None:
        limiter = RateLimiter(redis)
        key = uuid.uuid4().hex
        assert await limiter.acquire(key, 2, 100, 2) == 0.0
        assert await limiter.acquire(key, 1, 100, 2) > 0
        assert 0.009 < limiter.known_wait(key) <= 0.011

    run_with_redis(redis_url, scenario)


def test_requests_queued_behind_a_refusal_do_not_ask_redis(redis_url: str) -> None:
    """Requests of one key that waited for its lease lock while the lock holder was refused are refused
    from that answer: one Redis round trip for the lot, not one each."""

    async def scenario(redis: Redis) -> None:
        limiter = CountingLimiter(redis)
        key = uuid.uuid4().hex
        assert await limiter.acquire(key, 10, 5, 10) == 0.0
        calls = limiter.calls
        waits = await asyncio.gather(*(limiter.acquire(key, 1, 5, 10) for _ in range(20)))
        assert all(w > 0 for w in waits)
        assert limiter.calls == calls + 1

    run_with_redis(redis_url, scenario)


def test_two_processes_share_a_hot_keys_limit_with_the_hold(redis_url: str) -> None:
    """Two API processes (two limiters, one Redis) each offered 3x the key's rate in batches of 10: together
    they pass the key's rate plus its burst, no more, and the hold does not starve it below its rate."""

    async def scenario(redis: Redis) -> None:
        first, second = RateLimiter(redis), RateLimiter(redis)
        key, rate, burst, seconds = uuid.uuid4().hex, 2_000, 2_000, 1.5
        passed = [0, 0]

        async def offer(i: int, limiter: RateLimiter) -> None:
            start = time.monotonic()
            sent = 0
            while time.monotonic() - start < seconds:
                due = start + sent * 10 / (1.5 * rate)  # each process offers 1.5x: 3x together
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                sent += 1
                if limiter.known_wait(key) == 0 and await limiter.acquire(key, 10, rate, burst) == 0:
                    passed[i] += 10

        await asyncio.gather(offer(0, first), offer(1, second))
        total = sum(passed)
        # a lease can hold up to LEASE_S of the rate per process beyond the bucket
        assert total <= rate * seconds + burst + 2 * rate * LEASE_S
        assert total >= 0.9 * (rate * seconds + burst), passed
        assert min(passed) > 0.25 * total, passed  # both processes get a share

    run_with_redis(redis_url, scenario)


def test_redis_going_down_keeps_refusing_with_the_local_hold() -> None:
    """Redis unreachable mid-way: the per-process fallback limits and holds refusals the same way, and the
    key's budget returns after the hold."""

    async def scenario() -> None:
        redis = Redis.from_url("redis://127.0.0.1:1/0")  # nothing listens on port 1
        limiter = RateLimiter(redis)
        try:
            key = uuid.uuid4().hex
            assert await limiter.acquire(key, 20, 100, 20) == 0.0  # Redis fails: the local bucket passes it
            assert limiter.using_fallback
            wait = await limiter.acquire(key, 1, 100, 20)
            assert 0 < wait <= 0.011
            assert HOLD_S - 0.01 < limiter.known_wait(key) <= HOLD_S
            await asyncio.sleep(HOLD_S + 0.01)
            assert await limiter.acquire(key, 1, 100, 20) == 0.0
        finally:
            await redis.aclose()

    asyncio.run(scenario())


def test_a_key_another_process_drained_is_refused_before_its_body_is_read(
    db: psycopg.Connection, database_url: str, broker: str, redis_url: str
) -> None:
    """Two API processes share a key's bucket in Redis. When the hold after a refusal has passed but the
    other process took the tokens meanwhile, the key's next request is refused before its body is read (a
    body that would be a 422 gets the 429); once the budget really returned, it is read and charged."""
    tenant = make_tenant(db)
    key = limited_key(db, tenant)
    garbage = {"X-API-Key": key, "Content-Type": "application/json"}
    settings = make_settings(database_url, broker, redis_url)
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        assert send(first, key, BURST).status_code == 202
        refused_at = time.monotonic()
        assert assert_rate_limited(send(first, key, 5)) == 1  # 5 events at 5/s: 1 s until it could pass
        time.sleep(max(0.0, refused_at + 1.05 - time.monotonic()))
        assert send(second, key, 5).status_code == 202  # the other process takes what refilled
        assert_rate_limited(first.post("/v1/batch", content=b"{not json", headers=garbage))
        time.sleep(1.1)
        bad = first.post("/v1/batch", content=b"{not json", headers=garbage)
        assert bad.status_code == 422, bad.text  # budget back: read, and refused for what it is
        assert send(first, key, 5).status_code == 202  # charged from what was leased before the read
        assert_rate_limited(send(second, key, 5))


def test_admit_leases_the_last_refused_cost_once(redis_url: str) -> None:
    """`admit` asks Redis only for a key refused lately and only while this process's lease cannot pay the
    refused cost; what it leases pays the request's own `acquire`; a bucket another process drained is
    refused by it."""

    async def scenario(redis: Redis) -> None:
        limiter, other = CountingLimiter(redis), RateLimiter(redis)
        key, rate, burst = uuid.uuid4().hex, 100, 20
        assert await limiter.admit(key, rate, burst) == 0.0  # never refused: no call
        assert limiter.calls == 0
        assert await limiter.acquire(key, 20, rate, burst) == 0.0
        assert await limiter.acquire(key, 10, rate, burst) > 0  # refused: 10 events, 0.1 s
        calls = limiter.calls
        assert await limiter.admit(key, rate, burst) > 0  # held: refused from the note
        assert limiter.calls == calls
        await asyncio.sleep(0.11)  # 11 tokens back
        assert await limiter.admit(key, rate, burst) == 0.0
        assert limiter.calls == calls + 1
        assert await limiter.admit(key, rate, burst) == 0.0  # the lease pays it: no call
        assert await limiter.acquire(key, 10, rate, burst) == 0.0
        assert limiter.calls == calls + 1
        assert await limiter.acquire(key, 10, rate, burst) > 0  # empty again (a call)
        await asyncio.sleep(0.11)
        assert await other.acquire(key, 10, rate, burst) == 0.0  # another process takes what refilled
        assert await limiter.admit(key, rate, burst) > 0
        assert limiter.calls == calls + 3
        assert limiter.known_wait(key) > 0

    run_with_redis(redis_url, scenario)
