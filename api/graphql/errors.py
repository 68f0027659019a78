"""GraphQL errors clients can act on. Each carries `extensions.code`; anything else is masked."""

from __future__ import annotations

from graphql import GraphQLError

FORBIDDEN = "FORBIDDEN"
BAD_USER_INPUT = "BAD_USER_INPUT"
QUERY_TIMEOUT = "QUERY_TIMEOUT"
UNAVAILABLE = "SERVICE_UNAVAILABLE"
NOT_FOUND = "NOT_FOUND"


class ClientError(GraphQLError):
    """An error whose message is safe to show: never SQL, never a stack trace."""

    def __init__(self, message: str, code: str, field: str | None = None) -> None:
        extensions: dict = {"code": code}
        if field is not None:
            extensions["field"] = field
        super().__init__(message, extensions=extensions)


def forbidden(what: str = "this project") -> ClientError:
    # Same answer for "exists but not yours" and "does not exist": ids are not an oracle.
    return ClientError(f"the API key has no access to {what}", FORBIDDEN)


def bad_input(field: str, reason: str) -> ClientError:
    return ClientError(f"{field}: {reason}", BAD_USER_INPUT, field)
