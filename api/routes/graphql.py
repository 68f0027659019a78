"""`/graphql`: queries and mutations over HTTP POST, subscriptions over WebSocket."""

from __future__ import annotations

from starlette.requests import HTTPConnection
from strawberry.fastapi import GraphQLRouter
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL

from api.deps import authenticate, key_from_headers
from api.errors import ApiError
from api.graphql.context import Context, ReadServices
from api.graphql.schema import build_schema
from api.ratelimit import retry_after_header
from pulseops.settings import QuerySettings


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
    return Context(services, key)


def graphql_router(settings: QuerySettings) -> GraphQLRouter:
    return GraphQLRouter(
        build_schema(settings),
        path="/graphql",
        graphql_ide="graphiql" if settings.graphiql else None,
        allow_queries_via_get=False,
        context_getter=get_context,
        # graphql-transport-ws (current) and the legacy graphql-ws (subscriptions-transport-ws) clients
        subscription_protocols=[GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL],
        max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        include_in_schema=False,
    )
