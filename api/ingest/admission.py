"""The rate limit's part that runs before an ingest request's body is read (both entry points: the pure-ASGI
fast path, api/ingest/asgi.py, and the FastAPI routes, api/routes/ingest.py).

A key over its limit is refused here with 429 and Retry-After, unread: from this process's note of its last
refusal (`RateLimiter.known_wait`, a dict lookup), or, for a key refused within the last second, from one
Redis call for the cost of the request refused last (`RateLimiter.admit`). Why: a hot tenant at 3x its limit
must not spend the CPU that quiet tenants' requests need on reading and decoding batches that are refused
anyway (benchmarks/skew.py).
"""

from __future__ import annotations

from api.ingest.service import IngestServices, key_limits, refuse_if_exhausted
from warehouse.tenants import ApiKeyRow


async def refuse_before_body(svc: IngestServices, key: ApiKeyRow) -> None:
    """Raise the 429 ApiError (Retry-After, the error naming X-API-Key) when the key is known to be over its
    limit; otherwise return, and the request's body is read and its exact cost charged after parsing."""
    refuse_if_exhausted(svc, key)
    rate, burst = key_limits(key, svc.settings)
    if await svc.limiter.admit(str(key.id), rate, burst) > 0:
        refuse_if_exhausted(svc, key)
