"""Dagster's PostgreSQL storages with pooled connections and remembered schema checks, for every Dagster
process of a deployment (pulseops/services.py names these classes in dagster.yaml).

dagster-postgres opens a new PostgreSQL connection for every storage call (NullPool) and asks the catalog on
many calls whether a table, column or index exists; the code server also builds a new DagsterInstance, and so
new storages, for every sensor tick. On an idle system that is several connections a second from the daemon
(run queue every second, sensor ticks every 5 s) and the code server: about a third of their CPU (py-spy) and
a PostgreSQL backend started for each. Here every storage of a process shares one small pool per database URL
(pre-pinged, so a restarted PostgreSQL costs a failed ping, not an error), and a schema check that once
answered yes is not asked again: Dagster's migrations only add tables, columns and indexes, and a "no" is
never remembered, so `dagster instance migrate` is seen at the next call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy
from dagster_postgres.event_log import PostgresEventLogStorage
from dagster_postgres.run_storage import PostgresRunStorage
from dagster_postgres.schedule_storage import PostgresScheduleStorage
from dagster_postgres.utils import create_pg_engine, pg_url_from_config

POOL_SIZE = 4  # idle connections a process keeps per database; more are opened (and closed) under load
POOL_RECYCLE_S = 3600

_lock = threading.Lock()
_engines: dict[tuple[int, str], sqlalchemy.engine.Engine] = {}
_yes: set[tuple[str, str, tuple]] = set()  # (url, check, args) that answered True in this process
_tables_ready: set[tuple[str, str]] = set()  # (url, storage class) whose tables this process checked


def shared_engine(url: str) -> sqlalchemy.engine.Engine:
    """One pooled engine per database URL and process (keyed by pid: a forked child opens its own)."""
    key = (os.getpid(), url)
    with _lock:
        if key not in _engines:
            _engines[key] = create_pg_engine(
                url,
                None,
                isolation_level="AUTOCOMMIT",
                pool_size=POOL_SIZE,
                max_overflow=-1,  # never block a daemon thread on the pool
                pool_pre_ping=True,
                pool_recycle=POOL_RECYCLE_S,
            )
        return _engines[key]


def _remember_yes(name: str, method: Callable[..., bool]) -> Callable[..., bool]:
    def check(self: Any, *args: Any) -> bool:
        # a Connection argument (the `_has_*_table(conn)` helpers) is not part of the question
        key = (self.postgres_url, name, tuple(a for a in args if isinstance(a, str | int)))
        if key in _yes:
            return True
        answer = method(self, *args)
        if answer:
            _yes.add(key)
        return answer

    check.__name__ = name
    return check


class _Pooled:
    """Mixin: the shared engine instead of a NullPool one, tables checked once per process, schema checks
    (the class's SCHEMA_CHECKS) remembered once they answer yes."""

    SCHEMA_CHECKS: tuple[str, ...] = ()
    postgres_url: str
    _engine: sqlalchemy.engine.Engine

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.SCHEMA_CHECKS:
            setattr(cls, name, _remember_yes(name, getattr(cls, name)))

    def __init__(
        self,
        postgres_url: str,
        should_autocreate_tables: bool = True,
        inst_data: Any = None,  # Dagster's ConfigurableClassData (a private module): passed through
    ) -> None:
        ready = (postgres_url, type(self).__name__)
        super().__init__(  # type: ignore[call-arg]
            postgres_url, should_autocreate_tables and ready not in _tables_ready, inst_data=inst_data
        )
        if should_autocreate_tables:
            _tables_ready.add(ready)
        self._engine.dispose()
        self._engine = shared_engine(postgres_url)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Mapping[str, Any]) -> Any:
        return cls(
            pg_url_from_config(config_value),  # type: ignore[arg-type]
            config_value.get("should_autocreate_tables", True),
            inst_data=inst_data,
        )


class PooledPostgresRunStorage(_Pooled, PostgresRunStorage):
    SCHEMA_CHECKS = (
        "has_built_index",
        "has_run_stats_index_cols",
        "has_bulk_actions_selector_cols",
        "has_backfill_id_column",
        "has_bulk_action_job_name_column",
        "has_backfill_tags_table",
    )


class PooledPostgresEventLogStorage(_Pooled, PostgresEventLogStorage):
    SCHEMA_CHECKS = (
        "has_table",
        "has_secondary_index",
        "has_asset_key_col",
        "has_asset_key_index_cols",
        "has_default_pool_limit_col",
        "has_concurrency_limits_table",
    )


class PooledPostgresScheduleStorage(_Pooled, PostgresScheduleStorage):
    SCHEMA_CHECKS = (
        "has_instigators_table",
        "_has_instigators_table",
        "_has_asset_daemon_asset_evaluations_table",
        "has_secondary_index_table",
        "has_built_index",
    )
