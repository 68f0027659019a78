"""The schema and its protections: depth, aliases, tokens, introspection switch, masked unexpected errors."""

from __future__ import annotations

import strawberry
from graphql import GraphQLError
from strawberry.extensions import (
    DisableIntrospection,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.tools import merge_types

from api.graphql.alerts import AlertMutation, AlertQuery
from api.graphql.dashboards import DashboardMutation, DashboardQuery
from api.graphql.events import EventQuery
from api.graphql.metrics import MetricMutation, MetricQuery
from api.graphql.people import PeopleQuery
from api.graphql.pipeline import IngestionHealthQuery, PipelineQuery
from api.graphql.subscriptions import Subscription
from api.graphql.types import LONG_SCALAR, Long
from pulseops.settings import QuerySettings

# One root type per domain, merged in the order the committed schema.graphql prints their fields.
RootQuery = merge_types(
    "Query",
    (EventQuery, MetricQuery, IngestionHealthQuery, DashboardQuery, AlertQuery, PipelineQuery, PeopleQuery),
)
RootMutation = merge_types("Mutation", (MetricMutation, DashboardMutation, AlertMutation))


def _unexpected(error: GraphQLError) -> bool:
    """Mask everything but GraphQL errors: ours (`ClientError`) and graphql-core's (syntax, validation,
    variable coercion, limits), which never carry SQL or stack traces."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError)


class Schema(strawberry.Schema):
    """Logs only unexpected errors: a client's FORBIDDEN or bad input is an answer, not an incident."""

    def process_errors(self, errors: list[GraphQLError], execution_context=None) -> None:
        super().process_errors([e for e in errors if _unexpected(e)], execution_context)


def build_schema(settings: QuerySettings) -> strawberry.Schema:
    extensions = [
        ParserCache(maxsize=1000),
        ValidationCache(maxsize=1000),
        QueryDepthLimiter(max_depth=settings.max_depth),
        MaxAliasesLimiter(max_alias_count=settings.max_aliases),
        MaxTokensLimiter(max_token_count=settings.max_tokens),
        MaskErrors(should_mask_error=_unexpected, error_message="Unexpected error."),
    ]
    if not settings.introspection:
        extensions.append(DisableIntrospection())
    return Schema(
        query=RootQuery,
        mutation=RootMutation,
        subscription=Subscription,
        extensions=extensions,
        scalar_overrides={Long: LONG_SCALAR},
    )
