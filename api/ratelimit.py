"""Per-key token bucket in Redis (one atomic Lua script), with an in-process fallback when Redis is down.

Fallback: each API process keeps its own buckets with the same rate and burst, so while Redis is unreachable
the effective limit per key is (number of API processes) x rate. Ingest keeps working; Redis is retried
after `RETRY_REDIS_AFTER_S`.
"""

from __future__ import annotations

import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RETRY_REDIS_AFTER_S = 5.0

# Redis's own clock (TIME) keeps all API processes on one time base.
BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= cost then
  tokens = tokens - cost
else
  wait = (cost - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return tostring(wait)
"""


class LocalBucket:
    __slots__ = ("tokens", "ts")

    def __init__(self, burst: float) -> None:
        self.tokens = burst
        self.ts = time.monotonic()


class RateLimiter:
    def __init__(self, redis: Redis | None) -> None:
        self._redis = redis
        self._script = redis.register_script(BUCKET_LUA) if redis is not None else None
        self._redis_down_until = 0.0
        self._local: dict[str, LocalBucket] = {}

    @property
    def using_fallback(self) -> bool:
        return self._script is None or time.monotonic() < self._redis_down_until

    async def acquire(self, key_id: str, cost: float, rate: float, burst: float) -> float:
        """Take `cost` tokens; returns 0 when allowed, else the seconds to wait before retrying."""
        cost = min(cost, burst)  # a request larger than the bucket must still pass eventually
        if not self.using_fallback:
            try:
                wait = await self._script(keys=[f"pulseops:rl:{key_id}"], args=[rate, burst, cost])
                return float(wait)
            except (RedisError, OSError) as exc:
                log.warning("rate limiter: Redis unavailable (%s); per-process fallback", exc)
                self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
        return self._acquire_local(key_id, cost, rate, burst)

    def _acquire_local(self, key_id: str, cost: float, rate: float, burst: float) -> float:
        b = self._local.get(key_id)
        if b is None:
            b = self._local[key_id] = LocalBucket(burst)
        now = time.monotonic()
        b.tokens = min(burst, b.tokens + (now - b.ts) * rate)
        b.ts = now
        if b.tokens >= cost:
            b.tokens -= cost
            return 0.0
        return (cost - b.tokens) / rate


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
