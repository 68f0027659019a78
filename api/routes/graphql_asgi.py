"""Whole-answer cache hits of `POST /graphql` as a plain ASGI handler, before FastAPI.

Why: a hit of api/graphql/response_cache.py costs a dictionary lookup and a version check, yet it still went
through the metrics middleware, FastAPI's routing, dependency solving (`get_context`), Request objects and
Strawberry's router around them; at the large size hits stayed above issue 16's p95 targets while the same
client's GET /healthz was well under them. This front makes the same decisions in the same order as that path
(`get_context` and `_Router.run` in api/routes/graphql.py) and answers only a hit: the key from `X-API-Key` or
`Authorization: Bearer` as found in the key cache (a key not cached, unknown, revoked or not a read key is
left to the framework, which answers as before), the per-key rate limit, the body cap, then the entry named
by the read key's id, schema, Content-Type, Accept and exact body (so a tenant's key never names another
key's entry), valid only while the key still reads every project as stored and every data version is
unchanged. Everything else — a miss, a mutation, GET, WebSocket, any refusal — is handed to FastAPI with the
body replayed; the scope then says what the front already did (`FRONT_RATE`, `FRONT_LOOKUP`), so a request
is charged to the rate limit once, parsed for the cache once and looked up once.
"""

from __future__ import annotations

import logging

from prometheus_client.metrics import Counter
from starlette.datastructures import State
from starlette.types import Message, Receive, Scope, Send

from api import metrics
from api.graphql.response_cache import ResponseCache
from api.routes.graphql import FRONT_LOOKUP, FRONT_RATE, MAX_BODY_BYTES

log = logging.getLogger(__name__)

PATH = "/graphql"
_WANTED = frozenset({b"x-api-key", b"authorization", b"content-type", b"accept", b"content-length"})
_answered: list[Counter] = []  # the request counter of answered hits, made on first use (per process)


def _headers(scope: Scope) -> dict[bytes, str]:
    """The first value of each wanted header, as Starlette's `Headers.get` returns it."""
    out: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in out:
            out[name] = value.decode("latin-1")
    return out


def _supplied_key(headers: dict[bytes, str]) -> str | None:
    """`key_from_headers` of api/security.py over the raw headers."""
    key = headers.get(b"x-api-key")
    if key:
        return key
    scheme, _, token = headers.get(b"authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """`receive` for the framework: the messages the front already took, then the connection's own."""
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed


async def _read(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The body's messages, and the body if it arrived whole within `MAX_BODY_BYTES` (else None)."""
    messages: list[Message] = []
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return messages, None  # a disconnect: the framework answers it as before
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return messages, None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return messages, b"".join(chunks)


async def serve_hit(
    state: State, responses: ResponseCache, scope: Scope, receive: Receive, send: Send
) -> Receive | None:
    """Answer a `POST /graphql` whole-answer cache hit and return None; else return the `receive` the
    framework must use for the request (the body replayed if it was read). Never raises."""
    messages: list[Message] = []
    try:
        stored = await _lookup(state, responses, scope, receive, messages)
    except Exception:
        log.exception("GraphQL cache front failed; the framework answers the request")
        stored = None
    if stored is None:
        return _replay(messages, receive) if messages else receive
    if not _answered:
        _answered.append(metrics.REQUESTS.labels(route=PATH, status="200"))
    _answered[0].inc()
    # what `Response(stored, media_type="application/json")` of api/routes/graphql.py sends
    headers = [(b"content-length", str(len(stored)).encode()), (b"content-type", b"application/json")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": stored})
    return None


async def _lookup(
    state: State, responses: ResponseCache, scope: Scope, receive: Receive, messages: list[Message]
) -> bytes | None:
    """The stored answer, in `get_context`'s and `_Router.run`'s order; the body's messages go to `messages`."""
    headers = _headers(scope)
    supplied = _supplied_key(headers)
    if not supplied:
        return None
    found, key = state.key_cache.cached(supplied)
    if not found or key is None or key.kind != "read":
        return None  # not cached (the framework looks it up), or refused: 401/403 as before
    length = headers.get(b"content-length", "")
    if not length.isdigit() or int(length) > MAX_BODY_BYTES:
        return None  # chunked or too large: the framework charges, reads and refuses as before
    services = state.reads
    q = services.settings.query
    wait = await services.limiter.acquire(
        f"read:{key.id}", 1, key.rate_per_s or q.rate_per_s, key.burst or q.burst
    )
    scope[FRONT_RATE] = (key.id, wait)
    if wait > 0 or not services.cache.available:
        return None  # 429, or the cache steps aside ("bypass"): both counted by the framework's path
    taken, body = await _read(receive)
    messages.extend(taken)
    if body is None:
        return None
    if not responses.may_store(body):
        scope[FRONT_LOOKUP] = None
        return None
    name = responses.key(key.id, headers.get(b"content-type", ""), headers.get(b"accept", ""), body)
    stored = await responses.get(name, services, key)
    if stored is None:
        scope[FRONT_LOOKUP] = name
    return stored
