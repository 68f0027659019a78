"""Real services only: PostgreSQL and Redis of the machine (or PULSEOPS_TEST_* URLs), Tansu per session."""

pytest_plugins = [
    "tests.fixtures.postgres",
    "tests.fixtures.redis",
    "tests.fixtures.broker",
    "tests.fixtures.system",
    "tests.fixtures.dagster",
]
