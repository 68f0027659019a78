"""Resources, configured from settings. The database URL may hold a password: when it comes from the
environment it is passed as an EnvVar, which Dagster reads at launch and never shows in the UI."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg
from psycopg.pq import TransactionStatus

from pulseops.settings import ColdSettings, OrchestrationSettings, Settings, WarehouseSettings, get_settings
from warehouse.db import connect, ping


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse; every asset, check and sensor gets its connections here."""

    database_url: str

    def open(self) -> psycopg.Connection:
        """A new autocommit connection; the caller closes it."""
        try:
            return connect(self.database_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            # One clear error in the UI instead of a stack of retries.
            raise dg.Failure(
                description="Cannot connect to the warehouse database (PULSEOPS_DB__URL).",
                metadata={"error": str(exc).strip()},
                allow_retries=False,
            ) from exc

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        with self.open() as conn:
            yield conn


class TickConnections:
    """Warehouse connections kept open between sensor ticks in the code server, instead of WarehouseResource's
    one new connection per tick (a PostgreSQL backend started and ended every 5 s, ~12 a minute on an idle
    system). A kept connection is pinged before it is handed out again, so one broken by a PostgreSQL restart
    is replaced instead of failing a tick; keyed by pid, never shared with a forked process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[psycopg.Connection] = []
        self._pid = os.getpid()

    @staticmethod
    def url() -> str:
        return os.environ.get("PULSEOPS_DB__URL") or get_settings().db.url

    def _take(self) -> psycopg.Connection | None:
        with self._lock:
            if self._pid != os.getpid():
                self._idle, self._pid = [], os.getpid()
            return self._idle.pop() if self._idle else None

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        conn = self._take()
        if conn is not None:
            try:
                ping(conn)
            except psycopg.Error:
                conn.close()
                conn = None
        if conn is None:
            conn = WarehouseResource(database_url=self.url()).open()
        try:
            yield conn
        except BaseException:
            conn.close()
            raise
        if conn.broken or conn.closed or conn.info.transaction_status != TransactionStatus.IDLE:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)


def warehouse_resource() -> WarehouseResource:
    if os.environ.get("PULSEOPS_DB__URL"):
        return WarehouseResource(database_url=dg.EnvVar("PULSEOPS_DB__URL"))
    return WarehouseResource(database_url=get_settings().db.url)


class SettingsResource(dg.ConfigurableResource):
    """PulseOps settings as a resource: read from the environment when a run, check or sensor evaluation
    starts (pulseops/settings.py), not when the code location is imported, and replaceable in tests."""

    def all(self) -> Settings:
        return get_settings()

    def orchestration(self) -> OrchestrationSettings:
        return get_settings().orchestration

    def cold(self) -> ColdSettings:
        return get_settings().cold

    def warehouse(self) -> WarehouseSettings:
        return get_settings().warehouse
