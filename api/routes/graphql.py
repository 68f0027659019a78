"""`/graphql`: queries and mutations over HTTP POST, subscriptions over WebSocket."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import Response, StreamingResponse
from starlette.websockets import WebSocketDisconnect
from strawberry.fastapi import GraphQLRouter
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.unset import UNSET

from api.deps import authenticate
from api.errors import ApiError
from api.graphql.cache import Recording
from api.graphql.context import Context, ReadServices
from api.graphql.response_cache import RESPONSES, ResponseCache
from api.graphql.schema import build_schema
from api.metrics import WS_DISCONNECTS
from api.ratelimit import retry_after_header
from api.security import key_from_headers
from pulseops.settings import QuerySettings

# A query needs a few KiB. The token limit does not bound the body: comments, whitespace and string values
# cost no or one token, so a 10 MB document used to be read and parsed (seconds of CPU). Same cap as the
# dashboard relay.
MAX_BODY_BYTES = 256 * 1024

# Left in the ASGI scope by the cache-hit front (api/routes/graphql_asgi.py) when it hands a request on, so
# that the request is charged once, parsed for the cache once and looked up once: (read key id, the rate
# limiter's wait), and the entry name it looked up and missed, or None for a body that may not be stored.
FRONT_RATE = "pulseops.graphql.rate"
FRONT_LOOKUP = "pulseops.graphql.lookup"


async def _read_capped(request: Request, limit: int = MAX_BODY_BYTES) -> None:
    """Read the body now, refusing more than `limit` bytes (413, plain JSON) without buffering the rest; the
    GraphQL view then reads it from Starlette's per-request cache (`Request._body`)."""
    length = request.headers.get("content-length", "")
    too_large = ApiError(413, "payload_too_large", [("body", f"larger than {limit} bytes")])
    if length.isdigit() and int(length) > limit:
        raise too_large
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(
            400, "client_disconnected", [("body", "connection closed before the body was read")]
        ) from None
    request._body = b"".join(chunks)


class _TransportWS(BaseGraphQLTransportWSHandler):
    """A client leaving mid-subscription is normal (a closed tab): counted, never logged as a crash."""

    async def shutdown(self) -> None:
        if self.operations:  # the message loop ended with subscriptions streaming: the client went away
            WS_DISCONNECTS.inc()
        await super().shutdown()

    async def handle_task_exception(self, error: Exception) -> None:
        # a push to a client that is gone (ClientDisconnected is an OSError)
        if isinstance(error, WebSocketDisconnected | WebSocketDisconnect | OSError):
            return
        await super().handle_task_exception(error)


class _Router(GraphQLRouter):
    graphql_transport_ws_handler_class = _TransportWS

    def __init__(self, *args: Any, responses: ResponseCache, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.responses = responses

    async def run(self, request: Any, context: Any = UNSET, root_value: Any = UNSET) -> Any:
        """A POST with a read key is answered from the whole-answer cache when a stored answer is still exact
        (api/graphql/response_cache.py); `get_context` has already checked the key, the rate limit and the
        body size. Otherwise it is executed, and its answer stored when every part of it may be."""
        if not isinstance(request, Request) or not isinstance(context, Context) or request.method != "POST":
            return await super().run(request, context, root_value)
        read_key, services = context.read_key, context.services
        if read_key is None:
            return await super().run(request, context, root_value)
        if not services.cache.available:
            RESPONSES.labels("bypass").inc()
            return await super().run(request, context, root_value)
        body = await request.body()
        front = request.scope.pop(FRONT_LOOKUP, False)  # False: the front did not get that far
        if front is None or (front is False and not self.responses.may_store(body)):
            return await super().run(request, context, root_value)
        headers = request.headers
        key = self.responses.key(
            read_key.id, headers.get("content-type", ""), headers.get("accept", ""), body
        )
        stored = None if front == key else await self.responses.get(key, services, read_key)
        if stored is not None:
            return Response(stored, media_type="application/json")  # what `create_response` sends
        context.recording = Recording()
        response = await super().run(request, context, root_value)
        if response.status_code == 200 and not isinstance(response, StreamingResponse):
            await self.responses.put(key, context.recording, bytes(response.body), services)
        return response

    async def execute_single(self, **kwargs: Any) -> ExecutionResult:
        """Notes, for the whole-answer cache, which operation ran and whether it answered cleanly."""
        result = await super().execute_single(**kwargs)
        recording = getattr(kwargs["context"], "recording", None)
        if recording is not None:
            recording.results += 1
            recording.query = kwargs["request_data"].query
            recording.operation_name = kwargs["request_data"].operation_name
            if result.errors or result.data is None or result.extensions:
                recording.uncacheable = True
        return result

    def decode_json(self, data: str | bytes) -> object:
        """JSON nested thousands deep made `json.loads` raise RecursionError: a 500. Now a 400 like any
        other unreadable body."""
        try:
            return super().decode_json(data)
        except RecursionError:
            raise json.JSONDecodeError("nested too deeply", "", 0) from None


async def get_context(connection: HTTPConnection) -> Context:
    """HTTP POSTs must carry a read key (401/403/429 as plain JSON); a WebSocket may send it in
    connection_init instead, checked by the first resolver."""
    services: ReadServices = connection.app.state.reads
    supplied = key_from_headers(connection.headers)
    if (connection.scope["type"] == "websocket" and not supplied) or connection.scope.get("method") == "GET":
        # GET only serves the GraphiQL page (queries over GET are refused), so it needs no key.
        return Context(services, None)
    key = await authenticate(connection, supplied)
    if key.kind != "read":
        raise ApiError(403, "forbidden", [("X-API-Key", "ingest keys cannot read; use a read key")])
    if connection.scope["type"] == "http":
        charged = connection.scope.pop(FRONT_RATE, None)
        if charged is not None and charged[0] == key.id:
            wait = charged[1]  # the front already charged this request (api/routes/graphql_asgi.py)
        else:
            q = services.settings.query
            wait = await services.limiter.acquire(
                f"read:{key.id}", 1, key.rate_per_s or q.rate_per_s, key.burst or q.burst
            )
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                [("X-API-Key", "read rate limit exceeded")],
                {"Retry-After": retry_after_header(wait)},
            )
        if isinstance(connection, Request):  # always, for HTTP: FastAPI passes the route's Request
            await _read_capped(connection)
    return Context(services, key)


def graphql_router(settings: QuerySettings) -> _Router:
    schema = build_schema(settings)
    schema_id = hashlib.sha256(str(schema).encode()).hexdigest()  # a changed schema never serves old answers
    return _Router(
        schema,
        path="/graphql",
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=False,
        context_getter=get_context,
        # graphql-transport-ws (current) and the legacy graphql-ws (subscriptions-transport-ws) clients
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        include_in_schema=False,
        responses=ResponseCache(schema_id, settings.cache_ttl_s, settings.local_cache_entries),
    )
