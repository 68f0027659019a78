"""Per-key token bucket in Redis (one atomic Lua script), with an in-process fallback when Redis is down.

Fallback: each API process keeps its own buckets with the same rate and burst, so while Redis is unreachable
the effective limit per key is (number of API processes) x rate. Ingest keeps working; Redis is retried
after `RETRY_REDIS_AFTER_S`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

RETRY_REDIS_AFTER_S = 5.0

# Charges ARGV[3] ("cost") and, as a lease, up to ARGV[4] ("want") tokens; returns {granted, wait_seconds}.
# A request larger than the bucket passes once the bucket is full and leaves it in debt (negative), so
# big batches are charged every event and the long-run rate still holds.
# Redis's own clock (TIME) keeps all API processes on one time base.
BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local need = math.min(cost, burst)
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1]) or burst
local ts = tonumber(b[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - ts) * rate)
local granted = 0
local wait = 0
if tokens >= need then
  granted = math.max(cost, math.min(want, tokens))
  tokens = tokens - granted
else
  wait = (need - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return {tostring(granted), tostring(wait)}
"""

# Each process leases up to this many seconds' worth of a key's rate per Redis call, so a single-event
# request rarely pays a Redis round trip (it cost ~20 % of the request's CPU). The global limit holds to
# within one lease per API process.
LEASE_S = 0.05

# After a refusal, how long this process refuses the key in front of all request work (no body read, no JSON,
# no Redis call) even when the refused request itself could pass sooner. Why: a batch sender at 3x its limit
# is refused for ~5 ms a time (100 events at 20,000/s), so on the skew benchmark (benchmarks/skew.py, medium)
# about half of its 429s still read and decoded their body and asked Redis, and the requests queued on the
# key's lock each paid one more round trip. Held for HOLD_S, a process asks Redis about an over-limit key
# ~20 times a second and the lease it then gets covers several batches. Safe: every refused client was told
# Retry-After >= 1 s; at most half a burst refills during a hold, so the bucket never overflows and the key
# still gets its whole rate (the other API processes keep taking from the shared bucket meanwhile).
HOLD_S = 0.05

# For this long after the hold of a key's last refusal ended, `admit` leases the refused request's cost before the key's next
# request is read, so that its refusal, too, comes before the body (see `admit`).
RECENT_S = 1.0


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
        self._leases: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._empty_until: dict[
            str, float
        ] = {}  # key -> when the bucket has one token again, as last refused
        self._refused: dict[
            str, tuple[float, float]
        ] = {}  # key -> (cost, until when admit acts) of its last refusal

    async def redis_reachable(self) -> bool:
        if self._redis is None:
            return False
        try:
            await self._redis.ping()
            return True
        except (RedisError, OSError):
            return False

    @property
    def using_fallback(self) -> bool:
        return self._script is None or time.monotonic() < self._redis_down_until

    async def acquire(self, key_id: str, cost: float, rate: float, burst: float) -> float:
        """Take `cost` tokens; returns 0 when allowed, else the seconds to wait before retrying."""
        if not self.using_fallback:
            if self._take_leased(key_id, cost):
                return 0.0
            lock = self._locks.get(key_id)
            if lock is None:
                lock = self._locks[key_id] = asyncio.Lock()
            async with lock:  # one lease request per key at a time; waiters reuse what it brought
                if self._take_leased(key_id, cost):
                    return 0.0
                known = self.known_wait(key_id)
                if known > 0:  # refused while this request waited for the lock: no Redis call either
                    return known
                leased = self._leases.pop(key_id, 0.0)
                need = cost - leased
                want = max(need, min(burst, rate * LEASE_S))
                try:
                    granted, wait = await self._script(
                        keys=[f"pulseops:rl:{key_id}"], args=[rate, burst, need, want]
                    )
                except (RedisError, OSError) as exc:
                    log.warning("rate limiter: Redis unavailable (%s); per-process fallback", exc)
                    self._redis_down_until = time.monotonic() + RETRY_REDIS_AFTER_S
                    return self._acquire_local(key_id, cost, rate, burst)
                if float(granted) > 0:
                    self._leases[key_id] = self._leases.get(key_id, 0.0) + float(granted) - need
                    return 0.0
                self._leases[key_id] = self._leases.get(key_id, 0.0) + leased
                self._note_empty(key_id, cost, float(wait), rate, burst)
                return float(wait)
        return self._acquire_local(key_id, cost, rate, burst)

    async def admit(self, key_id: str, rate: float, burst: float) -> float:
        """Before a request's body is read: for a key refused no more than `RECENT_S` before, make sure this
        process's lease holds the refused request's cost (one Redis call when it does not). 0: read the
        request; else seconds to wait, and the key is held (`known_wait` > 0): the caller refuses it unread.

        Why: after a hold a key over its limit still had its next request read and decoded (100 events) only
        to be refused by Redis, as had every request of the key that was queued on its lease lock meanwhile
        (benchmarks/skew.py medium: 15-35 % of the hot tenant's 429s). An over-limit client sends the same
        batch again, so its last refused cost is what the next request will most likely cost; a different
        cost is settled by `acquire` after parsing, from the lease and then Redis, as before."""
        last = self._refused.get(key_id)
        if last is None or self.using_fallback:  # the fallback is in-process: nothing to save
            return 0.0
        cost, until = last
        if time.monotonic() > until:
            del self._refused[key_id]
            return 0.0
        if self._leases.get(key_id, 0.0) >= cost:
            return 0.0
        wait = await self.acquire(key_id, cost, rate, burst)
        if wait == 0:  # lent back: the request's own `acquire` takes it after parsing
            self._leases[key_id] = self._leases.get(key_id, 0.0) + cost
        return wait

    def _take_leased(self, key_id: str, cost: float) -> bool:
        leased = self._leases.get(key_id, 0.0)
        if leased >= cost:
            self._leases[key_id] = leased - cost
            return True
        return False

    def _acquire_local(self, key_id: str, cost: float, rate: float, burst: float) -> float:
        b = self._local.get(key_id)
        if b is None:
            b = self._local[key_id] = LocalBucket(burst)
        now = time.monotonic()
        b.tokens = min(burst, b.tokens + (now - b.ts) * rate)
        b.ts = now
        need = min(cost, burst)
        if b.tokens >= need:
            b.tokens -= cost  # may leave debt, like the Redis script
            return 0.0
        wait = (need - b.tokens) / rate
        self._note_empty(key_id, cost, wait, rate, burst)
        return wait

    def _note_empty(self, key_id: str, cost: float, wait: float, rate: float, burst: float) -> None:
        """Remember when a refused key's bucket can pay for the refused request again: until then
        `known_wait` refuses its requests without a Redis call or reading their bodies.

        Why the refused request's cost and not one token (the earlier rule): the next request's cost is
        unknown before its body is parsed, and a client over its limit sends the same batch again. With one
        token, almost no 429 of a batch sender was cheap: each read and decoded its body and asked Redis
        (measured in-process through the ASGI app, a key at 25x its limit with batches of 100: 0 of 1,248
        refusals cheap, ~320 us of CPU each against ~1.7 ms per accepted batch). The window is never longer
        than the Retry-After the refused client was given (`retry_after_header(wait)`), and it ignores what
        other processes take from the shared bucket. It lasts at least `HOLD_S` (capped at half a burst's
        refill, so a small bucket cannot overflow meanwhile): at most that long a request that could pass is
        refused, far less than the Retry-After (>= 1 s) its key's last refusal carried."""
        now = time.monotonic()
        if wait > 0:
            if len(self._empty_until) > 100_000:  # bound memory against floods of random keys
                self._empty_until.clear()
                self._refused.clear()
            held = self._empty_until[key_id] = now + max(wait, min(HOLD_S, 0.5 * burst / rate))
            self._refused[key_id] = (cost, held + RECENT_S)

    def known_wait(self, key_id: str) -> float:
        """Seconds until this key's bucket, as this process last saw it refuse, can pay for the refused request
        (0: unknown or ready). Never a Redis call: this is the cheap refusal in front of all request work."""
        until = self._empty_until.get(key_id)
        if until is None:
            return 0.0
        left = until - time.monotonic()
        if left <= 0:
            del self._empty_until[key_id]
            return 0.0
        return left


def retry_after_header(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
