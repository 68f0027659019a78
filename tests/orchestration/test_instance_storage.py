"""The deployment's Dagster storages (orchestration/instance_storage.py, named in the dagster.yaml that
pulseops/services.py writes) reuse pooled connections: an idle daemon's run-queue and sensor-state reads and
the code server's per-tick instances no longer open a PostgreSQL connection per call (issue 16)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from orchestration.instance_storage import POOL_SIZE
from pulseops import services
from pulseops.settings import Settings
from tests.fixtures.postgres import create_database, drop_database


def test_storage_calls_reuse_pooled_connections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    storage = create_database("pulseops_dagster_test")
    try:
        home = tmp_path / "dagster_home"
        settings = Settings(orchestration={"dagster_home": str(home)})
        services.write_dagster_instance(settings, storage)
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        instance = dg.DagsterInstance.get()  # creates the tables
        opened: list[object] = []
        connect = psycopg2.connect
        monkeypatch.setattr(psycopg2, "connect", lambda *a, **kw: opened.append(1) or connect(*a, **kw))
        for _ in range(20):
            # what the run-queue daemon and a sensor tick read, from a fresh instance as the code server builds
            # one per tick
            again = dg.DagsterInstance.from_ref(instance.get_ref())
            again.get_run_records(dg.RunsFilter(statuses=[dg.DagsterRunStatus.QUEUED]), limit=10)
            again.schedule_storage.all_instigator_state()
            assert again.get_runs_count() == 0
        # dagster-postgres's own storages: ~60 connections here
        assert len(opened) <= POOL_SIZE, f"{len(opened)} connections for 60 storage calls"
    finally:
        dg.DagsterInstance.get().dispose()
        from orchestration import instance_storage

        for engine in instance_storage._engines.values():
            engine.dispose()
        instance_storage._engines.clear()
        drop_database(storage)
