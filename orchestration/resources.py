"""Resources, configured from settings. The database URL may hold a password: when it comes from the
environment it is passed as an EnvVar, which Dagster reads at launch and never shows in the UI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import psycopg

from pulseops.settings import ColdSettings, OrchestrationSettings, Settings, WarehouseSettings, get_settings
from warehouse.db import connect


class WarehouseResource(dg.ConfigurableResource):
    """The PostgreSQL warehouse; every asset, check and sensor gets its connections here."""

    database_url: str

    @contextmanager
    def connection(self) -> Iterator[psycopg.Connection]:
        try:
            conn = connect(self.database_url, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as exc:
            # One clear error in the UI instead of a stack of retries.
            raise dg.Failure(
                description="Cannot connect to the warehouse database (PULSEOPS_DB__URL).",
                metadata={"error": str(exc).strip()},
                allow_retries=False,
            ) from exc
        with conn:
            yield conn


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
