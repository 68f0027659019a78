"""The events domain: questions about events and users (`eventCounts`, `activeUsers`, `totalEvents`,
`topEvents`, `metrics`, `breakdown`, `recentEvents`) and the key's `projects`."""

from api.graphql.events.queries import EventQuery

__all__ = ["EventQuery"]
