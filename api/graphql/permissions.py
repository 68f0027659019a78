"""Tenant checks as Strawberry permissions (docs/guides/permissions.md in Strawberry's documentation): a field
that reads one project of the key declares `CanReadProject` instead of checking in its body."""

from __future__ import annotations

from typing import Any

from strawberry.permission import BasePermission
from strawberry.types import Info


class CanReadProject(BasePermission):
    """The read key may read the project named by the field's `projectId` argument.

    A refusal raises the context's own errors (UNAUTHENTICATED, BAD_USER_INPUT naming `projectId`, or
    FORBIDDEN without revealing whether the project exists), so answers stay what they were; the resolver's
    own `Context.project()` is then a cache probe. The check runs before the resolver validates any other
    argument: a request both refused and otherwise invalid gets the refusal (`topEvents`, `metrics` and
    `breakdown` answered such a request with their `limit`/`top`/`property` error before they declared it).
    """

    message = "the API key has no access to this project"

    async def has_permission(self, source: Any, info: Info, **kwargs: Any) -> bool:
        await info.context.project(kwargs["project_id"])
        return True
