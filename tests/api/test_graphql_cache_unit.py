"""The version memo that bounds cache staleness, and the in-process copy in front of Redis."""

from __future__ import annotations

import time

from api.graphql.cache import VersionMemo


def test_entries_expire_ttl_after_the_read_and_never_go_back_to_an_older_read():
    memo = VersionMemo(1.0)
    now = time.monotonic()
    memo.put(("p", 1), "v2", read_at=now)
    memo.put(("p", 1), "v1", read_at=now - 0.5)  # a slower request that read earlier finishes later
    assert memo.get(("p", 1)) == "v2"
    memo.put(("p", 2), "old", read_at=now - 1.5)  # read longer ago than the bound: not kept at all
    assert memo.get(("p", 2)) is None
    memo.put(("p", 3), "v", read_at=now - 0.95)
    time.sleep(0.1)
    assert memo.get(("p", 3)) is None  # expired 1 s after it was read, not after it was stored
    assert VersionMemo(0).get(("p", 1)) is None


def test_the_in_process_copy_can_be_turned_off_so_every_hit_is_a_redis_hit(redis_url):
    """`query.local_cache_entries = 0`: repeats go to Redis (the query benchmark measures Redis hits this way);
    by default a repeat is served from the process's own copy, as counted in `pulseops_graphql_cache_total`."""
    import asyncio
    import uuid

    from redis.asyncio import Redis

    from api.graphql.cache import LOOKUPS, QueryCache

    def count(result: str) -> float:
        return LOOKUPS.labels("unit", result)._value.get()

    async def repeat(local_entries: int) -> tuple[float, float]:
        redis = Redis.from_url(redis_url)
        try:
            cache = QueryCache(redis, 60, local_entries)
            key = f"pulseops:gql:test:{uuid.uuid4()}"
            await cache.put(key, {"n": 1})
            before = count("local_hit"), count("hit")
            for _ in range(3):
                assert await cache.get(key, "unit", dict) == {"n": 1}
            return count("local_hit") - before[0], count("hit") - before[1]
        finally:
            await redis.aclose()

    assert asyncio.run(repeat(1000)) == (3, 0)
    assert asyncio.run(repeat(0)) == (0, 3)
