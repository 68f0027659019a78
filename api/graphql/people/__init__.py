"""The people domain: the `person` query, and the cache-key parts that `uniqueBy: PERSON` adds to the
unique-user questions of the events and metrics domains."""

from api.graphql.people.cache import cache_args, extra_version
from api.graphql.people.queries import PeopleQuery

__all__ = ["PeopleQuery", "cache_args", "extra_version"]
